"""End to end: web search as a profile tool, its sources as numbered links, and backends that have none refusing it."""

from __future__ import annotations

import pytest
from doubles.openai import ScriptedAnswer
from pydantic import ValidationError
from support.commands import run_command
from support.model_view import builtin_tool_names, first_answer_requests
from support.slack_view import bot_texts
from support.workspace import ADA, BOT, CHANNEL, DM

from bot.errors import ConfigurationError
from bot.settings import Settings, describe_validation_error

ONLY_RESPONSES = "only the Responses API runs web search"
NO_WEB_SEARCH = "the Responses API runs web search"


@pytest.mark.backends("responses", reason=ONLY_RESPONSES)
async def test_sources_become_numbered_links_whose_titles_cannot_break_out(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.script(
        ScriptedAnswer(
            text="The launch moved to June. Tickets sold out.",
            web_sources=[
                ("The launch moved to June.", "https://news.example/launch?a=1&b=2", "Launch | <!channel> *News* >x"),
                ("Tickets sold out.", "https://tickets.example/sold-out", ""),
            ],
        )
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> what happened to the launch?")

    assert bot_texts(slack_double, CHANNEL, ts)[-1] == (
        "The launch moved to June.[1] Tickets sold out.[2]\n\n"
        "[1] <https://news.example/launch?a=1&amp;b=2|Launch - &lt;!channel&gt; *News* &gt;x>\n"
        "[2] <https://tickets.example/sold-out|tickets.example>"
    )
    posted = [call.params.get("text", "") for call in slack_double.calls if call.method.startswith("chat.")]
    assert all("<!" not in text for text in posted)
    [asked] = first_answer_requests(openai_double, "responses")
    assert "web_search" in builtin_tool_names(asked)
    openai_double.assert_no_violations()


async def test_the_default_assistant_searches_the_web_where_the_backend_can(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    await bot.say(CHANNEL, ADA, f"<@{BOT}> anything new?")
    [asked] = first_answer_requests(openai_double, backend)
    assert ("web_search" in builtin_tool_names(asked)) is (backend == "responses")


@pytest.mark.backends("responses", "assistants", reason="chat completions run none of the built-in tools")
async def test_assistant_tools_chooses_the_default_assistants_tools(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(assistant_tools="code_interpreter")
    await bot.say(CHANNEL, ADA, f"<@{BOT}> compute something")
    [asked] = first_answer_requests(openai_double, backend)
    assert builtin_tool_names(asked) == ["code_interpreter"]
    if backend == "assistants":  # the default assistant the bot made has it too
        [made] = openai_double.assistants()
        assert [tool["type"] for tool in made["tools"]] == ["code_interpreter"]


@pytest.mark.backends("assistants", "chat", reason=NO_WEB_SEARCH)
async def test_assistant_tools_naming_web_search_stops_the_start_naming_the_backend(
    start_bot, slack_double, openai_double, backend
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        await start_bot(assistant_tools="web_search")
    assert str(refused.value).startswith(f"ASSISTANT_TOOLS names web_search, which the {backend} backend cannot run")
    assert slack_double.calls_to("chat.postMessage") == []


@pytest.mark.backends("assistants", "chat", reason=NO_WEB_SEARCH)
async def test_the_assistant_editor_says_which_tools_the_backend_lacks(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=ADA)
    await run_command(bot, slack_double, "/assistant", "create", user=ADA)
    [view] = [view for view in slack_double.views() if view["type"] == "modal"]
    notes = [element["text"] for block in view["blocks"] if block["type"] == "context" for element in block["elements"]]
    lacking = {
        "assistants": "Web search and Image generation",
        "chat": "File search, Code interpreter, Web search and Image generation",
    }
    assert f"{lacking[backend]} are not available on the {backend} backend." in notes


def test_assistant_tools_names_only_built_in_tools() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, slack_bot_token="xoxb-test", assistant_tools="web_search,browser")  # type: ignore[call-arg]
    assert describe_validation_error(refused.value) == (
        "ASSISTANT_TOOLS must name only tools among file_search, code_interpreter, web_search, image_generation "
        "(not browser)"
    )
    configured = Settings(_env_file=None, slack_bot_token="xoxb-test", assistant_tools='["Web_Search", "web_search"]')  # type: ignore[call-arg]
    assert configured.assistant_tools == ["web_search"]
    assert Settings(_env_file=None, slack_bot_token="xoxb-test", assistant_tools="").assistant_tools == []  # type: ignore[call-arg]


@pytest.mark.backends("responses", reason=ONLY_RESPONSES)
async def test_searching_shows_as_status_while_the_assistant_works(start_bot, slack_double, openai_double) -> None:
    openai_double.script(
        ScriptedAnswer(text="It is sunny.", web_sources=[("It is sunny.", "https://w.example/today", "Weather")])
    )
    bot = await start_bot()
    envelope = slack_double.assistant_thread_started(DM, ADA)
    assert (await bot.deliver(envelope)).status_code == 200
    thread_ts = envelope["event"]["assistant_thread"]["thread_ts"]
    await bot.say(DM, ADA, "weather today?", thread_ts=thread_ts)

    statuses = [call.params.get("loading_messages") for call in slack_double.calls_to("assistant.threads.setStatus")]
    assert any("Searching the web…" in str(lines) for lines in statuses), statuses
    assert bot_texts(slack_double, DM, thread_ts)[-1] == "It is sunny.[1]\n\n[1] <https://w.example/today|Weather>"

"""End to end: slash commands, the forget buttons, the assistant modal and App Home, against the doubles."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from conftest import SIGNING_SECRET
from doubles.openai import GENERATED_IMAGE_PNG
from doubles.slack_events import block_action_body, deliver_form, slash_command_body, view_submission_body
from sqlalchemy import func, select
from support.model_view import (
    BUILTIN_TOOLS_OFFERED,
    answer_models,
    builtin_tool_names,
    first_answer_requests,
    server_memories,
)
from support.slack_view import bot_texts
from support.workspace import ADA, BOT, CHANNEL, DM

from bot.conversations.profiles import BUILTIN_TOOLS, ProfileOrigin, ProfileSpec
from bot.store.channels import BackendMemory, ChannelStore
from bot.store.models import ApiFile, ChatMessage, Conversation, DocumentChunk, RetiredState, TurnRecord

TEAM = "T0TEAM"
ADMIN = ADA  # named in ADMIN_USER_IDS where a test needs an admin
NOT_ADMIN = "U0BOB"
ELSEWHERE = "C0ELSEWHERE"
# Longer than the chat backend puts inline, so that every backend keeps something of it for the conversation.
LONG_NOTES = "\n\n".join(
    f"Private note {number}: the launch code is {number * 7919}." for number in range(600)
).encode()
_triggers = itertools.count(1)


async def run_command(
    bot, slack, command: str, text: str, *, user: str = ADMIN, channel: str = CHANNEL
) -> httpx.Response:
    """Slack posts the slash command; the bot must ack at once (the helper's 3 s timeout); then its work settles."""
    response_url = slack.new_response_url(channel=channel, user=user)
    body = slash_command_body(
        command,
        text,
        team_id=TEAM,
        channel_id=channel,
        user_id=user,
        response_url=response_url,
        trigger_id=f"trigger-{next(_triggers)}",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()
    return response


def ephemeral_texts(slack, channel: str = CHANNEL, user: str = ADMIN) -> list[str]:
    return [message["text"] for message in slack.ephemeral(channel, user)]


def last_ephemeral(slack, channel: str = CHANNEL, user: str = ADMIN) -> str:
    texts = ephemeral_texts(slack, channel, user)
    assert texts, "nothing was answered ephemerally"
    return texts[-1]


async def add_profile(bot, name: str, *, model: str = "gpt-4o") -> str:
    """A profile an admin made elsewhere (in another channel; on assistants, perhaps on the API's dashboard)."""
    profile = await bot.bot.backend.profiles.create(
        ProfileSpec(name=name, model=model, instructions=f"You are {name}.", tools=()),
        origin=ProfileOrigin(team_id=TEAM, channel_id=ELSEWHERE, user_id=ADMIN),
    )
    return profile.id


async def default_profile_id(bot) -> str:
    return (await bot.bot.backend.profiles.default()).id


async def changes(bot) -> list[tuple[str, str, str | None, str | None]]:
    rows = await ChannelStore(bot.bot.store).assistant_changes(team_id=TEAM, channel_id=CHANNEL)
    return [(row.user_id, row.action, row.from_profile_id, row.to_profile_id) for row in rows]


async def channel_choice(bot) -> str | None:
    return await bot.bot.store.channel_profile(team_id=TEAM, channel_id=CHANNEL)


def instructions_seen(openai) -> str | None:
    """The instructions the newest model call was given (its system text), if any."""
    [*_, newest] = openai.model_inputs()
    return newest[0][1] if newest and newest[0][0] == "system" else None


async def memories_of(bot, thread_key: str, channel: str = CHANNEL) -> list[BackendMemory]:
    """The conversation's memories on the backend: its current one first, then the retired ones."""
    conversation = await bot.bot.store.find_conversation(team_id=TEAM, channel_id=channel, thread_key=thread_key)
    return await ChannelStore(bot.bot.store).backend_states(conversation.id)


async def row_counts(bot, *models: type) -> dict[str, int]:
    async with bot.bot.store.transaction() as session:
        return {model.__name__: await session.scalar(select(func.count()).select_from(model)) for model in models}


# /ask ---------------------------------------------------------------------------------------


async def test_ask_posts_the_question_and_answers_in_its_thread_where_others_follow_up(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    response = await run_command(bot, slack_double, "/ask", "Which release ships on Friday?")
    assert response.text == ""  # an empty ack; everything else came after
    top = slack_double.messages(CHANNEL)
    assert [m["text"] for m in top] == ["*Ada asked:* Which release ships on Friday?"]
    question_ts = top[0]["ts"]
    assert bot_texts(slack_double, CHANNEL, question_ts)[1:] == ["Echo: Ada: Which release ships on Friday?"]
    await bot.say(CHANNEL, "U0BOB", "and on Monday?", thread_ts=question_ts)
    assert bot_texts(slack_double, CHANNEL, question_ts)[1:] == [
        "Echo: Ada: Which release ships on Friday?",
        "Echo: Bob: and on Monday?",
    ]
    # The follow-up is answered in the question's conversation: the model saw both.
    assert openai_double.user_texts_seen() == ["Ada: Which release ships on Friday?", "Bob: and on Monday?"]
    assert ephemeral_texts(slack_double) == []


async def test_ask_without_a_question_or_where_the_bot_is_not_explains_ephemerally(
    start_bot, slack_double, openai_double
) -> None:
    slack_double.add_channel("C0RANDOM", name="random", members=["U0ADA"])
    bot = await start_bot()
    await run_command(bot, slack_double, "/ask", "   ")
    assert last_ephemeral(slack_double).startswith("Usage: `/ask <question>`")
    await run_command(bot, slack_double, "/ask", "hello?", channel="C0RANDOM")
    assert "I'm not in this channel" in last_ephemeral(slack_double, "C0RANDOM")
    assert slack_double.messages("C0RANDOM") == [] and slack_double.messages(CHANNEL) == []
    assert all(post.body["response_type"] == "ephemeral" for post in slack_double.response_url_posts)
    assert openai_double.requests == []


async def test_ask_and_imagine_show_the_persons_words_without_pinging_anyone(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/ask", "<!channel> ship it? & <@U0BOB>")
    await run_command(bot, slack_double, "/imagine", "a <!here> banner")
    posted = [
        message["text"]
        for message in slack_double.bot_messages(CHANNEL)
        if "asked:" in message["text"] or "imagined:" in message["text"]
    ]
    assert posted == [
        "*Ada asked:* &lt;!channel&gt; ship it? &amp; &lt;@U0BOB&gt;",
        "*Ada imagined:* a &lt;!here&gt; banner",
    ]
    assert all(
        "<!" not in call.params.get("text", "") + call.params.get("initial_comment", "")
        for call in slack_double.calls
        if call.method.startswith(("chat.", "files."))
    )


# /imagine -----------------------------------------------------------------------------------


async def test_imagine_moderates_the_prompt_then_uploads_the_image_with_the_prompt(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(image_model="gpt-image-1", image_size="1536x1024")
    await run_command(bot, slack_double, "/imagine", "a lighthouse in a storm")
    paths = [request.path for request in openai_double.requests if request.method == "POST"]
    assert paths.index("/v1/moderations") < paths.index("/v1/images/generations")
    generation = openai_double.requests_to("POST", r"^/v1/images/generations$")[0].body
    assert generation == {"model": "gpt-image-1", "prompt": "a lighthouse in a storm", "size": "1536x1024", "n": 1}
    [posted] = slack_double.bot_messages(CHANNEL)
    assert posted["text"] == "*Ada imagined:* a lighthouse in a storm"
    assert [file["title"] for file in posted["files"]] == ["a lighthouse in a storm"]
    upload = slack_double.calls_to("files.completeUploadExternal")[0]
    assert upload.params["channel_id"] == CHANNEL


async def test_imagine_follows_a_link_answer_without_sending_the_api_key(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(image_model="dall-e-3")
    await run_command(bot, slack_double, "/imagine", "a red bicycle")
    [posted] = slack_double.bot_messages(CHANNEL)
    assert posted["files"][0]["size"] == len(GENERATED_IMAGE_PNG)
    # The double records a violation if the download carried the Authorization header.


async def test_imagine_refuses_a_flagged_prompt_without_calling_the_image_model(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.moderation_flags = {"gore": ["violence/graphic"]}
    bot = await start_bot()
    await run_command(bot, slack_double, "/imagine", "lots of gore")
    assert "flagged the prompt for graphic violence" in last_ephemeral(slack_double)
    assert openai_double.requests_to("POST", r"^/v1/images") == []
    assert slack_double.bot_messages(CHANNEL) == []
    await run_command(bot, slack_double, "/imagine", "")
    assert last_ephemeral(slack_double).startswith("Usage: `/imagine <prompt>`")


# /assistant: help, usage errors, show, list, models ---------------------------------------------


async def test_help_lists_every_subcommand_and_bad_input_gets_the_usage(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/assistant", "help")
    help_text = last_ephemeral(slack_double)
    for usage in (
        "help",
        "show",
        "list",
        "use <id or name>",
        "create",
        "edit",
        "reset",
        "new",
        "forget",
        "models",
        "usage",
    ):
        assert f"`/assistant {usage}`" in help_text
    assert "_This conversation_ means" in help_text
    await run_command(bot, slack_double, "/assistant", "frobnicate now")
    assert last_ephemeral(slack_double) == f"I don't know `/assistant frobnicate`.\n\n{help_text}"
    await run_command(bot, slack_double, "/assistant", "use")
    usage = "Usage: `/assistant use <id or name>` (make this channel use that assistant (admins))."
    assert last_ephemeral(slack_double) == usage
    await run_command(bot, slack_double, "/assistant", "show everything")
    assert last_ephemeral(slack_double).startswith("Usage: `/assistant show`")
    assert openai_double.requests == []


async def test_show_names_the_channel_assistant_and_what_this_conversation_remembers(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/assistant", "show")
    first = last_ephemeral(slack_double)
    assert "*This channel uses Slack Assistant*" in first and "the default assistant" in first
    default_tools = "Web search" if backend == "responses" else "none"  # ASSISTANT_TOOLS' default
    assert "Model: `gpt-4o-mini`" in first and f"Tools: {default_tools}" in first
    assert "This conversation's memory: no conversation with me here yet" in first
    await bot.say(CHANNEL, ADA, f"<@{BOT}> hello")
    await run_command(bot, slack_double, "/assistant", "show")
    assert f"This conversation's memory: kept by the {backend} backend" in last_ephemeral(slack_double)


async def test_list_shows_every_assistant_the_channel_can_use(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    for number in range(104):
        await add_profile(bot, f"Helper {number}")
    await run_command(bot, slack_double, "/assistant", "list")
    text = last_ephemeral(slack_double)
    assert text.startswith("*Assistants this workspace uses or made (105)*")  # 104 plus the default one
    assert "…and 55 more." in text
    assert f"• *Slack Assistant* (`{await default_profile_id(bot)}`, model `gpt-4o-mini`) ← this channel" in text


@pytest.mark.backends("assistants", reason="only the Assistants API keeps the profiles, and lists them in pages")
async def test_list_pages_through_the_assistants_on_the_api_account(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    for number in range(104):
        await add_profile(bot, f"Helper {number}")
    openai_double.forget_requests()
    await run_command(bot, slack_double, "/assistant", "list")
    assert last_ephemeral(slack_double).startswith("*Assistants this workspace uses or made (105)*")
    assert len(openai_double.requests_to("GET", r"^/v1/assistants$")) == 2  # pages of 100


async def test_models_are_grouped_with_fine_tuned_ones_marked(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/assistant", "models")
    assert last_ephemeral(slack_double) == "\n".join(
        [
            "*Models available (5)*",
            "*Fine-tuned*",
            "• `ft:gpt-4o-mini:acme::abc123` (fine-tuned)",
            "*Chat models*",
            "• `gpt-4.1-mini`",
            "• `gpt-4o`",
            "• `gpt-4o-mini`",
            "*Other models*",
            "• `omni-moderation-latest`",
        ]
    )


# Changing the channel's assistant -------------------------------------------------------------


async def test_use_by_name_binds_the_channel_records_the_change_and_answers_use_it(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    pirate = await add_profile(bot, "Pirate")
    await run_command(bot, slack_double, "/assistant", "use pirate")
    assert last_ephemeral(slack_double) == f"This channel now uses *Pirate* (`{pirate}`, model `gpt-4o`)."
    await bot.say(CHANNEL, NOT_ADMIN, f"<@{BOT}> ahoy")
    assert instructions_seen(openai_double) == "You are Pirate."
    assert answer_models(openai_double, backend) == ["gpt-4o"]
    assert await changes(bot) == [(ADMIN, "use", await default_profile_id(bot), pirate)]
    await run_command(bot, slack_double, "/assistant", "show")
    assert "*This channel uses Pirate*" in last_ephemeral(slack_double)


async def test_use_of_an_unknown_id_or_name_changes_nothing(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(admin_user_ids=f'["{ADMIN}"]')
    for reference in ("asst_doesnotexist", "Nobody Here"):
        await run_command(bot, slack_double, "/assistant", f"use {reference}")
        assert last_ephemeral(slack_double) == (
            f"No assistant has the id or name “{reference}”. `/assistant list` shows them."
        )
    assert await changes(bot) == []
    assert await channel_choice(bot) is None


async def test_a_name_several_assistants_share_asks_for_the_id(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    first, second = await add_profile(bot, "Twin"), await add_profile(bot, "twin")
    await run_command(bot, slack_double, "/assistant", "use TWIN")
    text = last_ephemeral(slack_double)
    assert text.startswith("Several assistants are named “TWIN”") and f"`{first}`" in text and f"`{second}`" in text
    assert await changes(bot) == [] and await channel_choice(bot) is None


async def test_people_who_are_not_admins_are_refused_and_workspace_admins_are_not(
    start_bot, slack_double, openai_double
) -> None:
    slack_double.add_user("U0OWNER", name="olga", display_name="Olga", is_owner=True)
    bot = await start_bot(admin_user_ids=ADMIN)
    pirate = await add_profile(bot, "Pirate")
    for text in (f"use {pirate}", "create", "edit", "reset"):
        await run_command(bot, slack_double, "/assistant", text, user=NOT_ADMIN)
        assert last_ephemeral(slack_double, user=NOT_ADMIN).startswith("Only workspace admins and owners")
    assert len(ephemeral_texts(slack_double, user=NOT_ADMIN)) == 4
    assert slack_double.calls_to("views.open") == [] and await changes(bot) == []
    await run_command(bot, slack_double, "/assistant", f"use {pirate}", user="U0OWNER")
    assert await changes(bot) == [("U0OWNER", "use", await default_profile_id(bot), pirate)]


async def test_reset_puts_the_channel_back_on_the_default_assistant(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    pirate = await add_profile(bot, "Pirate")
    await run_command(bot, slack_double, "/assistant", f"use {pirate}")
    await run_command(bot, slack_double, "/assistant", "reset")
    default = await default_profile_id(bot)
    assert last_ephemeral(slack_double).startswith("This channel uses the default assistant again: *Slack Assistant*")
    assert await channel_choice(bot) is None
    assert await changes(bot) == [(ADMIN, "use", default, pirate), (ADMIN, "reset", pirate, default)]
    await bot.say(CHANNEL, ADA, f"<@{BOT}> who are you?")
    assert instructions_seen(openai_double) == bot.bot.settings.assistant_instructions
    assert answer_models(openai_double, backend) == ["gpt-4o-mini"]


# The assistant modal ---------------------------------------------------------------------------


def opened_view(slack) -> dict[str, Any]:
    """The one modal opened, as views.open returned it."""
    assert len(slack.calls_to("views.open")) == 1
    [view] = [view for view in slack.views() if view["type"] == "modal"]
    return view


def form_values(
    *, name: str = "", model: str | None = None, instructions: str = "", tools: tuple[str, ...] = ()
) -> dict[str, Any]:
    def option(value: str) -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": value}, "value": value}

    return {
        "name": {"value": {"type": "plain_text_input", "value": name}},
        "model": {"value": {"type": "static_select", "selected_option": option(model) if model else None}},
        "instructions": {"value": {"type": "plain_text_input", "value": instructions}},
        "tools": {"value": {"type": "checkboxes", "selected_options": [option(tool) for tool in tools]}},
    }


async def submit(bot, view: dict[str, Any], values: dict[str, Any], *, user: str = ADMIN) -> httpx.Response:
    body = view_submission_body(view, values, team_id=TEAM, user_id=user, trigger_id=f"trigger-{next(_triggers)}")
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()
    return response


def current_view(slack, view_id: str) -> dict[str, Any]:
    return next(view for view in slack.views() if view["id"] == view_id)


def view_text(view: dict[str, Any]) -> str:
    return "\n".join(block["text"]["text"] for block in view["blocks"] if block["type"] == "section")


def offered_tools(view: dict[str, Any]) -> list[str]:
    """The built-in tools the form offers as checkboxes (none: no tools field, as Slack refuses empty checkboxes)."""
    fields = [block for block in view["blocks"] if block.get("block_id") == "tools"]
    assert all(field["element"]["options"] for field in fields), "checkboxes without options"
    return [option["value"] for field in fields for option in field["element"]["options"]]


async def test_create_opens_a_form_whose_submission_creates_binds_and_records(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    await run_command(bot, slack_double, "/assistant", "create")
    view = opened_view(slack_double)
    groups = {
        g["label"]["text"]: [o["value"] for o in g["options"]] for g in view["blocks"][1]["element"]["option_groups"]
    }
    assert groups == {
        "Fine-tuned": ["ft:gpt-4o-mini:acme::abc123"],
        "Models": ["gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"],
    }
    assert offered_tools(view) == list(BUILTIN_TOOLS_OFFERED[backend])
    tools = tuple(tool for tool in ("code_interpreter",) if tool in offered_tools(view))
    values = form_values(
        name="Release helper", model="ft:gpt-4o-mini:acme::abc123", instructions="Be brief.", tools=tools
    )
    response = await submit(bot, view, values)
    assert response.json()["response_action"] == "update"
    created = await channel_choice(bot)
    assert await changes(bot) == [(ADMIN, "create", await default_profile_id(bot), created)]
    assert view_text(current_view(slack_double, view["id"])).startswith(
        f"Created *Release helper* (`{created}`, model `ft:gpt-4o-mini:acme::abc123`)"
    )
    await run_command(bot, slack_double, "/assistant", "show")
    shown = last_ephemeral(slack_double)
    assert "*This channel uses Release helper*" in shown and "Instructions: Be brief." in shown
    assert f"Tools: {'Code interpreter' if tools else 'none'}" in shown
    await bot.say(CHANNEL, ADA, f"<@{BOT}> when do we ship?")
    assert instructions_seen(openai_double) == "Be brief."
    assert answer_models(openai_double, backend) == ["ft:gpt-4o-mini:acme::abc123"]
    [answer_request] = first_answer_requests(openai_double, backend)
    assert [tool for tool in builtin_tool_names(answer_request) if tool == "code_interpreter"] == list(tools)


async def test_the_form_reports_missing_fields_next_to_them(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    await run_command(bot, slack_double, "/assistant", "create")
    response = await submit(bot, opened_view(slack_double), form_values(name="  "))
    assert response.json() == {
        "response_action": "errors",
        "errors": {"name": "Give the assistant a name.", "model": "Choose a model."},
    }
    assert await changes(bot) == []
    assert [
        profile.name for profile in await bot.bot.backend.profiles.list() if profile.name != "Slack Assistant"
    ] == []


async def test_the_form_accepts_only_the_tools_it_offers(start_bot, slack_double, openai_double, backend) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    await run_command(bot, slack_double, "/assistant", "create")
    view = opened_view(slack_double)
    # A forged or stale submission: tools this backend cannot run (refused naming the backend), and one no
    # backend has.
    labels = {"file_search": "File search", "code_interpreter": "Code interpreter", "web_search": "Web search"}
    labels["image_generation"] = "Image generation"
    unoffered = {tool: f"{labels[tool]} is not available on the {backend} backend." for tool in BUILTIN_TOOLS}
    unoffered = {tool: error for tool, error in unoffered.items() if tool not in offered_tools(view)}
    for tool, error in {**unoffered, "mcp": "Choose only the tools listed."}.items():
        response = await submit(bot, view, form_values(name="Helper", model="gpt-4o", tools=(tool,)))
        assert response.json() == {"response_action": "errors", "errors": {"tools": error}}
    assert await changes(bot) == [] and await channel_choice(bot) is None


@pytest.mark.backends("assistants", reason="only the Assistants API checks a profile's model when it is saved")
async def test_a_model_the_api_does_not_know_is_reported_and_nothing_changes(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    await run_command(bot, slack_double, "/assistant", "create")
    view = opened_view(slack_double)
    openai_double.fail_next(
        "POST", r"^/v1/assistants$", status=404, code="model_not_found", message="The model 'gpt-4o' does not exist"
    )
    await submit(bot, view, form_values(name="Helper", model="gpt-4o"))
    assert view_text(current_view(slack_double, view["id"])) == (
        "The model `gpt-4o` is not available to this account. Choose another one and try again."
    )
    assert await changes(bot) == []
    assert await channel_choice(bot) is None


async def test_edit_prefills_the_form_and_updates_the_channels_assistant(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    pirate = await add_profile(bot, "Pirate")
    await run_command(bot, slack_double, "/assistant", f"use {pirate}")
    await run_command(bot, slack_double, "/assistant", "edit")
    view = opened_view(slack_double)
    assert view["blocks"][0]["element"]["initial_value"] == "Pirate"
    assert view["blocks"][1]["element"]["initial_option"]["value"] == "gpt-4o"
    assert view["blocks"][2]["element"]["initial_value"] == "You are Pirate."
    tools = tuple(offered_tools(view)[:1])
    await submit(
        bot, view, form_values(name="Pirate", model="gpt-4.1-mini", instructions="Talk like a pirate.", tools=tools)
    )
    assert (await changes(bot))[-1] == (ADMIN, "edit", pirate, pirate)
    assert view_text(current_view(slack_double, view["id"])).startswith(
        f"Saved *Pirate* (`{pirate}`, model `gpt-4.1-mini`)"
    )
    await run_command(bot, slack_double, "/assistant", "show")
    shown = last_ephemeral(slack_double)
    assert "Model: `gpt-4.1-mini`" in shown and "Instructions: Talk like a pirate." in shown
    assert f"Tools: {'File search' if tools else 'none'}" in shown
    await bot.say(CHANNEL, ADA, f"<@{BOT}> ahoy")
    assert instructions_seen(openai_double) == "Talk like a pirate."
    assert answer_models(openai_double, backend) == ["gpt-4.1-mini"]


# new, forget, usage -----------------------------------------------------------------------------


async def test_new_starts_the_conversation_afresh_and_keeps_the_old_memory(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    root = await bot.say(CHANNEL, ADA, f"<@{BOT}> remember the number 7")
    [old_memory] = await memories_of(bot, root)
    await run_command(bot, slack_double, "/assistant", "new")
    assert last_ephemeral(slack_double) == (
        "Done: the next message in this conversation starts afresh, without what was said before. "
        "The old memory is kept until the conversation is forgotten."
    )
    await bot.say(CHANNEL, ADA, "what was the number?", thread_ts=root)
    assert openai_double.user_texts_seen() == ["Ada: what was the number?"]
    assert bot_texts(slack_double, CHANNEL, root)[-1] == "Echo: Ada: what was the number?"
    new_memory, retired = await memories_of(bot, root)
    assert retired == old_memory and new_memory != old_memory  # kept, until the conversation is forgotten
    assert openai_double.requests_to("DELETE", r".") == []


async def test_new_in_a_dm_means_the_rolling_conversation(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/assistant", "new", channel=DM)
    assert last_ephemeral(slack_double, DM).startswith("There is no conversation with me here yet")
    await bot.say(DM, ADA, "hi")
    await run_command(bot, slack_double, "/assistant", "new", channel=DM)
    await bot.say(DM, ADA, "hi again")
    [*_, before, after] = openai_double.model_inputs()
    assert [text for role, text in before if role == "user"] == ["hi"]
    assert [text for role, text in after if role == "user"] == ["hi again"]
    assert len(await memories_of(bot, "dm", DM)) == 2


async def test_forget_asks_first_then_deletes_every_memory_and_its_files_and_the_records(
    start_bot, slack_double, openai_double, backend, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    notes = slack_double.add_file("notes.md", LONG_NOTES, user=ADA)
    root = await bot.say(CHANNEL, ADA, f"<@{BOT}> something private", files=[notes])
    await run_command(bot, slack_double, "/assistant", "new")
    await bot.say(CHANNEL, ADA, "more private things", thread_ts=root)
    assert len(await memories_of(bot, root)) == 2
    memories_on_server = server_memories(openai_double, backend)
    assert len(memories_on_server) == (0 if backend == "chat" else 2)  # chat keeps them in the bot's database
    memory_tables = (Conversation, TurnRecord, RetiredState, ApiFile, ChatMessage, DocumentChunk)
    kept = await row_counts(bot, *memory_tables)
    # What the backend keeps of the shared document: uploads and a search index, or embedded passages.
    assert openai_double.files() + openai_double.vector_stores() or kept["DocumentChunk"]

    await run_command(bot, slack_double, "/assistant", "forget")
    question = slack_double.ephemeral(CHANNEL, ADMIN)[-1]
    assert question["text"].startswith("Forget this conversation?")
    # Nothing is deleted before the click.
    assert openai_double.requests_to("DELETE", r".") == [] and await row_counts(bot, *memory_tables) == kept
    assert server_memories(openai_double, backend) == memories_on_server
    confirm = next(e for e in question["blocks"][1]["elements"] if e["action_id"] == "forget_confirm")
    click_url = slack_double.new_response_url(channel=CHANNEL, user=ADMIN)
    body = block_action_body(
        action_id="forget_confirm",
        value=confirm["value"],
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=ADMIN,
        message=question,
        response_url=click_url,
        trigger_id=f"trigger-{next(_triggers)}",
    )
    assert (await deliver_form(bot.url, body, SIGNING_SECRET)).status_code == 200
    await bot.settle()

    assert last_ephemeral(slack_double) == (
        "Forgotten: deleted 2 conversation memories, with their files, and my records of the conversation."
    )
    assert slack_double.response_url_posts[-1].body["replace_original"] is True
    assert server_memories(openai_double, backend) == []
    assert openai_double.files() == [] and openai_double.vector_stores() == []
    assert await row_counts(bot, *memory_tables) == {model.__name__: 0 for model in memory_tables}
    assert len(slack_double.messages(CHANNEL, thread_ts=root)) > 1  # the Slack messages stay


async def test_forget_cancelled_deletes_nothing(start_bot, slack_double, openai_double, backend) -> None:
    bot = await start_bot()
    root = await bot.say(CHANNEL, ADA, f"<@{BOT}> keep this")
    memories_on_server = server_memories(openai_double, backend)
    await run_command(bot, slack_double, "/assistant", "forget")
    question = slack_double.ephemeral(CHANNEL, ADMIN)[-1]
    body = block_action_body(
        action_id="forget_cancel",
        value="",
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=ADMIN,
        message=question,
        response_url=slack_double.new_response_url(channel=CHANNEL, user=ADMIN),
        trigger_id="trigger-cancel",
    )
    assert (await deliver_form(bot.url, body, SIGNING_SECRET)).status_code == 200
    await bot.settle()
    assert last_ephemeral(slack_double) == "Nothing was deleted."
    assert openai_double.requests_to("DELETE", r".") == []
    assert len(await memories_of(bot, root)) == 1
    assert server_memories(openai_double, backend) == memories_on_server
    await bot.say(CHANNEL, ADA, "still there?", thread_ts=root)
    assert openai_double.user_texts_seen() == ["Ada: keep this", "Ada: still there?"]


async def test_usage_counts_each_runs_tokens_for_the_person_and_the_channel(
    start_bot, slack_double, openai_double, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> one two three")
    await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> four five")
    await bot.say(DM, "U0ADA", "six")
    async with bot.bot.store.transaction() as session:
        rows = (
            await session.execute(
                select(
                    TurnRecord.user_id, TurnRecord.channel_id, TurnRecord.prompt_tokens, TurnRecord.completion_tokens
                )
            )
        ).all()
    assert all(row.prompt_tokens for row in rows)
    ada = sum(row.prompt_tokens + row.completion_tokens for row in rows if row.user_id == "U0ADA")
    channel = sum(row.prompt_tokens + row.completion_tokens for row in rows if row.channel_id == CHANNEL)
    await run_command(bot, slack_double, "/assistant", "usage")
    lines = last_ephemeral(slack_double).splitlines()
    assert lines[0] == "*Tokens used* (prompt + completion)"
    assert lines[1].startswith(f"• Last 7 days: you {ada:,} (") and f"; this channel {channel:,} (" in lines[1]
    assert lines[2].startswith(f"• Last 30 days: you {ada:,} (")


# App Home -------------------------------------------------------------------------------------


async def test_app_home_shows_what_the_bot_does_the_default_assistant_and_the_persons_usage(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    await bot.say(DM, "U0ADA", "hello there")
    async with bot.bot.store.transaction() as session:
        record = await session.scalar(select(TurnRecord))
    tokens = record.prompt_tokens + record.completion_tokens
    assert (await bot.deliver(slack_double.app_home_opened("U0ADA"))).status_code == 200
    home = slack_double.home_view("U0ADA")
    text = view_text(home)
    assert "/ask <question>" in text and "/imagine <prompt>" in text and "/assistant help" in text
    assert "*Default assistant:* Slack Assistant (model `gpt-4o-mini`)" in text
    assert f"*Your usage:* last 7 days {tokens:,} tokens; last 30 days {tokens:,} tokens" in text
    assert (await bot.deliver(slack_double.app_home_opened("U0BOB"))).status_code == 200
    assert "*Your usage:* last 7 days 0 tokens" in view_text(slack_double.home_view("U0BOB"))

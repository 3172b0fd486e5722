"""End to end: signed Slack events in, answers in the Slack conversation, memory in API threads."""

from __future__ import annotations

import json
import re

import httpx

from doubles.openai import ScriptedRun
from support.api_threads import user_contents
from support.slack_view import bot_texts
from support.workspace import BOT, CHANNEL, DM


async def test_a_mention_is_answered_in_a_thread_under_it(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello there")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: hello there"]
    assert [m["text"] for m in slack_double.messages(CHANNEL)] == [f"<@{BOT}> hello there"]  # nothing top-level
    runs = openai_double.requests_to("POST", r"^/v1/threads/[^/]+/runs$")
    assert len(runs) == 1 and runs[0].body["stream"] is True
    tool_names = [tool["function"]["name"] for tool in runs[0].body["tools"] if tool["type"] == "function"]
    assert "get_current_time" in tool_names


async def test_follow_ups_in_the_thread_need_no_mention_and_share_the_api_thread(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> first question")
    await bot.say(CHANNEL, "U0BOB", "and a follow-up", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: first question", "Echo: Bob: and a follow-up"]
    threads = {request.path.split("/")[3] for request in openai_double.requests_to("POST", r"^/v1/threads/[^/]+/messages$")}
    assert len(threads) == 1
    assert user_contents(openai_double, threads.pop()) == ["Ada: first question", "Bob: and a follow-up"]


async def test_follow_ups_can_require_a_mention(start_bot, slack_double) -> None:
    bot = await start_bot(reply_without_mention=False)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> first question")
    await bot.say(CHANNEL, "U0ADA", "no mention here", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: first question"]


async def test_threads_the_bot_is_not_in_are_left_alone(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    root = await bot.say(CHANNEL, "U0ADA", "people talking")
    await bot.say(CHANNEL, "U0BOB", "still just people", thread_ts=root)
    assert bot_texts(slack_double, CHANNEL, root) == []
    assert openai_double.requests == []


async def test_a_mention_inside_an_existing_thread_brings_its_history(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    root = slack_double.human_posts(CHANNEL, "U0ADA", "Should we ship on Friday?").ts
    slack_double.human_posts(CHANNEL, "U0BOB", f"I think Monday is safer, right <@U0ADA>?", thread_ts=root)
    await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> what do you think?", thread_ts=root)
    created = openai_double.requests_to("POST", r"^/v1/threads$")[0].body
    assert [(m["role"], m["content"]) for m in created["messages"]] == [
        ("user", "Ada: Should we ship on Friday?"),
        ("user", "Bob: I think Monday is safer, right @Ada?"),
    ]
    assert bot_texts(slack_double, CHANNEL, root) == ["Echo: Ada: what do you think?"]


async def test_direct_messages_roll_and_dm_threads_are_their_own(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    first = await bot.say(DM, "U0ADA", "hi bot")
    await bot.say(DM, "U0ADA", "remember me?")
    assert bot_texts(slack_double, DM) == ["Echo: hi bot", "Echo: remember me?"]  # top level, no speaker names
    await bot.say(DM, "U0ADA", "a side question", thread_ts=first)
    assert bot_texts(slack_double, DM, first) == ["Echo: a side question"]
    threads = [request.path.split("/")[3] for request in openai_double.requests_to("POST", r"^/v1/threads/[^/]+/messages$")]
    assert threads[0] == threads[1] != threads[2]


async def test_the_assistant_pane_greets_suggests_and_shows_status(start_bot, slack_double) -> None:
    bot = await start_bot()
    envelope = slack_double.assistant_thread_started(DM, "U0ADA")
    assert (await bot.deliver(envelope)).status_code == 200
    thread_ts = envelope["event"]["assistant_thread"]["thread_ts"]
    assert bot_texts(slack_double, DM, thread_ts)[0].startswith("Hi! I'm your assistant")
    assert slack_double.suggested_prompts and slack_double.suggested_prompts[-1]["prompts"]
    await bot.say(DM, "U0ADA", "summarise my week", thread_ts=thread_ts)
    assert bot_texts(slack_double, DM, thread_ts)[-1] == "Echo: summarise my week"
    assert any(update["status"] == "is thinking…" for update in slack_double.status_updates)


async def test_bots_edits_deletions_and_joins_are_ignored(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello")
    requests_before = len(openai_double.requests)
    for envelope in [
        *slack_double.human_edits(CHANNEL, ts, "edited text").envelopes,
        *slack_double.human_deletes(CHANNEL, ts).envelopes,
        *slack_double.channel_join(CHANNEL, "U0BOB").envelopes,
    ]:
        assert (await bot.deliver(envelope)).status_code == 200
    await bot.settle()
    assert len(openai_double.requests) == requests_before
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: hello"]


async def test_long_answers_are_split_without_breaking_code(start_bot, slack_double, openai_double) -> None:
    code = "\n".join(f"line_{index} = {index} * 2" for index in range(400))
    prose = " ".join(f"Sentence number {index} explains the code." for index in range(300))
    answer = f"{prose}\n\n```python\n{code}\n```\n\nThat is all."
    openai_double.script(ScriptedRun(text=answer, chunks=20))
    bot = await start_bot(max_message_chars=3000)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> write a lot")
    texts = bot_texts(slack_double, CHANNEL, ts)
    assert len(texts) >= 4
    assert all(len(text) <= 3000 for text in texts)
    assert all(text.count("```") % 2 == 0 for text in texts)
    joined = re.sub(r"\s+|`", "", "".join(texts))
    assert joined == re.sub(r"\s+|`", "", answer.replace("python", "", 1)) or joined == re.sub(r"\s+|`", "", answer)


async def test_answers_stream_into_one_message_updated_in_place(start_bot, slack_double, openai_double) -> None:
    openai_double.script(ScriptedRun(text="one two three four five six seven eight", chunks=8, chunk_delay=0.05))
    bot = await start_bot(stream_update_seconds=0.0)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> count")
    replies = [m for m in slack_double.messages(CHANNEL, thread_ts=ts) if m.get("bot_id")]
    assert len(replies) == 1
    history = slack_double.update_history(CHANNEL, replies[0]["ts"])
    assert history[0] == "_Thinking…_"
    assert history[-1] == "one two three four five six seven eight"
    partial = [text for text in history[1:-1]]
    assert partial and all("one two three four five six seven eight".startswith(text) for text in partial)


async def test_non_streaming_servers_are_polled(start_bot, slack_double, openai_double) -> None:
    openai_double.streaming = False
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> poll me")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: poll me"]
    assert len(openai_double.requests_to("GET", r"^/v1/threads/[^/]+/runs/[^/]+$")) >= 2


async def test_failed_runs_are_explained_and_the_next_message_works(start_bot, slack_double, openai_double) -> None:
    openai_double.script(
        ScriptedRun(status="failed", last_error={"code": "server_error", "message": "The model crashed."}),
        ScriptedRun(status="expired"),
        ScriptedRun(status="cancelled"),
        ScriptedRun(status="incomplete", incomplete_details={"reason": "max_completion_tokens"}),
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> one")
    for text in ("two", "three", "four", "five"):
        await bot.say(CHANNEL, "U0ADA", text, thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == [
        ":warning: The assistant ran into an error and could not answer: The model crashed.",
        ":warning: The assistant took too long and the run expired. Please try again.",
        ":warning: The run was cancelled before the assistant finished.",
        ":warning: The answer was cut short because it reached the token limit.",
        "Echo: Ada: five",
    ]


async def test_function_tools_are_called_and_all_outputs_submitted_at_once(start_bot, slack_double, openai_double) -> None:
    openai_double.script(
        ScriptedRun(tool_calls=[("get_current_time", {}), ("no_such_tool", {}), ("get_current_time", {"timezone": "Asia/Tokyo"})])
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> what time is it?")
    submissions = openai_double.requests_to("POST", r"/submit_tool_outputs$")
    assert len(submissions) == 1
    outputs = [json.loads(item["output"]) for item in submissions[0].body["tool_outputs"]]
    assert outputs[0]["timezone"] == "Europe/London"  # Ada's Slack timezone
    assert "unknown function 'no_such_tool'" in outputs[1]["error"]
    assert outputs[2]["timezone"] == "Asia/Tokyo"
    answer = bot_texts(slack_double, CHANNEL, ts)
    assert len(answer) == 1 and answer[0].startswith("Tool results:")


async def test_a_slack_retry_is_not_answered_twice(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    post = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> once please")
    for envelope in post.envelopes:
        assert (await bot.deliver(envelope)).status_code == 200
    for envelope in post.envelopes:
        assert (await bot.deliver(envelope, retry_num=1)).status_code == 200
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, post.ts) == ["Echo: Ada: once please"]
    assert len(openai_double.requests_to("POST", r"^/v1/threads/[^/]+/messages$")) == 1


async def test_bad_or_stale_signatures_get_401_and_nothing_happens(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    post = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> forged")
    bad = await bot.deliver(post.envelopes[0], bad_signature=True)
    stale = await bot.deliver(post.envelopes[0], timestamp=1_000_000_000)
    await bot.settle()
    assert (bad.status_code, stale.status_code) == (401, 401)
    assert openai_double.requests == []
    assert bot_texts(slack_double, CHANNEL, post.ts) == []


async def test_health_and_the_mapping_survive_a_restart(start_bot, slack_double, openai_double, database_url) -> None:
    bot = await start_bot(database_url=database_url)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{bot.url}/healthz")).status_code == 200
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> remember this")
    await bot.stop()
    again = await start_bot(database_url=database_url)
    await again.say(CHANNEL, "U0ADA", "do you remember?", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: remember this", "Echo: Ada: do you remember?"]
    assert len(openai_double.requests_to("POST", r"^/v1/threads$")) == 1
    assert len(openai_double.requests_to("POST", r"^/v1/assistants$")) == 1  # the default assistant, made once


async def test_api_errors_are_retried_then_explained(start_bot, slack_double, openai_double) -> None:
    openai_double.fail_next("POST", r"^/v1/threads/[^/]+/messages$", status=500, message="upstream hiccup")
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> through a hiccup")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: through a hiccup"]
    openai_double.fail_next(
        "POST", r"^/v1/threads/[^/]+/messages$", status=429, code="insufficient_quota", message="You exceeded your quota"
    )
    await bot.say(CHANNEL, "U0ADA", "and now?", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == (
        ":warning: The assistant's API account is out of quota. Please tell whoever runs this bot."
    )
    assert len(openai_double.requests_to("POST", r"^/v1/threads/[^/]+/messages$")) == 3  # 2 + 1, never retried
    await bot.say(CHANNEL, "U0ADA", "recovered?", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Echo: Ada: recovered?"


async def test_a_gateway_with_a_query_token_and_extra_headers(start_bot, slack_double, openai_double) -> None:
    openai_double.require_query_token = ("api_token", "gw-token-77")
    bot = await start_bot(
        openai_api_key=None, openai_extra_query={"api_token": "gw-token-77"}, openai_extra_headers={"X-Team": "blue"}
    )
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> via gateway")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: via gateway"]
    assert all(request.query.get("api_token") == "gw-token-77" for request in openai_double.requests)
    assert all(request.headers.get("x-team") == "blue" for request in openai_double.requests)
    assert all("authorization" not in request.headers for request in openai_double.requests)


async def test_markdown_is_shown_as_slack_formatting_and_usage_is_kept(start_bot, slack_double, openai_double) -> None:
    openai_double.script(ScriptedRun(text="## Plan\n**Ship** it, see [docs](https://example.com/d) and `x < y`."))
    bot = await start_bot()
    post = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> plan?")
    for envelope in post.envelopes:
        await bot.deliver(envelope)
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, post.ts) == [
        "*Plan*\n*Ship* it, see <https://example.com/d|docs> and `x &lt; y`."
    ]
    event_id = next(envelope["event_id"] for envelope in post.envelopes if envelope["event"]["type"] == "app_mention")
    turn = await bot.bot.store.get_turn(team_id="T0TEAM", event_id=event_id)
    thread_id = openai_double.requests_to("POST", r"^/v1/threads/[^/]+/runs$")[0].path.split("/")[3]
    run = openai_double.runs_of(thread_id)[0]
    assert (turn.status, turn.prompt_tokens, turn.completion_tokens) == (
        "answered", run["usage"]["prompt_tokens"], run["usage"]["completion_tokens"]
    )
    assert turn.reply_ts == slack_double.bot_messages(CHANNEL, thread_ts=post.ts)[0]["ts"]


async def test_a_bare_mention_gets_a_friendly_prompt_and_no_run(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> ,")
    assert bot_texts(slack_double, CHANNEL, ts) == [
        "Hi! What can I help you with? Write your question after the mention."
    ]
    assert openai_double.requests_to("POST", r"/runs$") == []

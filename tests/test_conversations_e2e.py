"""End to end: signed Slack events in, answers in the Slack conversation, the conversation's memory on every backend."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from conftest import BACKEND_SHAPES, SIGNING_SECRET
from doubles.openai import ScriptedAnswer
from doubles.slack_events import deliver_form, slash_command_body
from support.model_view import (
    ENDINGS_AS_REPORTED,
    MESSAGE_REQUESTS,
    answer_models,
    answer_polls,
    answer_requests,
    conversations_seen,
    first_answer_requests,
    function_tool_names,
    reported_usage,
)
from support.slack_view import bot_texts
from support.workspace import ADA, BOT, CHANNEL, DM

from bot.conversations.profiles import ProfileOrigin, ProfileSpec

TEAM = "T0TEAM"
# The backend a deployment switches to from each: every backend is switched away from, and the two that keep
# profiles in the bot's own table are switched to.
SWITCHED_TO = {"assistants": "responses", "responses": "chat", "chat": "assistants"}


async def test_a_mention_is_answered_in_a_thread_under_it(start_bot, slack_double, openai_double, backend) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello there")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: hello there"]
    assert [m["text"] for m in slack_double.messages(CHANNEL)] == [f"<@{BOT}> hello there"]  # nothing top-level
    asked = answer_requests(openai_double, backend)
    assert len(asked) == 1 and asked[0].body["stream"] is True
    assert "get_current_time" in function_tool_names(asked[0], backend)
    assert conversations_seen(openai_double) == [[("user", "Ada: hello there")]]


async def test_follow_ups_in_the_thread_need_no_mention_and_share_one_conversation(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> first question")
    await bot.say(CHANNEL, "U0BOB", "and a follow-up", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: first question", "Echo: Bob: and a follow-up"]
    assert conversations_seen(openai_double)[-1] == [
        ("user", "Ada: first question"),
        ("assistant", "Echo: Ada: first question"),
        ("user", "Bob: and a follow-up"),
    ]


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
    slack_double.human_posts(CHANNEL, "U0BOB", "I think Monday is safer, right <@U0ADA>?", thread_ts=root)
    await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> what do you think?", thread_ts=root)
    assert conversations_seen(openai_double) == [
        [
            ("user", "Ada: Should we ship on Friday?"),
            ("user", "Bob: I think Monday is safer, right @Ada?"),
            ("user", "Ada: what do you think?"),
        ]
    ]
    assert bot_texts(slack_double, CHANNEL, root) == ["Echo: Ada: what do you think?"]


async def test_direct_messages_roll_and_dm_threads_are_their_own(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    first = await bot.say(DM, "U0ADA", "hi bot")
    await bot.say(DM, "U0ADA", "remember me?")
    assert bot_texts(slack_double, DM) == ["Echo: hi bot", "Echo: remember me?"]  # top level, no speaker names
    await bot.say(DM, "U0ADA", "a side question", thread_ts=first)
    assert bot_texts(slack_double, DM, first) == ["Echo: a side question"]
    _, rolled, side = conversations_seen(openai_double)
    assert rolled == [("user", "hi bot"), ("assistant", "Echo: hi bot"), ("user", "remember me?")]
    assert side == [("user", "Ada: hi bot"), ("user", "a side question")]  # seeded with the message it is under


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
    openai_double.script(ScriptedAnswer(text=answer, chunks=20))
    bot = await start_bot(max_message_chars=3000)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> write a lot")
    texts = bot_texts(slack_double, CHANNEL, ts)
    assert len(texts) >= 4
    assert all(len(text) <= 3000 for text in texts)
    assert all(text.count("```") % 2 == 0 for text in texts)
    joined = re.sub(r"\s+|`", "", "".join(texts))
    assert joined == re.sub(r"\s+|`", "", answer.replace("python", "", 1)) or joined == re.sub(r"\s+|`", "", answer)


async def test_answers_stream_into_one_message_updated_in_place(start_bot, slack_double, openai_double) -> None:
    openai_double.script(ScriptedAnswer(text="one two three four five six seven eight", chunks=8, chunk_delay=0.05))
    bot = await start_bot(stream_update_seconds=0.0)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> count")
    replies = [m for m in slack_double.messages(CHANNEL, thread_ts=ts) if m.get("bot_id")]
    assert len(replies) == 1
    history = slack_double.update_history(CHANNEL, replies[0]["ts"])
    # Streamed natively in the thread (the thread's status said the bot was thinking), then finished in place.
    assert slack_double.calls_to("chat.startStream")
    assert history[-1] == "one two three four five six seven eight"
    partial = history[:-1]
    assert len(partial) > 1 and all("one two three four five six seven eight".startswith(text) for text in partial)


async def test_servers_that_do_not_stream_are_answered_all_the_same(start_bot, slack_double, openai_double) -> None:
    openai_double.streaming = False
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> no stream")
    await bot.say(CHANNEL, "U0ADA", "and again", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: no stream", "Echo: Ada: and again"]
    assert conversations_seen(openai_double)[-1] == [
        ("user", "Ada: no stream"),
        ("assistant", "Echo: Ada: no stream"),
        ("user", "Ada: and again"),
    ]


@pytest.mark.backends(
    "assistants",
    "responses",
    reason="a chat completion that is not streamed comes back whole: there is nothing to poll",
)
async def test_non_streaming_servers_are_polled(start_bot, slack_double, openai_double, backend) -> None:
    openai_double.streaming = False
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> poll me")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: poll me"]
    assert len(answer_polls(openai_double, backend)) >= 2


async def test_failed_answers_are_explained_and_the_next_message_works(
    start_bot, slack_double, openai_double, backend
) -> None:
    endings = [
        ScriptedAnswer(status="failed", last_error={"code": "server_error", "message": "The model crashed."}),
        ScriptedAnswer(status="expired"),
        ScriptedAnswer(status="cancelled"),
        ScriptedAnswer(status="incomplete", incomplete_details={"reason": "max_completion_tokens"}),
    ]
    told = {
        "failed": lambda ending: (
            f":warning: The assistant ran into an error and could not answer: {ending.error['message']}"
        ),
        "expired": lambda _: ":warning: The assistant took too long and the run expired. Please try again.",
        "cancelled": lambda _: ":warning: The run was cancelled before the assistant finished.",
        "incomplete": lambda _: ":warning: The answer was cut short because it reached the token limit.",
        "http_error": lambda _: ":warning: I couldn't reach the assistant just now. Please try again in a moment.",
    }
    openai_double.script(*endings)
    bot = await start_bot(openai_max_retries=0)  # one model call per message: retries have a test of their own
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> one")
    for text in ("two", "three", "four", "five"):
        await bot.say(CHANNEL, "U0ADA", text, thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == [
        *(told[ENDINGS_AS_REPORTED[backend][ending.status]](ending) for ending in endings),
        "Echo: Ada: five",
    ]


async def test_function_tools_are_called_and_all_outputs_submitted_at_once(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(
        ScriptedAnswer(
            tool_calls=[
                ("get_current_time", {}),
                ("no_such_tool", {}),
                ("get_current_time", {"timezone": "Asia/Tokyo"}),
            ]
        )
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> what time is it?")
    submissions = len(answer_requests(openai_double, backend)) - len(first_answer_requests(openai_double, backend))
    assert submissions == 1
    outputs = [json.loads(text) for role, text in openai_double.model_inputs()[-1] if role == "tool"]
    assert len(outputs) == 3
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
    assert conversations_seen(openai_double) == [[("user", "Ada: once please")]]


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
    assert conversations_seen(openai_double)[-1] == [  # the same conversation, not one seeded anew from Slack
        ("user", "Ada: remember this"),
        ("assistant", "Echo: Ada: remember this"),
        ("user", "Ada: do you remember?"),
    ]
    assert len(await again.bot.backend.profiles.list()) == 1  # the default profile, made once


async def test_api_errors_are_retried_then_explained(start_bot, slack_double, openai_double, backend) -> None:
    openai_double.fail_next("POST", MESSAGE_REQUESTS[backend], status=500, message="upstream hiccup")
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> through a hiccup")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: through a hiccup"]
    openai_double.fail_next(
        "POST", MESSAGE_REQUESTS[backend], status=429, code="insufficient_quota", message="You exceeded your quota"
    )
    await bot.say(CHANNEL, "U0ADA", "and now?", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == (
        ":warning: The assistant's API account is out of quota. Please tell whoever runs this bot."
    )
    assert len(openai_double.requests_to("POST", MESSAGE_REQUESTS[backend])) == 3  # 2 + 1, never retried
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


async def test_markdown_is_shown_as_slack_formatting_and_usage_is_kept(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(ScriptedAnswer(text="## Plan\n**Ship** it, see [docs](https://example.com/d) and `x < y`."))
    bot = await start_bot()
    post = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> plan?")
    for envelope in post.envelopes:
        await bot.deliver(envelope)
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, post.ts) == [
        "*Plan*\n*Ship* it, see <https://example.com/d|docs> and `x &lt; y`."
    ]
    event_id = next(envelope["event_id"] for envelope in post.envelopes if envelope["event"]["type"] == "app_mention")
    turn = await bot.bot.store.get_turn(team_id=TEAM, event_id=event_id)
    assert reported_usage(openai_double, backend) == [(turn.prompt_tokens, turn.completion_tokens)]
    assert turn.status == "answered" and turn.prompt_tokens > 0 and turn.completion_tokens > 0
    assert turn.reply_ts == slack_double.bot_messages(CHANNEL, thread_ts=post.ts)[0]["ts"]


async def test_a_bare_mention_gets_a_friendly_prompt_and_no_run(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> ,")
    assert bot_texts(slack_double, CHANNEL, ts) == [
        "Hi! What can I help you with? Write your question after the mention."
    ]
    assert openai_double.model_calls == 0


async def test_a_switch_of_backend_keeps_the_channels_profile_and_continues_its_conversations(
    start_bot, slack_double, openai_double, backend, sqlite_url
) -> None:
    old = await start_bot(database_url=sqlite_url, admin_user_ids=ADA)
    pirate = await old.bot.backend.profiles.create(
        ProfileSpec(name="Pirate", model="gpt-4o", instructions="You are Pirate.", tools=()),
        origin=ProfileOrigin(team_id=TEAM, channel_id=CHANNEL, user_id=ADA),
    )
    response_url = slack_double.new_response_url(channel=CHANNEL, user=ADA)
    command = slash_command_body(
        "/assistant",
        f"use {pirate.id}",
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=ADA,
        response_url=response_url,
        trigger_id="trigger-switch",
    )
    assert (await deliver_form(old.url, command, SIGNING_SECRET)).status_code == 200
    await old.settle()
    ts = await old.say(CHANNEL, ADA, f"<@{BOT}> remember the number 7")
    await old.stop()

    switched = SWITCHED_TO[backend]
    openai_double.shape = BACKEND_SHAPES[switched]
    new = await start_bot(database_url=sqlite_url, openai_backend=switched)
    await new.say(CHANNEL, ADA, "what was the number?", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == [
        "Echo: Ada: remember the number 7",
        "Echo: Ada: what was the number?",
    ]
    assert openai_double.model_inputs(switched)[-1] == [  # seeded from the Slack thread, each message once
        ("system", "You are Pirate."),
        ("user", "Ada: @Assistant remember the number 7"),  # as Slack shows it
        ("assistant", "Echo: Ada: remember the number 7"),
        ("user", "Ada: what was the number?"),
    ]
    assert answer_models(openai_double, switched) == ["gpt-4o"]

"""End to end: Slack failing the bot for a while, and text people control on its way back into Slack.

- A rate-limited or failing Slack call while an answer streams is skipped; on the final text it sends
  the turn to the retry path, never to FAILED (issue 10, item 9).
- Every notice the bot writes (refused files, transcripts, files it could not share, failure reasons)
  shows names and words people chose as text: no `<!channel>` in them ever reaches Slack (item 11).
- A failed read of the thread's history answers without the earlier messages; the history is paged
  and capped before it is moderated (item 15).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from doubles.openai import ScriptedAnswer, ScriptedRun
from sqlalchemy import select
from support.model_view import ENDINGS_AS_REPORTED, answer_requests, conversations_seen
from support.slack_view import bot_texts
from support.waiting import eventually
from support.workspace import ADA, BOB, BOT, CHANNEL, DM

from bot.conversations.ports import HISTORY_LIMIT
from bot.store.models import TurnRecord

# Slack turns these into notifications for everyone in the channel (or workspace).
BROADCAST = re.compile(r"<!(?:channel|here|everyone)\b")
# Rate limits answered with "try again at once", so the SDK's own retries do not slow the tests down.
NO_WAIT = {"Retry-After": "0"}
# The SDK's AsyncRateLimitErrorRetryHandler(max_retry_count=3) in bot/app.py: the first call and 3 retries.
CALLS_PER_RATE_LIMITED_REQUEST = 4


def assert_nothing_broadcast(slack: Any) -> None:
    """No message or ephemeral of the bot, anywhere, carries a broadcast."""
    shown = [call.params.get("text") or "" for call in slack.calls if call.method.startswith("chat.")]
    assert shown and not [text for text in shown if BROADCAST.search(text)], shown


async def turn_outcomes(bot: Any) -> list[tuple[str, int]]:
    async with bot.bot.store.transaction() as session:
        records = await session.scalars(select(TurnRecord).order_by(TurnRecord.id))
        return [(record.status, record.attempts) for record in records]


async def _answered(bot: Any) -> bool:
    return [status for status, _ in await turn_outcomes(bot)] == ["answered"]


def failed_once(slack: Any, method: str, error: str) -> None:
    """The next `method` call fails with `error` for good: a rate limit outlasts the SDK's retries."""
    if error == "ratelimited":
        slack.fail_next(method, status=429, headers=NO_WAIT, times=CALLS_PER_RATE_LIMITED_REQUEST)
    elif error == "service_unavailable":
        slack.fail_next(method, error=error, status=503)
    else:
        slack.fail_next(method, error=error)


# Item 9: a Slack failure on the way out ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "channel"),
    [("chat.appendStream", CHANNEL), ("chat.update", DM)],  # streamed in a thread; posted and updated atop a DM
)
async def test_a_rate_limited_update_while_streaming_is_skipped(
    start_bot, slack_double, openai_double, backend, method, channel
) -> None:
    answer = "one two three four five six seven eight"
    openai_double.script(ScriptedAnswer(text=answer, chunks=8))
    bot = await start_bot(stream_update_seconds=0.0)
    failed_once(slack_double, method, "ratelimited")  # the first update of the streaming answer
    text = f"<@{BOT}> count" if channel == CHANNEL else "count"
    ts = await bot.say(channel, ADA, text)
    assert bot_texts(slack_double, channel, ts if channel == CHANNEL else None) == [answer]
    assert [call.response["ok"] for call in slack_double.calls_to(method)][:1] == [False]
    assert await turn_outcomes(bot) == [("answered", 1)]
    assert openai_double.model_calls == 1


@pytest.mark.parametrize("error", ["ratelimited", "internal_error", "service_unavailable"])
async def test_a_final_update_slack_fails_for_now_is_retried_not_failed(
    start_bot, slack_double, openai_double, backend, database_url, error
) -> None:
    # No update while the answer streams (the first would be due a minute after "Thinking…"): the one
    # chat.update is the final answer's.
    bot = await start_bot(database_url=database_url, sweep_seconds=0.1, stream_update_seconds=60.0)
    failed_once(slack_double, "chat.update", error)
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> are you there?")
    # The turn went back to the retry path, and the next attempt showed the answer in the same message.
    await eventually(lambda: _answered(bot), what="the turn answered")
    assert await turn_outcomes(bot) == [("answered", 2)]
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: are you there?"]
    # The model's answer was finished once; the retry showed it, it did not ask again.
    assert len(answer_requests(openai_double, backend)) == 1


async def test_a_slack_refusal_that_will_not_heal_still_ends_the_turn(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(sweep_seconds=0.1, stream_update_seconds=60.0)
    slack_double.fail_next("chat.update", error="cant_update_message")
    await bot.say(CHANNEL, ADA, f"<@{BOT}> are you there?")
    assert await turn_outcomes(bot) == [("failed", 1)]


# Item 11: what people control, shown in the bot's notices ---------------------------------------------


async def share(bot: Any, slack: Any, name: str, content: bytes, *, text: str = "have a look", **options: Any) -> str:
    file = slack.add_file(name, content, user=ADA, **options)
    return await bot.say(CHANNEL, ADA, f"<@{BOT}> {text}", files=[file])


@pytest.mark.parametrize(
    ("name", "notice"),
    [
        ("notes <!channel>.exe", ":warning: I couldn't use *notes &lt;!channel&gt;.exe*: I can't read exe files."),
        # The reason names the extension, which the person chose too.
        ("notes.<!here>", ":warning: I couldn't use *notes.&lt;!here&gt;*: I can't read &lt;!here&gt; files."),
        ("a & b <@U0BOB>.zip", ":warning: I couldn't use *a &amp; b &lt;@U0BOB&gt;.zip*: I can't read zip files."),
    ],
)
async def test_a_refused_file_is_named_as_text(start_bot, slack_double, openai_double, backend, name, notice) -> None:
    bot = await start_bot()
    ts = await share(bot, slack_double, name, b"MZ\x90\x00")
    assert notice in bot_texts(slack_double, CHANNEL, ts)
    assert_nothing_broadcast(slack_double)


async def test_a_transcript_and_its_file_name_are_shown_as_text(
    start_bot, slack_double, openai_double, backend
) -> None:
    name = "<!everyone> memo.m4a"
    openai_double.transcripts[name] = "<!channel> ship it & tell <@U0BOB>"
    bot = await start_bot()
    ts = await share(bot, slack_double, name, b"\x00\x00\x00 ftyp audio", text="", mimetype="audio/mp4")
    texts = bot_texts(slack_double, CHANNEL, ts)
    notice = ":studio_microphone: *&lt;!everyone&gt; memo.m4a*: &lt;!channel&gt; ship it &amp; tell &lt;@U0BOB&gt;"
    assert notice in texts
    assert_nothing_broadcast(slack_double)


@pytest.mark.backends("assistants", "responses", reason="chat uploads nothing, so the API cannot reject an upload")
async def test_a_file_the_api_rejects_is_named_as_text(start_bot, slack_double, openai_double, backend) -> None:
    bot = await start_bot()
    openai_double.fail_next("POST", r"^/v1/files$", status=400, code="unsupported_file")
    ts = await share(bot, slack_double, "<!channel>.pdf", b"%PDF-1.4 not really")
    notice = ":warning: I couldn't use *&lt;!channel&gt;.pdf*: the assistant does not support this file type."
    assert notice in bot_texts(slack_double, CHANNEL, ts)
    assert_nothing_broadcast(slack_double)


@pytest.mark.backends("chat", reason="the other backends hand spreadsheets to the code interpreter")
async def test_a_file_the_chat_backend_cannot_use_is_named_as_text(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    ts = await share(bot, slack_double, "<!channel> budget.xlsx", b"PK\x03\x04 spreadsheet")
    notice = (
        ":warning: I couldn't use *&lt;!channel&gt; budget.xlsx*: the assistant can't read this kind of data file "
        "here; share it as CSV or JSON."
    )
    assert notice in bot_texts(slack_double, CHANNEL, ts)
    assert_nothing_broadcast(slack_double)


@pytest.mark.backends("assistants", "responses", reason="chat runs no code interpreter, so the model makes no files")
async def test_a_made_file_slack_would_not_take_is_named_as_text(start_bot, slack_double, openai_double) -> None:
    table = openai_double.add_output_file("/mnt/data/<!channel> sales.csv", b"month,total\nJan,10\n")
    link = "sandbox:/mnt/data/<!channel> sales.csv"
    openai_double.script(ScriptedRun(text=f"Done: [the table]({link})", annotations=[("file_path", link, table)]))
    bot = await start_bot()
    slack_double.fail_next("files.getUploadURLExternal", error="not_allowed_token_type")
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> make a table")
    notice = ":warning: I couldn't share *&lt;!channel&gt; sales.csv*, a file the assistant made, here."
    assert notice in bot_texts(slack_double, CHANNEL, ts)
    assert_nothing_broadcast(slack_double)


async def test_a_failure_reason_from_the_api_is_shown_as_text(start_bot, slack_double, openai_double, backend) -> None:
    error = {"code": "server_error", "message": "<!channel> the model & the <@U0BOB> tool crashed"}
    openai_double.script(ScriptedAnswer(status="failed", last_error=error))
    bot = await start_bot(openai_max_retries=0)
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> one")
    [shown] = bot_texts(slack_double, CHANNEL, ts)
    if ENDINGS_AS_REPORTED[backend]["failed"] == "failed":
        assert shown == (
            ":warning: The assistant ran into an error and could not answer: "
            "&lt;!channel&gt; the model &amp; the &lt;@U0BOB&gt; tool crashed"
        )
    else:  # chat sees the failure as an HTTP error, and words it in its own terms
        assert shown.startswith(":warning:")
    assert_nothing_broadcast(slack_double)


# Item 15: reading the thread's history ----------------------------------------------------------------


@pytest.mark.parametrize("error", ["thread_not_found", "missing_scope", "ratelimited"])
async def test_a_failed_history_read_answers_without_the_earlier_messages(
    start_bot, slack_double, openai_double, backend, caplog, error
) -> None:
    bot = await start_bot()
    root = slack_double.human_posts(CHANNEL, ADA, "Should we ship on Friday?").ts
    slack_double.human_posts(CHANNEL, BOB, "Monday is safer.", thread_ts=root)
    failed_once(slack_double, "conversations.replies", error)
    with caplog.at_level(logging.WARNING, logger="bot.slack.replies"):
        await bot.say(CHANNEL, ADA, f"<@{BOT}> what do you think?", thread_ts=root)
    assert conversations_seen(openai_double) == [[("user", "Ada: what do you think?")]]
    assert bot_texts(slack_double, CHANNEL, root) == ["Echo: Ada: what do you think?"]
    assert await turn_outcomes(bot) == [("answered", 1)]
    [warning] = [record for record in caplog.records if record.name == "bot.slack.replies"]
    assert error in warning.getMessage() and "without the earlier messages" in warning.getMessage()
    # The next message reads the history normally, and the conversation carries on.
    await bot.say(CHANNEL, BOB, "and you?", thread_ts=root)
    assert bot_texts(slack_double, CHANNEL, root)[-1] == "Echo: Bob: and you?"


async def test_a_long_thread_is_paged_and_capped_before_moderation(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    earlier = 2 * HISTORY_LIMIT + 50  # more than one page of 200, and more than the cap
    root = slack_double.human_posts(CHANNEL, ADA, "message 0").ts
    for number in range(1, earlier):
        slack_double.human_posts(CHANNEL, BOB if number % 2 else ADA, f"message {number}", thread_ts=root)
    await bot.say(CHANNEL, ADA, f"<@{BOT}> sum it up", thread_ts=root)
    replies = slack_double.calls_to("conversations.replies")
    assert len(replies) >= 2  # paged
    # Only the newest HISTORY_LIMIT earlier messages were moderated, in one request, and seeded.
    moderated = [request.body["input"] for request in openai_double.requests_to("POST", r"^/v1/moderations$")]
    history_checks = [texts for texts in moderated if isinstance(texts, list)]
    newest = [
        f"{'Bob' if number % 2 else 'Ada'}: message {number}" for number in range(earlier - HISTORY_LIMIT, earlier)
    ]
    assert history_checks == [newest]
    seen = [text for role, text in conversations_seen(openai_double)[-1]]
    assert seen[-1] == "Ada: sum it up"
    assert seen == [*newest, "Ada: sum it up"]
    assert bot_texts(slack_double, CHANNEL, root) == ["Echo: Ada: sum it up"]

"""Faults provoked in-process: each answer is shown exactly once, and no message is lost."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from doubles.openai import ScriptedRun
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from support.model_view import (
    ANSWER_REQUESTS,
    CONVERSATION_START_REQUESTS,
    EVENTS_TO_FIRST_TEXT,
    MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER,
    answer_ids,
    answer_polls,
    answer_requests,
    answers_stopped,
    cancel_requests,
    conversations_seen,
    first_answer_requests,
    interrupted_answer_script,
    user_texts_with,
)
from support.slack_view import LONG_ANSWER, bot_texts, partly_shown, post
from support.waiting import eventually
from support.workspace import BOT, CHANNEL, DM

from bot.conversations.backends.failures import QUEUED_TOO_LONG
from bot.conversations.recovery import GAVE_UP
from bot.slack.replies import INTERRUPTED
from bot.store.db import create_engine
from bot.store.models import Conversation, ProcessHeartbeat
from bot.store.repositories import HEARTBEAT_STALE_SECONDS, utcnow

TEAM = "T0TEAM"

# A database fault: refuse to mark any turn answered, so the worker dies after showing its answer.
REFUSE_ANSWERED = {
    "sqlite": [
        "CREATE TRIGGER refuse_answered BEFORE UPDATE OF status ON turns WHEN NEW.status = 'answered' "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_write() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_answered BEFORE UPDATE ON turns FOR EACH ROW WHEN (NEW.status = 'answered') "
        "EXECUTE FUNCTION refuse_write()",
    ],
}
REFUSE_REPLY_TS = [
    "CREATE TRIGGER refuse_reply_ts BEFORE UPDATE OF reply_ts ON turns WHEN NEW.reply_ts IS NOT NULL "
    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
]
# A database fault that SQLite reports as a constraint violation: it must not pass for a redelivery.
REFUSE_INSERT = {
    "sqlite": [
        "CREATE TRIGGER refuse_insert BEFORE INSERT ON turns BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_insert() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_insert BEFORE INSERT ON turns FOR EACH ROW EXECUTE FUNCTION refuse_insert()",
    ],
}
ALLOW_INSERT = {"sqlite": ["DROP TRIGGER refuse_insert"], "postgresql": ["DROP TRIGGER refuse_insert ON turns"]}
ALLOW_ANSWERED = {"sqlite": ["DROP TRIGGER refuse_answered"], "postgresql": ["DROP TRIGGER refuse_answered ON turns"]}


def slow_answers(backend: str, *, chunk_delay: float) -> list[ScriptedRun]:
    """LONG_ANSWER streamed slowly, for an answer that is interrupted once."""
    return interrupted_answer_script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=chunk_delay), backend)


def mention_event_id(posted: Any) -> str:
    return next(envelope["event_id"] for envelope in posted.envelopes if envelope["event"]["type"] == "app_mention")


async def turn_answered(bot: Any, posted: Any, *, what: str) -> None:
    """Wait until the database has the turn of the posted mention answered."""
    event_id = mention_event_id(posted)

    async def reached() -> bool:
        turn = await bot.bot.store.get_turn(team_id=TEAM, event_id=event_id)
        return turn.status == "answered"

    await eventually(reached, what=what)


async def run_sql(database_url: str, statements: list[str]) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def dialect(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


# Exactly once, nothing lost -------------------------------------------------------------------


async def test_messages_sent_during_an_answer_wait_and_the_next_answer_takes_them_together(
    start_bot, slack_double, openai_double, backend
) -> None:
    # Slow enough that both later messages are recorded while the first answer is still being written.
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.3))
    bot = await start_bot()
    first = await post(bot, slack_double, f"<@{BOT}> first")
    await partly_shown(slack_double, first.ts)
    await post(bot, slack_double, "second", thread_ts=first.ts)
    await post(bot, slack_double, "third", thread_ts=first.ts)
    await bot.settle()
    # One answer covers both waiting messages; no "run is active" error reached anyone.
    assert bot_texts(slack_double, CHANNEL, first.ts) == [LONG_ANSWER, "Echo: Ada: third"]
    assert user_texts_with(openai_double, "Ada: first") == ["Ada: first", "Ada: second", "Ada: third"]
    assert len(first_answer_requests(openai_double, backend)) == 2


async def test_an_answer_cut_off_by_shutdown_is_completed_in_the_same_message_after_restart(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(*slow_answers(backend, chunk_delay=0.1))
    bot = await start_bot(shutdown_grace_seconds=0)
    posted = await post(bot, slack_double, f"<@{BOT}> count slowly")
    reply_ts = await partly_shown(slack_double, posted.ts)
    await bot.stop()  # no grace: the answer is cut off mid-stream
    assert bot_texts(slack_double, CHANNEL, posted.ts)[0].endswith(INTERRUPTED)

    again = await start_bot()
    await again.settle()
    replies = slack_double.bot_messages(CHANNEL, thread_ts=posted.ts)
    assert [(m["ts"], m["text"]) for m in replies] == [(reply_ts, LONG_ANSWER)]
    assert openai_double.model_calls == MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER[backend]  # followed, not run again
    turn = await again.bot.store.get_turn(team_id=TEAM, event_id=mention_event_id(posted))
    assert (turn.status, turn.attempts, turn.reply_ts) == ("answered", 2, reply_ts)
    await again.say(CHANNEL, "U0ADA", "and then?", thread_ts=posted.ts)
    assert conversations_seen(openai_double)[-1] == [  # the conversation holds the message and its answer once
        ("user", "Ada: count slowly"),
        ("assistant", LONG_ANSWER),
        ("user", "Ada: and then?"),
    ]


async def test_a_reply_posted_but_never_recorded_is_taken_over_not_left_thinking(
    start_bot, slack_double, openai_double, caplog
) -> None:
    # The worker dies between Slack posting "Thinking…" and the database recording where it is.
    bot = await start_bot(sweep_seconds=0.2)
    await run_sql(bot.bot.settings.database_url, REFUSE_REPLY_TS)
    with caplog.at_level(logging.ERROR, logger="bot.conversations.service"):
        posted = await post(bot, slack_double, f"<@{BOT}> where did you write that?")
        await eventually(lambda: "crashed" in caplog.text, what="the worker dying before recording its reply")
    orphan_ts = slack_double.bot_messages(CHANNEL, thread_ts=posted.ts)[0]["ts"]
    await run_sql(bot.bot.settings.database_url, ["DROP TRIGGER refuse_reply_ts"])
    await turn_answered(bot, posted, what="the turn answered by the sweep")
    replies = slack_double.bot_messages(CHANNEL, thread_ts=posted.ts)
    assert [(m["ts"], m["text"]) for m in replies] == [(orphan_ts, "Echo: Ada: where did you write that?")]


async def test_a_turn_that_never_finishes_is_given_up_and_the_person_told(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(ScriptedRun(stall=True))
    bot = await start_bot(shutdown_grace_seconds=0, max_turn_attempts=1)
    posted = await post(bot, slack_double, f"<@{BOT}> this will hang")
    event_id = mention_event_id(posted)

    async def answer_recorded() -> bool:
        """The model is at work, and the bot has stored how to find that work again (chat: nothing to find)."""
        turn = await bot.bot.store.get_turn(team_id=TEAM, event_id=event_id)
        stored = json.dumps(turn.backend_progress)
        return openai_double.model_calls == 1 and all(
            answer_id in stored for answer_id in answer_ids(openai_double, backend)
        )

    await eventually(answer_recorded, what="the answer under way and recorded")
    await bot.stop()  # its only attempt dies with the process

    again = await start_bot(max_turn_attempts=1)
    await again.settle()
    assert bot_texts(slack_double, CHANNEL, posted.ts) == [f":warning: {GAVE_UP}"]
    turn = await again.bot.store.get_turn(team_id=TEAM, event_id=event_id)
    assert (turn.status, turn.error) == ("failed", "gave up after 1 attempts")
    # Told to stop by its id where the server runs it (chat: its stream was closed when the process stopped).
    assert len(cancel_requests(openai_double, backend)) == len(answer_ids(openai_double, backend))
    # The abandoned answer does not block the conversation, and it was the only one stopped.
    await again.say(CHANNEL, "U0ADA", "still there?", thread_ts=posted.ts)
    assert bot_texts(slack_double, CHANNEL, posted.ts)[-1] == "Echo: Ada: still there?"
    assert answers_stopped(openai_double, backend) == 1


async def test_a_worker_that_lost_its_lease_stops_and_the_new_holder_finishes_the_answer_once(
    start_bot, slack_double, openai_double, backend, caplog
) -> None:
    # The answer outlasts the worker's next renewal, a third of the lease from its claim.
    openai_double.script(*slow_answers(backend, chunk_delay=0.5))
    bot = await start_bot(lease_seconds=6, sweep_seconds=0.2)
    posted = await post(bot, slack_double, f"<@{BOT}> count slowly")
    reply_ts = await partly_shown(slack_double, posted.ts)
    # As if this process had stalled past its lease and another replica had taken the conversation for a while.
    async with bot.bot.store.transaction() as session:
        await session.execute(
            update(Conversation).values(
                lease_owner="worker-elsewhere", lease_expires_at=utcnow() + timedelta(seconds=4)
            )
        )
    with caplog.at_level(logging.ERROR, logger="bot.conversations.service"):
        await eventually(lambda: "lease lost" in caplog.text, what="the worker noticing its lease is gone")
    await turn_answered(bot, posted, what="the answer finished once the other lease expired")
    replies = slack_double.bot_messages(CHANNEL, thread_ts=posted.ts)
    assert [(m["ts"], m["text"]) for m in replies] == [(reply_ts, LONG_ANSWER)]
    assert len(first_answer_requests(openai_double, backend)) == MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER[backend]


async def test_shutdown_finishes_answers_in_flight_and_refuses_new_events_so_slack_retries(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.05))
    bot = await start_bot(shutdown_grace_seconds=30)
    first = await post(bot, slack_double, f"<@{BOT}> finish this")
    await partly_shown(slack_double, first.ts)
    shutting_down = asyncio.create_task(bot.bot.service.shutdown(30))
    await asyncio.sleep(0)  # let shutdown begin: from here on no new work is taken
    late = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> too late?")
    statuses = {envelope["event"]["type"]: (await bot.deliver(envelope)).status_code for envelope in late.envelopes}
    await shutting_down
    assert bot_texts(slack_double, CHANNEL, first.ts) == [LONG_ANSWER]
    assert statuses["app_mention"] == 500  # Slack redelivers a failed event, to whichever replica is up
    assert await bot.bot.store.get_turn(team_id=TEAM, event_id=mention_event_id(late)) is None
    await bot.stop()

    again = await start_bot()
    for envelope in late.envelopes:
        assert (await again.deliver(envelope, retry_num=1)).status_code == 200
    await again.settle()
    assert bot_texts(slack_double, CHANNEL, late.ts) == ["Echo: Ada: too late?"]


# OpenAI faults -----------------------------------------------------------------------------


@pytest.mark.backends(
    "assistants", "responses", reason="a chat completion ends with its stream: there is no answer left to follow"
)
async def test_a_stream_cut_mid_answer_is_followed_to_its_end_not_run_again(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.cut_stream_after = EVENTS_TO_FIRST_TEXT[backend]  # the first text delta, then the connection drops
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=5))
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> long answer please")
    assert bot_texts(slack_double, CHANNEL, ts) == [LONG_ANSWER]
    assert len(answer_requests(openai_double, backend)) == 1
    [answer_id] = answer_ids(openai_double, backend)
    polls = answer_polls(openai_double, backend)
    assert polls and all(answer_id in poll.path for poll in polls)  # followed by its id


async def test_rate_limits_and_server_errors_are_retried_then_explained(
    start_bot, slack_double, openai_double, backend
) -> None:
    start, answer = CONVERSATION_START_REQUESTS[backend], ANSWER_REQUESTS[backend]
    openai_double.fail_next("POST", start, status=503)
    openai_double.fail_next("POST", answer, status=429, headers={"Retry-After": "0"})
    bot = await start_bot(openai_max_retries=2)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> through the storm")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: through the storm"]
    sent = [
        request
        for request in openai_double.requests
        if request.method == "POST" and (re.search(start, request.path) or re.search(answer, request.path))
    ]
    assert len(sent) == (3 if start == answer else 4)  # each failure sent once more (chat: both hit its one request)

    asked = len(answer_requests(openai_double, backend))
    openai_double.fail_next("POST", answer, status=429, headers={"Retry-After": "0"}, times=3)
    await bot.say(CHANNEL, "U0ADA", "and now?", thread_ts=ts)
    assert (
        bot_texts(slack_double, CHANNEL, ts)[-1]
        == ":warning: The assistant is busy right now. Please try again in a minute."
    )
    assert len(answer_requests(openai_double, backend)) == asked + 3  # 1 try + 2 retries, then the person is told
    await bot.say(CHANNEL, "U0ADA", "better?", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Echo: Ada: better?"


@pytest.mark.backends(
    "assistants", "responses", reason="a chat completion ends with its stream: there is no answer left to follow"
)
async def test_a_stream_that_times_out_is_followed_by_id(start_bot, slack_double, openai_double, backend) -> None:
    # Each delta takes longer than the read timeout: the stream times out after the first one.
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=3, chunk_delay=2.0))
    bot = await start_bot(openai_timeout_seconds=0.5)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> slow answer")
    assert bot_texts(slack_double, CHANNEL, ts) == [LONG_ANSWER]
    assert len(answer_requests(openai_double, backend)) == 1
    [answer_id] = answer_ids(openai_double, backend)
    polls = answer_polls(openai_double, backend)
    assert polls and all(answer_id in poll.path for poll in polls)  # followed by its id


@pytest.mark.backends(
    "assistants",
    "responses",
    reason="a chat completion is never queued: a server that does not answer times out (OPENAI_TIMEOUT_SECONDS)",
)
async def test_an_answer_stuck_in_queued_is_cancelled_and_the_person_told(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(ScriptedRun(stall=True))
    bot = await start_bot(run_queued_deadline_seconds=0.5)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> are you there?")
    assert bot_texts(slack_double, CHANNEL, ts) == [f":warning: {QUEUED_TOO_LONG}"]
    [stuck] = answer_ids(openai_double, backend)
    [cancel] = cancel_requests(openai_double, backend)
    assert stuck in cancel.path
    await bot.say(CHANNEL, "U0ADA", "try again", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Echo: Ada: try again"
    assert len(first_answer_requests(openai_double, backend)) == 2
    assert answers_stopped(openai_double, backend) == 1  # the stuck one; the second was answered


# Slack faults ------------------------------------------------------------------------------


async def test_slack_rate_limits_on_posting_and_updating_are_waited_out(start_bot, slack_double, openai_double) -> None:
    slack_double.fail_next("chat.postMessage", status=429, headers={"Retry-After": "0"})
    slack_double.fail_next("chat.update", status=429, headers={"Retry-After": "0"})
    bot = await start_bot()
    await bot.say(DM, "U0ADA", "slowly, Slack")  # the top level of a DM is posted and updated
    assert bot_texts(slack_double, DM) == ["Echo: slowly, Slack"]
    assert [call.response["ok"] for call in slack_double.calls_to("chat.postMessage")] == [False, True]
    assert [call.response["ok"] for call in slack_double.calls_to("chat.update")][:2] == [False, True]


async def test_slack_rate_limits_on_streaming_are_waited_out(start_bot, slack_double, openai_double) -> None:
    for method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
        slack_double.fail_next(method, status=429, headers={"Retry-After": "0"})
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> slowly, Slack")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: slowly, Slack"]
    for method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
        assert [call.response["ok"] for call in slack_double.calls_to(method)][:2] == [False, True], method


async def test_a_reply_deleted_while_it_streams_is_shown_in_a_new_message(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.05))
    bot = await start_bot()
    posted = await post(bot, slack_double, f"<@{BOT}> count")
    deleted_ts = await partly_shown(slack_double, posted.ts)
    slack_double.human_deletes(CHANNEL, deleted_ts)
    await bot.settle()
    replies = slack_double.bot_messages(CHANNEL, thread_ts=posted.ts)
    assert [m["text"] for m in replies] == [LONG_ANSWER] and replies[0]["ts"] != deleted_ts
    turn = await bot.bot.store.get_turn(team_id=TEAM, event_id=mention_event_id(posted))
    assert (turn.status, turn.reply_ts) == ("answered", replies[0]["ts"])


@pytest.mark.parametrize("slack_error", ["channel_not_found", "not_in_channel"])
async def test_a_channel_the_bot_cannot_post_in_closes_the_turn_with_a_clear_log_line(
    start_bot, slack_double, openai_double, caplog, slack_error
) -> None:
    # Slack answers every call about the channel so: no status shows, and the answer's stream cannot start.
    slack_double.fail_next("assistant.threads.setStatus", error=slack_error)
    slack_double.fail_next("chat.startStream", error=slack_error)
    bot = await start_bot()
    with caplog.at_level(logging.ERROR, logger="bot.conversations.service"):
        posted = await post(bot, slack_double, f"<@{BOT}> can you hear me?")
        await bot.settle()
    turn = await bot.bot.store.get_turn(team_id=TEAM, event_id=mention_event_id(posted))
    assert (turn.status, turn.error) == ("failed", f"delivery failed: chat.startStream: {slack_error}")
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert any(CHANNEL in line and slack_error in line and "unanswered" in line for line in logged), logged
    assert openai_double.model_calls == 0  # nothing was asked that nobody could see
    await bot.say(CHANNEL, "U0ADA", "and now?", thread_ts=posted.ts)
    assert bot_texts(slack_double, CHANNEL, posted.ts) == ["Echo: Ada: and now?"]


# Database faults ---------------------------------------------------------------------------


async def test_a_failed_database_write_loses_no_turn_and_shows_the_answer_once(
    start_bot, database_url, slack_double, openai_double, caplog
) -> None:
    bot = await start_bot(database_url=database_url, sweep_seconds=0.2, max_turn_attempts=20)
    await run_sql(database_url, REFUSE_ANSWERED[dialect(database_url)])
    with caplog.at_level(logging.ERROR, logger="bot.conversations.service"):
        posted = await post(bot, slack_double, f"<@{BOT}> write this down")
        await eventually(lambda: "crashed" in caplog.text, what="the worker dying on the refused write")
    await run_sql(database_url, ALLOW_ANSWERED[dialect(database_url)])
    await turn_answered(bot, posted, what="the turn answered after the database recovered")
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, posted.ts) == ["Echo: Ada: write this down"]
    assert openai_double.model_calls == 1  # the answer already given is shown, not asked for again


async def test_an_event_whose_write_fails_is_refused_so_slack_redelivers_it(
    start_bot, database_url, slack_double, openai_double
) -> None:
    bot = await start_bot(database_url=database_url)
    await run_sql(database_url, REFUSE_INSERT[dialect(database_url)])
    posted = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> are you writing?")
    statuses = {envelope["event"]["type"]: (await bot.deliver(envelope)).status_code for envelope in posted.envelopes}
    assert statuses["app_mention"] == 500
    await run_sql(database_url, ALLOW_INSERT[dialect(database_url)])
    for envelope in posted.envelopes:
        assert (await bot.deliver(envelope, retry_num=1)).status_code == 200
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, posted.ts) == ["Echo: Ada: are you writing?"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_dropped_database_connections_are_reestablished(start_bot, database_url, slack_double) -> None:
    bot = await start_bot(database_url=database_url)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> before")
    url = make_url(database_url)
    admin = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        dropped = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert dropped >= 1  # the bot's pooled connections are gone
    await bot.say(CHANNEL, "U0ADA", "after", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: before", "Echo: Ada: after"]


# Load ------------------------------------------------------------------------------------


async def test_a_process_busy_with_other_work_keeps_beating_and_finishes_its_answer_once(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.05))
    bot = await start_bot()
    posted = await post(bot, slack_double, f"<@{BOT}> finish this")
    await partly_shown(slack_double, posted.ts)
    before = await heartbeat_of(bot)
    # The answering loop blocked for longer than a heartbeat may go unseen, as a burst of CPU work would: the
    # heartbeat has a loop of its own, so the process is still alive to the others, and its answer goes on.
    time.sleep(HEARTBEAT_STALE_SECONDS + 1)  # noqa: ASYNC251  # blocking the loop is the point
    assert await heartbeat_of(bot) > before
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, posted.ts) == [LONG_ANSWER]
    assert openai_double.model_calls == 1  # not stopped and asked again


async def test_on_sqlite_an_answer_goes_on_while_the_database_is_too_busy_to_confirm_the_heartbeat(
    start_bot, slack_double, openai_double, backend, tmp_path, caplog
) -> None:
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.8))
    bot = await start_bot()
    posted = await post(bot, slack_double, f"<@{BOT}> finish this")
    await partly_shown(slack_double, posted.ts)

    def hold_the_write_lock() -> None:
        # Another writer holding SQLite's one write lock, as a burst of answers' writes can: no beat is stamped.
        connection = sqlite3.connect(tmp_path / "bot.sqlite3", isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            time.sleep(HEARTBEAT_STALE_SECONDS + 1)
            connection.execute("ROLLBACK")
        finally:
            connection.close()

    with caplog.at_level(logging.WARNING, logger="bot.conversations.service"):
        await asyncio.to_thread(hold_the_write_lock)
        await bot.settle()
    # No other process can take a lease of a SQLite database over: the worker does not stop, and is not replaced.
    assert "lease could not be confirmed" not in caplog.text
    assert "could not stamp the heartbeat" in caplog.text  # though the beat did go unconfirmed
    assert bot_texts(slack_double, CHANNEL, posted.ts) == [LONG_ANSWER]
    assert openai_double.model_calls == 1


async def heartbeat_of(bot: Any) -> Any:
    store = bot.bot.store
    async with store.transaction() as session:
        return await session.scalar(
            select(ProcessHeartbeat.beat_at).where(ProcessHeartbeat.process_id == store.process_id)
        )


async def test_answers_beyond_the_concurrency_cap_wait_their_turn_and_are_all_given(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(*[ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.03) for _ in range(3)])
    bot = await start_bot(max_concurrent_answers=1)
    posts = [await post(bot, slack_double, f"<@{BOT}> question {index}") for index in range(3)]
    await bot.settle()
    for posted in posts:
        assert bot_texts(slack_double, CHANNEL, posted.ts) == [LONG_ANSWER]
    # One answer at a time: each stream is stopped before the next one starts.
    streams = [call.method for call in slack_double.calls if call.method in {"chat.startStream", "chat.stopStream"}]
    assert streams == ["chat.startStream", "chat.stopStream"] * 3

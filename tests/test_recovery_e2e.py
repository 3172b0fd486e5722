"""Recovery and coordination: crashes recovered in seconds, database outages survived, leases never shared."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from doubles.openai import ScriptedRun
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from support.bot_processes import turn_statuses
from support.db_proxy import DatabaseProxy
from support.model_view import interrupted_answer_script
from support.slack_view import LONG_ANSWER, bot_texts, partly_shown, post
from support.waiting import WAIT_SECONDS, eventually
from support.workspace import BOT, CHANNEL

from bot.conversations.retention import RetentionPurger
from bot.slack.replies import INTERRUPTED
from bot.store.models import Conversation, TurnRecord
from bot.store.repositories import utcnow

# Far longer than any wait of these tests: an answer they see finished was not waiting for a lease to expire.
LONG_LEASE_SECONDS = 60.0
assert LONG_LEASE_SECONDS > 2 * WAIT_SECONDS


async def conversation_of(bot: Any, ts: str) -> Conversation:
    async with bot.bot.store.transaction() as session:
        conversation = await session.scalar(select(Conversation).where(Conversation.thread_key == ts))
    assert conversation is not None
    return conversation


async def turns_of(bot: Any, conversation_id: int) -> list[TurnRecord]:
    async with bot.bot.store.transaction() as session:
        return list(await session.scalars(select(TurnRecord).where(TurnRecord.conversation_id == conversation_id)))


async def answered(bot: Any, conversation_id: int, count: int) -> bool:
    statuses = [turn.status for turn in await turns_of(bot, conversation_id)]
    return statuses == ["answered"] * count


async def postgres_connection(database_url: str) -> asyncpg.Connection:
    url = make_url(database_url)
    return await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )


# Crash recovery in seconds ------------------------------------------------------------------------


async def test_a_process_killed_mid_answer_is_finished_by_the_next_one_long_before_its_lease_expires(
    bot_processes, backend, database_url, openai_double, slack_double
) -> None:
    openai_double.script(*interrupted_answer_script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.2), backend))
    first = bot_processes(database_url, LEASE_SECONDS=str(LONG_LEASE_SECONDS))
    await first.wait_ready()
    ts = (await post(first, slack_double, f"<@{BOT}> count slowly")).ts
    reply_ts = await partly_shown(slack_double, ts)
    first.kill()

    second = bot_processes(database_url, LEASE_SECONDS=str(LONG_LEASE_SECONDS))  # every other setting its default
    await second.wait_ready()

    async def finished() -> bool:
        return await turn_statuses(database_url) == ["answered"]

    # Waiting far less than the dead process's lease: it was its stale heartbeat that freed the conversation.
    await eventually(finished, what="the interrupted answer finished by the restarted process")
    # Once, in the message the dead process had begun.
    assert [(m["ts"], m["text"]) for m in slack_double.bot_messages(CHANNEL, thread_ts=ts)] == [(reply_ts, LONG_ANSWER)]


# Database outages -------------------------------------------------------------------------------


@pytest.fixture
async def database_proxy(database_url: str) -> Any:
    """The test's PostgreSQL database behind a proxy the test can cut."""
    proxy = await DatabaseProxy(database_url).start()
    yield proxy
    await proxy.stop()


def on_postgresql(test: Any) -> Any:
    """Where replicas share a database (and rows can be locked); once, as the database's part is the same on
    every backend."""
    for mark in (
        pytest.mark.postgres,
        pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
        pytest.mark.backends("responses", reason="the database's part is the same on every backend"),
    ):
        test = mark(test)
    return test


@on_postgresql
async def test_a_database_outage_stops_no_background_loop_and_the_answer_is_finished_after_it(
    start_bot, database_proxy, openai_double, slack_double, caplog
) -> None:
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.2))
    bot = await start_bot(database_url=database_proxy.url, sweep_seconds=0.2, lease_seconds=LONG_LEASE_SECONDS)
    ts = (await post(bot, slack_double, f"<@{BOT}> count slowly")).ts
    await partly_shown(slack_double, ts)
    conversation_id = (await conversation_of(bot, ts)).id

    await database_proxy.cut()  # asyncpg now meets ConnectionRefusedError
    await eventually(lambda: caplog.text.count("recovery sweep failed") >= 2, what="the sweep failing, and going on")
    await bot.bot.service.idle()  # the worker gave up on the database (or finished without recording it)
    await database_proxy.restore()

    await eventually(lambda: answered(bot, conversation_id, 1), what="the answer recorded once the database is back")
    assert bot_texts(slack_double, CHANNEL, ts) == [LONG_ANSWER]


@on_postgresql
async def test_a_replica_cut_off_from_the_database_stops_and_writes_nothing_while_another_finishes_its_answer(
    start_bot, database_url, database_proxy, openai_double, slack_double
) -> None:
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=20, chunk_delay=0.4))
    cut_off = await start_bot(database_url=database_proxy.url, lease_seconds=LONG_LEASE_SECONDS)
    other = await start_bot(database_url=database_url, lease_seconds=LONG_LEASE_SECONDS, sweep_seconds=0.2)
    ts = (await post(cut_off, slack_double, f"<@{BOT}> count slowly")).ts
    reply_ts = await partly_shown(slack_double, ts)
    conversation_id = (await conversation_of(other, ts)).id

    async def recorded() -> bool:
        return [turn.reply_ts for turn in await turns_of(other, conversation_id)] == [reply_ts]

    # Cut once the answer's message is recorded: a cut before fails the worker's own write, which the
    # unrecorded-reply test in test_reliability_e2e covers.
    await eventually(recorded, what="the answer's message recorded")
    await database_proxy.cut()
    await cut_off.bot.service.idle()  # it stopped itself, unable to confirm its lease
    written_when_stopped = slack_double.update_history(CHANNEL, reply_ts)

    await eventually(lambda: answered(other, conversation_id, 1), what="the other replica finishing the answer")
    # The replica that stopped wrote nothing after it stopped: neither stale text nor "I'll try again".
    history = slack_double.update_history(CHANNEL, reply_ts)
    assert not any(text.endswith(INTERRUPTED) for text in history), history
    assert history[: len(written_when_stopped)] == written_when_stopped
    assert [(m["ts"], m["text"]) for m in slack_double.bot_messages(CHANNEL, thread_ts=ts)] == [(reply_ts, LONG_ANSWER)]


# Retention against new turns --------------------------------------------------------------------


@on_postgresql
async def test_a_message_recorded_while_the_purge_deletes_its_conversation_is_still_answered(
    start_bot, database_url, openai_double, slack_double
) -> None:
    bot = await start_bot(database_url=database_url)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> long ago")
    conversation_id = (await conversation_of(bot, ts)).id
    async with bot.bot.store.transaction() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(last_message_at=utcnow() - timedelta(days=40))
        )
    purger = RetentionPurger(store=bot.bot.store, backend=bot.bot.backend, retention_days=30)

    # An outside transaction holds the purge up in the middle of its delete (after its "idle?" check).
    blocker = await postgres_connection(database_url)
    blocking = blocker.transaction()
    await blocking.start()
    await blocker.execute("LOCK TABLE api_files IN SHARE MODE")

    async def waiting_on_locks() -> int:
        return await blocker.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )

    purging = asyncio.create_task(purger.purge_once())
    await eventually(waiting_on_locks, what="the purge waiting for the outside lock")
    # A mention: were its conversation purged, the bot would no longer follow the thread without one.
    message = slack_double.human_posts(CHANNEL, "U0ADA", f"<@{BOT}> one more thing", thread_ts=ts)
    # Waiting on the purge's locks may take longer than Slack waits on a loaded machine; what counts is the outcome.
    deliveries = [asyncio.create_task(bot.deliver(envelope, timeout=60)) for envelope in message.envelopes]

    async def recorded_or_waiting() -> bool:
        return all(delivery.done() for delivery in deliveries) or await waiting_on_locks() > 1

    await eventually(recorded_or_waiting, what="the message recorded, or waiting for the purge")
    await blocking.commit()
    await blocker.close()
    await purging
    for envelope, delivery in zip(message.envelopes, deliveries, strict=True):
        if (await delivery).status_code != 200:  # refused while its conversation was deleted: Slack sends it again
            assert (await bot.deliver(envelope, retry_num=1)).status_code == 200

    async def answered_in_slack() -> bool:
        await bot.settle()
        return bot_texts(slack_double, CHANNEL, ts)[-1] == "Echo: Ada: one more thing"

    await eventually(answered_in_slack, what="the message recorded during the purge answered")


# Shutdown ---------------------------------------------------------------------------------------


@pytest.mark.backends("responses", reason="shutting down is the same on every backend")
async def test_shutdown_gives_answers_and_commands_one_grace_period_together(
    start_bot, openai_double, slack_double
) -> None:
    grace_seconds = 3.0
    # The answer needs more than the grace period after it is half shown, but less than twice it.
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.45))
    bot = await start_bot(shutdown_grace_seconds=grace_seconds)
    ts = (await post(bot, slack_double, f"<@{BOT}> count slowly")).ts
    await partly_shown(slack_double, ts)
    # A slash command's work that does not finish within the grace period (a slow API, say).
    bot.bot.background.start(asyncio.Event().wait(), name="slow-command")

    await bot.stop()

    # Cut off at the end of the one grace period, and left for the next start (not finished in a second one).
    assert bot_texts(slack_double, CHANNEL, ts)[0].endswith(INTERRUPTED)
    assert await turn_statuses(bot.bot.settings.database_url) == ["running"]

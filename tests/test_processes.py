"""Real bot processes: killed mid-answer, stopped with SIGTERM, and two replicas on one PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.api_threads import user_contents
from support.slack_view import LONG_ANSWER, bot_texts, partly_shown, post
from support.waiting import eventually
from support.workspace import BOT, CHANNEL
from bot.slack.render import render_reply
from bot.slack.replies import INTERRUPTED
from bot.store.db import create_engine
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET
from doubles.openai import ScriptedRun
from processes import BotProcess, start_bot_process


@pytest.fixture
def bot_processes(openai_double: Any, slack_double: Any, tmp_path: Path) -> Iterator[Callable[..., BotProcess]]:
    """Start `python -m bot run` processes against the doubles; every one is killed at the end."""
    started: list[BotProcess] = []
    names = itertools.count(1)

    def start(database_url: str, **settings: str) -> BotProcess:
        environment = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_double.api_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": openai_double.base_url,
            "OPENAI_MAX_RETRIES": "2",
            "DATABASE_URL": database_url,
            "STREAM_UPDATE_SECONDS": "0",
            # Short leases and sweeps, so that a dead process's work is taken over within the test.
            "LEASE_SECONDS": "1.5",
            "SWEEP_SECONDS": "0.2",
            "USER_RATE_LIMIT": "1000",
            **settings,
        }
        process = start_bot_process(environment, log_path=tmp_path / f"bot-{next(names)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def api_thread_of(openai: Any, first_text: str) -> str:
    """The API thread whose first user message is first_text."""
    for request in openai.requests_to("POST", r"^/v1/threads/[^/]+/messages$"):
        if request.body["content"] == first_text:
            return request.path.split("/")[3]
    raise AssertionError(f"no API thread began with {first_text!r}")


async def turn_statuses(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.exec_driver_sql("SELECT status FROM turns ORDER BY id")).scalars())
    finally:
        await engine.dispose()


async def all_answered(database_url: str, count: int) -> None:
    async def done() -> bool:
        statuses = await turn_statuses(database_url)
        return len(statuses) == count and all(status in ("answered", "failed") for status in statuses)

    await eventually(done, what=f"{count} turns finished")
    assert await turn_statuses(database_url) == ["answered"] * count


async def test_killed_mid_answer_the_next_process_finishes_every_turn_once(
    bot_processes, openai_double, slack_double, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    openai_double.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=0.2))
    first = bot_processes(database_url)
    await first.wait_ready()
    ts = (await post(first, slack_double, f"<@{BOT}> count slowly")).ts
    reply_ts = await partly_shown(slack_double, ts)
    await post(first, slack_double, "and then?", thread_ts=ts)  # recorded, waiting behind the run
    first.kill()

    second = bot_processes(database_url)
    await second.wait_ready()
    await all_answered(database_url, 2)
    replies = slack_double.bot_messages(CHANNEL, thread_ts=ts)
    # The half-streamed message was completed in place; the waiting turn got its own run.
    assert [(m["ts"], m["text"]) for m in replies] == [(reply_ts, LONG_ANSWER), (replies[1]["ts"], "Echo: Ada: and then?")]
    thread_id = api_thread_of(openai_double, "Ada: count slowly")
    assert user_contents(openai_double, thread_id) == ["Ada: count slowly", "Ada: and then?"]
    assert len(openai_double.runs_of(thread_id)) == 2  # the first run followed by its id, not run again


async def test_killed_mid_answer_over_several_messages_every_message_is_taken_over(
    bot_processes, openai_double, slack_double, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    paragraphs = [f"Paragraph {index}: " + " ".join(f"word{index}x{n}" for n in range(18)) + "." for index in range(8)]
    answer = "\n\n".join(paragraphs)
    expected = render_reply(answer, limit=300)
    assert len(expected) >= 4
    openai_double.script(ScriptedRun(text=answer, chunks=40, chunk_delay=0.15))
    first = bot_processes(database_url, MAX_MESSAGE_CHARS="300")
    await first.wait_ready()
    ts = (await post(first, slack_double, f"<@{BOT}> a long story")).ts

    def two_messages_shown() -> list[str] | None:
        shown = slack_double.bot_messages(CHANNEL, thread_ts=ts)
        return [message["ts"] for message in shown] if len(shown) >= 2 else None

    before_kill = await eventually(two_messages_shown, what="an answer spread over two messages")
    first.kill()

    second = bot_processes(database_url, MAX_MESSAGE_CHARS="300")
    await second.wait_ready()
    await all_answered(database_url, 1)
    shown = slack_double.bot_messages(CHANNEL, thread_ts=ts)
    # The whole answer once, in order, in the messages the dead process had started: none left half-written.
    assert [message["text"] for message in shown] == expected
    assert [message["ts"] for message in shown][: len(before_kill)] == before_kill


async def terminated_mid_answer(
    bot_processes: Callable[..., BotProcess], openai: Any, slack: Any, database_url: str, *, grace: str, chunk_delay: float
) -> tuple[BotProcess, str, str]:
    """A process sent SIGTERM while LONG_ANSWER streams; returns it, the thread and the answer's message."""
    openai.script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=chunk_delay))
    process = bot_processes(database_url, SHUTDOWN_GRACE_SECONDS=grace)
    await process.wait_ready()
    ts = (await post(process, slack, f"<@{BOT}> a long answer, please")).ts
    reply_ts = await partly_shown(slack, ts)
    process.terminate()
    return process, ts, reply_ts


async def test_sigterm_lets_the_answer_in_flight_finish_then_exits(
    bot_processes, openai_double, slack_double, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    process, ts, _ = await terminated_mid_answer(
        bot_processes, openai_double, slack_double, database_url, grace="20", chunk_delay=0.1
    )
    assert await process.exited() == 0
    assert bot_texts(slack_double, CHANNEL, ts) == [LONG_ANSWER]
    assert await turn_statuses(database_url) == ["answered"]


async def test_sigterm_past_the_grace_period_leaves_the_answer_for_the_next_start(
    bot_processes, openai_double, slack_double, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    process, ts, reply_ts = await terminated_mid_answer(
        bot_processes, openai_double, slack_double, database_url, grace="0.2", chunk_delay=0.5
    )
    assert await process.exited() == 0
    assert bot_texts(slack_double, CHANNEL, ts)[0].endswith(INTERRUPTED)  # the person sees it will go on
    assert await turn_statuses(database_url) == ["running"]

    again = bot_processes(database_url)
    await again.wait_ready()
    await all_answered(database_url, 1)
    assert [(m["ts"], m["text"]) for m in slack_double.bot_messages(CHANNEL, thread_ts=ts)] == [(reply_ts, LONG_ANSWER)]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_replicas_answer_every_message_once_and_in_order_even_when_one_dies(
    bot_processes, database_url, openai_double, slack_double
) -> None:
    # Slow runs, so that messages arrive while answers are in flight and the kill lands mid-answer.
    openai_double.script(*[ScriptedRun(chunks=4, chunk_delay=0.05) for _ in range(30)])
    replicas = [bot_processes(database_url), bot_processes(database_url)]
    for replica in replicas:
        await replica.wait_ready()
    conversations = 3
    rounds = 4
    roots = [(await post(replicas[n % 2], slack_double, f"<@{BOT}> topic {n} message 0")).ts for n in range(conversations)]
    deliveries = itertools.count(1)
    for round_number in range(1, rounds):
        if round_number == 2:
            replicas[0].kill()  # whatever it was doing; from now on the load balancer sends everything to the other
            replicas = [replicas[1], replicas[1]]
        for n, root in enumerate(roots):
            await post(replicas[next(deliveries) % 2], slack_double, f"topic {n} message {round_number}", thread_ts=root)

    await all_answered(database_url, conversations * rounds)
    for n, root in enumerate(roots):
        sent = [f"Ada: topic {n} message {m}" for m in range(rounds)]
        thread_id = api_thread_of(openai_double, sent[0])
        assert user_contents(openai_double, thread_id) == sent  # each message once, in order
        answers = bot_texts(slack_double, CHANNEL, root)
        echoed = [sent.index(answer.removeprefix("Echo: ")) for answer in answers]
        # Every answer is a finished echo of a message, in order, none twice; the last message is answered.
        assert echoed == sorted(set(echoed)) and echoed[-1] == rounds - 1, answers
        # Every run's answer was shown: none was paid for and then dropped.
        assert len(openai_double.runs_of(thread_id)) == len(answers), answers

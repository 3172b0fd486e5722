"""Real bot processes: killed mid-answer, stopped with SIGTERM, and two replicas on one PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from doubles.openai import ScriptedRun
from processes import BotProcess
from support.bot_processes import turn_statuses
from support.model_view import (
    MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER,
    answers_stopped,
    conversations_seen,
    interrupted_answer_script,
    user_texts_with,
)
from support.slack_view import LONG_ANSWER, bot_texts, partly_shown, post
from support.waiting import eventually
from support.workspace import BOT, CHANNEL

from bot.slack.render import render_reply
from bot.slack.replies import INTERRUPTED

# Frequent sweeps, so that a dead process's work is taken over as soon as its heartbeat goes stale.
FAST_SWEEPS = {"SWEEP_SECONDS": "0.2"}


async def all_answered(database_url: str, count: int) -> None:
    async def done() -> bool:
        statuses = await turn_statuses(database_url)
        return len(statuses) == count and all(status in ("answered", "failed") for status in statuses)

    await eventually(done, what=f"{count} turns finished")
    assert await turn_statuses(database_url) == ["answered"] * count


def slow_long_answer(backend: str, *, chunk_delay: float) -> list[ScriptedRun]:
    """LONG_ANSWER streamed slowly, for an answer that is interrupted once."""
    return interrupted_answer_script(ScriptedRun(text=LONG_ANSWER, chunks=10, chunk_delay=chunk_delay), backend)


async def test_killed_mid_answer_the_next_process_finishes_every_turn_once(
    bot_processes, backend, openai_double, slack_double, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    openai_double.script(*slow_long_answer(backend, chunk_delay=0.2))
    first = bot_processes(database_url, **FAST_SWEEPS)
    await first.wait_ready()
    ts = (await post(first, slack_double, f"<@{BOT}> count slowly")).ts
    reply_ts = await partly_shown(slack_double, ts)
    await post(first, slack_double, "and then?", thread_ts=ts)  # recorded, waiting behind the answer
    first.kill()

    second = bot_processes(database_url, **FAST_SWEEPS)
    await second.wait_ready()
    await all_answered(database_url, 2)
    replies = slack_double.bot_messages(CHANNEL, thread_ts=ts)
    # The half-streamed message was completed in place; the waiting turn got its own answer.
    assert [(m["ts"], m["text"]) for m in replies] == [
        (reply_ts, LONG_ANSWER),
        (replies[1]["ts"], "Echo: Ada: and then?"),
    ]
    assert conversations_seen(openai_double)[-1] == [  # each message once, and the first answer once
        ("user", "Ada: count slowly"),
        ("assistant", LONG_ANSWER),
        ("user", "Ada: and then?"),
    ]
    # The first answer followed by its id, not asked again (chat: asked again, as nothing was left to follow).
    assert openai_double.model_calls == MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER[backend] + 1


async def test_killed_mid_answer_over_several_messages_every_message_is_taken_over(
    bot_processes, backend, openai_double, slack_double, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    paragraphs = [f"Paragraph {index}: " + " ".join(f"word{index}x{n}" for n in range(18)) + "." for index in range(8)]
    answer = "\n\n".join(paragraphs)
    expected = render_reply(answer, limit=300)
    assert len(expected) >= 4
    openai_double.script(*interrupted_answer_script(ScriptedRun(text=answer, chunks=40, chunk_delay=0.15), backend))
    first = bot_processes(database_url, MAX_MESSAGE_CHARS="300", **FAST_SWEEPS)
    await first.wait_ready()
    ts = (await post(first, slack_double, f"<@{BOT}> a long story")).ts

    def two_messages_shown() -> list[str] | None:
        shown = slack_double.bot_messages(CHANNEL, thread_ts=ts)
        return [message["ts"] for message in shown] if len(shown) >= 2 else None

    before_kill = await eventually(two_messages_shown, what="an answer spread over two messages")
    first.kill()

    second = bot_processes(database_url, MAX_MESSAGE_CHARS="300", **FAST_SWEEPS)
    await second.wait_ready()
    await all_answered(database_url, 1)
    shown = slack_double.bot_messages(CHANNEL, thread_ts=ts)
    # The whole answer once, in order, in the messages the dead process had started: none left half-written.
    assert [message["text"] for message in shown] == expected
    assert [message["ts"] for message in shown][: len(before_kill)] == before_kill


async def terminated_mid_answer(
    bot_processes: Callable[..., BotProcess],
    openai: Any,
    slack: Any,
    database_url: str,
    *,
    backend: str,
    grace: str,
    chunk_delay: float,
) -> tuple[BotProcess, str, str]:
    """A process sent SIGTERM while LONG_ANSWER streams; returns it, the thread and the answer's message."""
    openai.script(*slow_long_answer(backend, chunk_delay=chunk_delay))
    process = bot_processes(database_url, SHUTDOWN_GRACE_SECONDS=grace, **FAST_SWEEPS)
    await process.wait_ready()
    ts = (await post(process, slack, f"<@{BOT}> a long answer, please")).ts
    reply_ts = await partly_shown(slack, ts)
    process.terminate()
    return process, ts, reply_ts


async def test_sigterm_lets_the_answer_in_flight_finish_then_exits(
    bot_processes, backend, openai_double, slack_double, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    process, ts, _ = await terminated_mid_answer(
        bot_processes, openai_double, slack_double, database_url, backend=backend, grace="20", chunk_delay=0.1
    )
    assert await process.exited() == 0
    assert bot_texts(slack_double, CHANNEL, ts) == [LONG_ANSWER]
    assert await turn_statuses(database_url) == ["answered"]
    assert openai_double.model_calls == 1


async def test_sigterm_past_the_grace_period_leaves_the_answer_for_the_next_start(
    bot_processes, backend, openai_double, slack_double, tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    process, ts, reply_ts = await terminated_mid_answer(
        bot_processes, openai_double, slack_double, database_url, backend=backend, grace="0.2", chunk_delay=0.5
    )
    assert await process.exited() == 0
    assert bot_texts(slack_double, CHANNEL, ts)[0].endswith(INTERRUPTED)  # the person sees it will go on
    assert await turn_statuses(database_url) == ["running"]

    again = bot_processes(database_url, **FAST_SWEEPS)
    await again.wait_ready()
    await all_answered(database_url, 1)
    assert [(m["ts"], m["text"]) for m in slack_double.bot_messages(CHANNEL, thread_ts=ts)] == [(reply_ts, LONG_ANSWER)]
    assert openai_double.model_calls == MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER[backend]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_replicas_answer_every_message_once_and_in_order_even_when_one_dies(
    bot_processes, backend, database_url, openai_double, slack_double
) -> None:
    # Slow answers, so that messages arrive while answers are in flight and the kill lands mid-answer.
    openai_double.script(*[ScriptedRun(chunks=4, chunk_delay=0.05) for _ in range(30)])
    # A request the killed replica sent but never recorded is sent again once nothing of it shows for this long.
    settings = {**FAST_SWEEPS, "RUN_QUEUED_DEADLINE_SECONDS": "3"}
    replicas = [bot_processes(database_url, **settings), bot_processes(database_url, **settings)]
    for replica in replicas:
        await replica.wait_ready()
    conversations = 3
    rounds = 4
    roots = [
        (await post(replicas[n % 2], slack_double, f"<@{BOT}> topic {n} message 0")).ts for n in range(conversations)
    ]
    deliveries = itertools.count(1)
    for round_number in range(1, rounds):
        if round_number == 2:
            replicas[0].kill()  # whatever it was doing; from now on the load balancer sends everything to the other
            replicas = [replicas[1], replicas[1]]
        for n, root in enumerate(roots):
            await post(
                replicas[next(deliveries) % 2], slack_double, f"topic {n} message {round_number}", thread_ts=root
            )

    await all_answered(database_url, conversations * rounds)
    shown = 0
    for n, root in enumerate(roots):
        sent = [f"Ada: topic {n} message {m}" for m in range(rounds)]
        assert user_texts_with(openai_double, sent[-1]) == sent  # each message once, in order
        answers = bot_texts(slack_double, CHANNEL, root)
        echoed = [sent.index(answer.removeprefix("Echo: ")) for answer in answers]
        # Every answer is a finished echo of a message, in order, none twice; the last message is answered.
        assert echoed == sorted(set(echoed)) and echoed[-1] == rounds - 1, answers
        calls = [seen for seen in conversations_seen(openai_double) if ("user", sent[0]) in seen]
        assert len(calls) >= len(answers), answers
        shown += len(answers)
    # Every model call's answer was shown, but for what the killed replica had in flight: answers it was
    # streaming stopped with it (asked again), and at most one per conversation it held that the model finished
    # (or that it sent without recording it) but never showed, asked again too. Nothing was shown twice (above).
    stopped = answers_stopped(openai_double, backend)
    assert shown + stopped <= openai_double.model_calls <= shown + stopped + conversations

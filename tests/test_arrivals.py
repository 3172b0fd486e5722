"""Group commit of arriving messages, on SQLite and PostgreSQL: a burst is written in a few transactions, each
message once, and every recorded conversation is scheduled."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.conversations.arrivals import Arrivals
from bot.errors import StoreError
from bot.store.repositories import ArrivingTurn, Store


def arriving(index: int, *, thread: str | None = None) -> ArrivingTurn:
    return ArrivingTurn(
        team_id="T1",
        channel_id="C1",
        thread_key=thread or f"{index}.0",
        surface="channel",
        event_id=f"Ev{index}",
        user_id="U1",
        message_ts=f"{index}.0",
        payload={"text": f"question {index}"},
    )


class CountedWrites:
    """The store's batch write, counted (a narrow test of our own group commit)."""

    def __init__(self, store: Store) -> None:
        self.batches: list[int] = []
        self._write = store.record_arriving_turns

    async def __call__(self, batch: Any) -> list[tuple[int, bool]]:
        self.batches.append(len(batch))
        return await self._write(batch)


async def test_a_burst_is_written_in_a_few_transactions_each_message_once(store: Store, monkeypatch) -> None:
    writes = CountedWrites(store)
    monkeypatch.setattr(store, "record_arriving_turns", writes)
    scheduled: list[int] = []
    arrivals = Arrivals(store, schedule=scheduled.append)

    first = await asyncio.gather(*(arrivals.record(arriving(index)) for index in range(50)))
    again = await asyncio.gather(*(arrivals.record(arriving(index)) for index in range(50)))

    assert first == [True] * 50 and again == [False] * 50, "a redelivered event is recorded once"
    assert writes.batches == [50, 50], "messages arriving together are written in one transaction"
    assert len(scheduled) == 50 and len(set(scheduled)) == 50, "each new conversation is scheduled once"


async def test_messages_of_one_thread_in_one_batch_share_their_conversation(store: Store) -> None:
    scheduled: list[int] = []
    arrivals = Arrivals(store, schedule=scheduled.append)

    recorded = await asyncio.gather(*(arrivals.record(arriving(index, thread="7.0")) for index in range(5)))

    assert recorded == [True] * 5
    assert len(set(scheduled)) == 1
    assert [turn.event_id for turn in await store.open_turns(scheduled[0])] == [f"Ev{index}" for index in range(5)]


async def test_a_failed_write_fails_every_message_of_its_batch_and_a_later_one_is_written(
    store: Store, monkeypatch
) -> None:
    real_write = store.record_arriving_turns
    failures = [StoreError("database error: OperationalError")]

    async def failing_once(batch: Any) -> list[tuple[int, bool]]:
        if failures:
            raise failures.pop()
        return await real_write(batch)

    monkeypatch.setattr(store, "record_arriving_turns", failing_once)
    arrivals = Arrivals(store, schedule=lambda _: None)

    outcomes = await asyncio.gather(*(arrivals.record(arriving(index)) for index in range(3)), return_exceptions=True)

    assert all(isinstance(outcome, StoreError) for outcome in outcomes), "each is refused, so Slack sends it again"
    assert await store.open_turns(1) == []
    resent = await asyncio.gather(*(arrivals.record(arriving(index)) for index in range(3)))
    assert resent == [True, True, True], "recorded when Slack sends them again"


async def test_what_arrives_while_a_write_is_in_flight_goes_in_the_next_one(store: Store, monkeypatch) -> None:
    real_write = store.record_arriving_turns
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def slow_write(batch: Any) -> list[tuple[int, bool]]:
        batches.append([turn.event_id for turn in batch])
        await release.wait()
        return await real_write(batch)

    monkeypatch.setattr(store, "record_arriving_turns", slow_write)
    arrivals = Arrivals(store, schedule=lambda _: None)
    first = asyncio.create_task(arrivals.record(arriving(0)))
    while not batches:
        await asyncio.sleep(0)
    later = [asyncio.create_task(arrivals.record(arriving(index))) for index in range(1, 11)]
    await asyncio.sleep(0)
    release.set()

    assert await first is True and await asyncio.gather(*later) == [True] * 10
    assert batches == [["Ev0"], [f"Ev{index}" for index in range(1, 11)]]

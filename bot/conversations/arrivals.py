"""Arriving messages recorded by group commit: those that arrive while one transaction is being written are
written together in the next, so a burst costs a few transactions (and disk syncs) instead of one each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.store.repositories import ArrivingTurn, Store


class Arrivals:
    """Records arriving turns durably, several to a transaction, and schedules each recorded conversation.

    No timer batches them: the first arrival is written at once, and whatever arrives meanwhile waits for
    that write and goes in the next. Alone, a message costs what it did; in a burst, the writes queue as
    batches rather than one by one. Scheduling is done here, after the commit, so that a turn recorded for
    a caller that is no longer waiting (its request was cut off) is still answered at once.
    """

    def __init__(self, store: Store, *, schedule: Callable[[int], None]) -> None:
        self._store = store
        self._schedule = schedule
        self._waiting: list[tuple[ArrivingTurn, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, arriving: ArrivingTurn) -> bool:
        """Record the turn; False for a redelivered event. Database failures raise, as from the store."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((arriving, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="arrivals")
        # Shielded: a caller cut off must not cancel the write that others in its batch wait for.
        return await asyncio.shield(future)

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await self._store.record_arriving_turns([arriving for arriving, _ in batch])
            except Exception as exc:  # every caller in the batch answers as its own write would have
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), (conversation_id, recorded) in zip(batch, results, strict=True):
                if recorded:
                    self._schedule(conversation_id)
                if not future.done():
                    future.set_result(recorded)

"""Group commit: writes that arrive while one transaction is being written go together in the next, so that a
burst costs a few transactions (and disk syncs) instead of one each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class GroupCommit(Generic[Item, Outcome]):
    """Writes items through ``write`` (one transaction for a list, one outcome per item), several at a time.

    No timer batches them: the first item is written at once, and whatever arrives meanwhile waits for that
    write and goes in the next. Alone, an item costs what it did; in a burst, the writes queue as batches
    rather than one by one. ``written`` hears of each outcome once its transaction committed, even when the
    caller waiting for it was cut off.
    """

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[Sequence[Outcome]]],
        *,
        written: Callable[[Outcome], None] | None = None,
    ) -> None:
        self._write_batch = write
        self._written = written
        self._waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, item: Item) -> Outcome:
        """The item's outcome once its transaction committed; that transaction's failure raises here."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="group-commit")
        # Shielded: a caller cut off must not cancel the write that others in its batch wait for.
        return await asyncio.shield(future)

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                outcomes = await self._write_batch([item for item, _ in batch])
            except Exception as exc:  # every caller in the batch answers as its own write would have
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if self._written is not None:
                    self._written(outcome)
                if not future.done():
                    future.set_result(outcome)

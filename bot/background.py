"""Work started after Slack has been answered (slash commands must ack within 3 s), tracked so it can be awaited."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def repeat(work: Callable[[], Awaitable[object]], *, every: float, failure: str) -> None:
    """Do `work` now and then every `every` seconds, for good: a failure is logged (as `failure`) and the next
    round comes as usual, since a loop that died would leave its work undone for good."""
    while True:
        try:
            await work()
        except Exception:
            log.exception("%s; trying again later", failure)
        await asyncio.sleep(every)


class BackgroundWork:
    """Runs coroutines as tasks; `idle()` waits for all of them, `shutdown()` gives them a grace period."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True

    def start(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        if not self._accepting:
            work.close()
            log.warning("shutting down: %s was not started", name)
            return
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work %s failed", task.get_name(), exc_info=task.exception())

    async def idle(self) -> None:
        """Wait until no background work is running (work may start more work)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def shutdown(self, grace_seconds: float) -> None:
        self._accepting = False
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

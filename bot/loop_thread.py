"""An event loop on a thread of its own, for the little work that must never wait behind the answers' work on
the main loop (the heartbeat)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

Result = TypeVar("Result")


class LoopThread:
    """Runs coroutines on its own loop and thread; the main loop awaits them through `submit`."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, work: Coroutine[Any, Any, Result]) -> asyncio.Future[Result]:
        """Start ``work`` on this thread's loop; the caller's loop may await the returned future."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def stop(self) -> None:
        """Stop the loop once what is running on it has ended, and wait for the thread (off the caller's loop)."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()

"""Waiting for a condition by polling it, with a generous bound and never a sleep that asserts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

# Bounds of waiting for a condition: generous for a busy CI machine.
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.02


async def eventually(
    condition: Callable[[], Any | Awaitable[Any]], *, timeout: float = WAIT_SECONDS, what: str = "condition"
) -> Any:
    """Poll until condition() is truthy (awaiting it if it is a coroutine); returns its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f} s")
        await asyncio.sleep(POLL_SECONDS)

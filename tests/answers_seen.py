"""What a person sees of the bot's answers, and waiting for it, for the reliability tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from test_conversations_e2e import user_contents

__all__ = ["BOT", "CHANNEL", "LONG_ANSWER", "bot_texts", "eventually", "partly_shown", "post", "user_contents"]

CHANNEL = "C0GENERAL"
BOT = "U0BOT"
# An answer streamed in many pieces, so that a test can act while it is half-written.
LONG_ANSWER = "one two three four five six seven eight nine ten"
# Bounds of waiting for a condition: generous for a busy CI machine, never a sleep that asserts.
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


def bot_texts(slack: Any, thread_ts: str) -> list[str]:
    return [message["text"] for message in slack.bot_messages(CHANNEL, thread_ts=thread_ts)]


async def post(bot: Any, slack: Any, text: str, *, thread_ts: str | None = None) -> Any:
    """Ada posts; Slack delivers the events to `bot` (in-process or a process); each gets its 200."""
    posted = slack.human_posts(CHANNEL, "U0ADA", text, thread_ts=thread_ts)
    for envelope in posted.envelopes:
        response = await bot.deliver(envelope)
        assert response.status_code == 200, response.text
    return posted


async def partly_shown(slack: Any, thread_ts: str) -> str:
    """Wait until LONG_ANSWER is visibly half-written in Slack; returns that message's ts."""

    def half_written() -> str | None:
        for message in slack.bot_messages(CHANNEL, thread_ts=thread_ts):
            if message["text"] not in ("_Thinking…_", LONG_ANSWER) and LONG_ANSWER.startswith(message["text"]):
                return message["ts"]
        return None

    return await eventually(half_written, what="a half-written answer in Slack")

"""What people see while an answer is being worked on: the thread's status, its loading lines, task titles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations.turn import ReasoningNote, ToolActivity
from bot.slack.api_errors import CONNECTION_ERRORS, is_transient, slack_error

log = logging.getLogger(__name__)

ASSISTANT_STATUS = "is thinking…"
# Slack clears a thread's status after two minutes without an update (2025-10), so long work refreshes it sooner.
STATUS_REFRESH_SECONDS = 90.0
# How long a workspace's refusal of a Slack feature (streaming, a status, agent sessions) is believed before the
# feature is tried again: a plan upgraded or an app re-declared shows within the hour, and a refusal costs one
# failed call an hour, not one per answer. Kept in memory: a restart simply tries again.
REFUSAL_MEMORY_SECONDS = 3600.0
# Errors about one channel, not about statuses: the next thread elsewhere may show one.
CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived"})
OPENING_LINES = ("Reading the thread…", "Thinking…")
# The longest loading line taken from a reasoning summary; Slack shows a line, not a paragraph.
LOADING_LINE_CHARS = 80
TOOL_TITLES = {
    "file_search": "Searching your files",
    "code_interpreter": "Running code",
    "image_generation": "Creating an image",
    "web_search": "Searching the web",
}

Key = TypeVar("Key", bound=Hashable)


class Refusals(Generic[Key]):
    """Who (a workspace, a workspace's surface) refused a feature lately: remembered in memory for a while."""

    def __init__(self, *, seconds: float = REFUSAL_MEMORY_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._seconds = seconds
        self._clock = clock
        self._until: dict[Key, float] = {}

    def refused(self, key: Key) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[key]
            return False
        return True

    def refuse(self, key: Key) -> None:
        self._until[key] = self._clock() + self._seconds


def task_title(activity: ToolActivity) -> str:
    """A short title for a tool call, as a task in the answer's timeline."""
    return TOOL_TITLES.get(activity.tool) or f"Calling {activity.name or activity.tool}"


def loading_lines(part: ToolActivity | ReasoningNote) -> tuple[str, ...]:
    """The loading lines that say what the backend is doing now."""
    if isinstance(part, ToolActivity):
        return (f"{task_title(part)}…",)
    line = " ".join(part.text.split())
    if len(line) > LOADING_LINE_CHARS:
        line = line[: LOADING_LINE_CHARS - 1].rstrip() + "…"
    return (line,) if line else OPENING_LINES


class ThreadStatus:
    """The status Slack shows under a thread while the bot works: set, refreshed before Slack drops it, cleared.

    A refusal (a thread Slack shows no status in, a scope missing) is logged once and the status is left alone,
    for the surface of that workspace, for a while.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        refusals: Refusals[tuple[str, str]],
        refusal_key: tuple[str, str],
        refresh_seconds: float,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._refusals = refusals
        self._refusal_key = refusal_key
        self._refresh_seconds = refresh_seconds
        self._lines: tuple[str, ...] = OPENING_LINES
        self._refresher: asyncio.Task[None] | None = None

    @property
    def shown(self) -> bool:
        return self._refresher is not None

    async def show(self, lines: tuple[str, ...] = OPENING_LINES) -> bool:
        """Show the status with these loading lines (and keep it up); False where Slack refuses it."""
        self._lines = lines
        if not await self._set(ASSISTANT_STATUS, list(lines)):
            return False
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh(), name=f"status {self._channel}/{self._thread_ts}")
        return True

    async def follow(self, part: ToolActivity | ReasoningNote) -> None:
        """While the status shows, its lines follow what the backend is doing."""
        if self._refresher is not None:
            await self.show(loading_lines(part))

    async def replied(self) -> None:
        """The app just posted in the thread, and Slack drops a thread's status once the app replies in it:
        the status stops being refreshed, and clearing it needs no call of its own."""
        await self.clear(quietly=True)

    async def clear(self, *, quietly: bool = False) -> None:
        """Stop refreshing the status and clear it (``quietly``: leave Slack alone, another worker owns it now)."""
        if self._refresher is None:
            return
        self._refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._refresher
        self._refresher = None
        if not quietly:
            await self._set("", None)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self._set(ASSISTANT_STATUS, list(self._lines))

    async def _set(self, status: str, lines: list[str] | None) -> bool:
        if self._refusals.refused(self._refusal_key):
            return False
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._channel, thread_ts=self._thread_ts, status=status, loading_messages=lines
            )
        except SlackApiError as exc:
            if is_transient(exc) or slack_error(exc) in CHANNEL_ERRORS:
                log.info("could not set the thread's status: %s", slack_error(exc))
            else:
                log.info("Slack shows no status in this thread (%s); not setting it for a while", slack_error(exc))
                self._refusals.refuse(self._refusal_key)
            return False
        except CONNECTION_ERRORS as exc:
            # A status is a courtesy: a connection that failed must not fail the answer.
            log.info("could not set the thread's status: %s", type(exc).__name__)
            return False
        return True


class AgentSession:
    """Slack's agent session on a thread, where the app is declared an agent: `processing`, then `active`.

    Elsewhere Slack refuses the method; that is expected, so it is skipped quietly and not asked again for a while.
    """

    def __init__(
        self, client: AsyncWebClient, *, channel: str, thread_ts: str, team_id: str, refusals: Refusals[str]
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._team_id = team_id
        self._refusals = refusals
        self.running = False

    async def start(self) -> bool:
        """Mark the session processing; False where there are no agent sessions (the bot shows its own Stop)."""
        self.running = await self._set("processing")
        return self.running

    async def end(self) -> None:
        if self.running:
            self.running = False
            await self._set("active")

    async def _set(self, status: str) -> bool:
        if self._refusals.refused(self._team_id):
            return False
        try:
            await self._client.agents_sessions_setStatus(
                channel_id=self._channel, thread_ts=self._thread_ts, status=status
            )
        except SlackApiError as exc:
            if not is_transient(exc):
                self._refusals.refuse(self._team_id)
            log.debug("no agent session status here: %s", slack_error(exc))
            return False
        except CONNECTION_ERRORS as exc:
            log.debug("could not set the agent session status: %s", type(exc).__name__)
            return False
        return True

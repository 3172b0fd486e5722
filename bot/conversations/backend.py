"""The interface every model backend offers the conversation service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.conversations.tools import ToolContext, ToolRegistry
from bot.conversations.turn import HistoryMessage, ReplyCompleted, ReplyFailed, TextDelta


@dataclass(frozen=True)
class RunStarted:
    """The backend started work that can be followed later by this id (kept for crash recovery)."""

    run_id: str


@dataclass(frozen=True)
class Usage:
    """Tokens the run used, reported once it is finished."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class RunRequest:
    api_thread_id: str
    assistant_id: str
    tools: ToolRegistry
    tool_context: ToolContext


BackendEvent = RunStarted | Usage | TextDelta | ReplyCompleted | ReplyFailed


class Backend(Protocol):
    """A conversation memory plus a way to run the assistant on it."""

    async def create_thread(self, history: Sequence[HistoryMessage]) -> str:
        """A new API thread, seeded with earlier messages; returns its id."""
        ...

    async def add_message(
        self,
        api_thread_id: str,
        content: str | list[dict[str, Any]],
        *,
        attachments: list[dict[str, Any]],
        key: str,
        recovering: bool,
    ) -> str:
        """Add a user message; ``key`` identifies it so a recovering worker never adds it twice."""
        ...

    async def use_vector_store(self, api_thread_id: str, vector_store_id: str) -> None:
        """Let the thread's file search read the conversation's documents."""
        ...

    async def cancel(self, api_thread_id: str, run_id: str) -> None:
        """Stop a run whose answer will not be shown."""
        ...

    def run(self, request: RunRequest, *, recovering: bool) -> AsyncIterator[BackendEvent]:
        """Run the assistant on the thread: RunStarted, then text deltas, then completion or failure."""
        ...

    def follow(self, request: RunRequest, run_id: str) -> AsyncIterator[BackendEvent]:
        """Follow a run started earlier (perhaps by a process that died) to its end."""
        ...

    async def create_assistant(self, *, model: str, name: str, instructions: str, tools: ToolRegistry) -> str:
        ...

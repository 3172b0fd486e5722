"""The answer contract: what the conversation service asks of every model backend, in neutral terms.

The service hands a backend one batch of new user messages at a time (``answer``) and stores
whatever the backend says to keep: the conversation's ``state`` (a thread id, a conversation id,
nothing at all) and the batch's ``progress`` (a run or response id, the ids of messages already
added). Both are opaque JSON to everyone but the backend that wrote them, so exactly-once
recovery is each backend's own business: a worker that resumes a batch gets the progress its
predecessor checkpointed and must neither send those messages again nor start a second run.

    answer(request) -> StateChanged | Checkpoint | TextDelta | ToolActivity | DraftImage | InputNotice | Usage
                       ... then exactly one Completed or Failed (or AwaitingDecision: resumed later)

A backend lives in ``bot/conversations/backends/<name>/`` and is chosen by name in the wiring.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.conversations.profiles import Profile, ProfileCatalog
from bot.conversations.tools import ToolContext, ToolRegistry
from bot.conversations.turn import (
    AnswerFile,
    Citation,
    DraftImage,
    HistoryMessage,
    ReasoningNote,
    ReplyCompleted,
    ReplyFailed,
    TextDelta,
    ToolActivity,
    ToolStatus,
)

BackendState = dict[str, Any]
"""A conversation's memory on a backend, as JSON: whatever that backend needs to continue it."""

Progress = dict[str, Any]
"""How far a backend got with one batch, as JSON: what it must not do twice when resumed."""


class FileKind(str, enum.Enum):
    """What a shared file is to the assistant; each backend decides how it reaches the model."""

    IMAGE = "image"  # looked at (vision)
    DOCUMENT = "document"  # read and searched (PDF, text, code, Markdown...)
    DATA = "data"  # computed on (CSV, spreadsheets, JSON)


@dataclass(frozen=True)
class InputFile:
    """A shared file's bytes, already downloaded and moderated, on its way to the model."""

    key: str  # the chat platform's file id: sharing the same file again gives the same key
    name: str
    kind: FileKind
    mimetype: str
    data: bytes = field(repr=False)

    @property
    def extension(self) -> str:
        return self.name.rpartition(".")[2].lower() if "." in self.name else ""

    def data_url(self) -> str:
        """The file inline as a data URL, the way APIs take images without an upload."""
        mimetype = self.mimetype if self.mimetype.startswith("image/") else "image/png"
        return f"data:{mimetype};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True)
class UserInput:
    """One user message of a batch."""

    key: str  # stable across retries and processes (the Slack event id)
    text: str  # what the model reads: the speaker-prefixed text, transcripts of voice clips
    files: tuple[InputFile, ...] = ()

    def text_naming(self, file_names: Sequence[str]) -> str:
        """The text plus a line naming the files the model got, which it otherwise sees by id only."""
        if not file_names:
            return self.text
        line = f"[Shared files: {', '.join(file_names)}]"
        return f"{self.text}\n\n{line}" if self.text.strip() else line


@dataclass(frozen=True)
class ConversationRef:
    """Which conversation a batch belongs to: for naming what a backend creates, and for file reuse."""

    id: int
    team_id: str
    channel_id: str
    thread_key: str


@dataclass(frozen=True)
class AnswerRequest:
    conversation: ConversationRef
    state: BackendState | None  # None: a conversation new to this backend
    progress: Progress | None  # None: nothing of this batch was sent yet
    inputs: tuple[UserInput, ...]
    # The chat's earlier messages, fetched only when a backend starts a conversation (state is None).
    history: Callable[[], Awaitable[Sequence[HistoryMessage]]]
    profile: Profile
    tools: ToolRegistry
    tool_context: ToolContext
    # 1 on the first try; more after a crash or restart, when something of the batch may have been
    # sent although ``progress`` does not say so (the process died between sending and checkpointing).
    attempt: int = 1


# Events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateChanged:
    """Store this as the conversation's new state, now: later events of the batch depend on it."""

    state: BackendState


@dataclass(frozen=True)
class Checkpoint:
    """Store this as the batch's progress, now: a resumed worker gets it back."""

    progress: Progress


@dataclass(frozen=True)
class InputNotice:
    """A shared file the backend could not give the model; the message's text is answered anyway."""

    file_name: str
    reason: str  # short plain words for the person


@dataclass(frozen=True)
class Usage:
    """Tokens the batch used, reported once the model is done."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class AwaitingDecision:
    """The batch waits for people's decisions (an MCP tool approval) and ends here, instead of Completed or
    Failed, its progress checkpointed: the service parks its turns WAITING, and the decision resumes them."""

    notice: str  # what the answer's message says meanwhile, in plain words


Completed = ReplyCompleted
Failed = ReplyFailed

BackendEvent = (
    StateChanged
    | Checkpoint
    | TextDelta
    | ToolActivity
    | ReasoningNote
    | DraftImage
    | InputNotice
    | Usage
    | AwaitingDecision
    | Completed
    | Failed
)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, so the rest of the bot offers only that."""

    vision: bool = False
    file_search: bool = False
    code_interpreter: bool = False
    image_output: bool = False
    web_search: bool = False
    # A batch interrupted by a crash is followed to its end by id instead of being asked again.
    resumable: bool = False

    def supports(self, tool: str) -> bool:
        """Whether a profile's built-in tool (as named in Profile.tools) can run here."""
        return bool(getattr(self, {"image_generation": "image_output"}.get(tool, tool), False))


class Backend(Protocol):
    """A conversation memory plus a model to answer on it, behind one batch-level call."""

    name: str
    capabilities: Capabilities

    @property
    def profiles(self) -> ProfileCatalog:
        """The assistants this backend can answer with."""
        ...

    def answer(self, request: AnswerRequest) -> AsyncIterator[BackendEvent]:
        """Add the batch to the conversation and answer it, resuming from ``request.progress``."""
        ...

    async def cancel(self, state: BackendState | None, progress: Progress | None) -> None:
        """Stop server-side work of a batch whose answer will not be shown (a no-op where there is none)."""
        ...

    async def forget(self, state: BackendState, *, conversation_id: int) -> None:
        """Delete what the server keeps for one of the conversation's memories; objects already gone count as
        deleted. Files other conversations still use (a file shared again elsewhere in the channel) stay."""
        ...


__all__ = [
    "AnswerFile",
    "AnswerRequest",
    "AwaitingDecision",
    "Backend",
    "BackendEvent",
    "BackendState",
    "Capabilities",
    "Checkpoint",
    "Citation",
    "Completed",
    "ConversationRef",
    "DraftImage",
    "Failed",
    "FileKind",
    "InputFile",
    "InputNotice",
    "Profile",
    "Progress",
    "ReasoningNote",
    "StateChanged",
    "TextDelta",
    "ToolActivity",
    "ToolStatus",
    "Usage",
    "UserInput",
]

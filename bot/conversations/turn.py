"""The plain vocabulary between the chat platform and the conversation service."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Surface(str, enum.Enum):
    """Where in Slack a conversation lives; it decides where answers go and how speakers are named."""

    CHANNEL = "channel"  # a thread in a channel, started by a mention
    DM = "dm"  # the rolling top-level conversation of a direct-message channel
    DM_THREAD = "dm_thread"  # a thread inside a direct-message channel
    ASSISTANT = "assistant"  # a thread of Slack's assistant pane


@dataclass(frozen=True)
class SharedFile:
    """A file someone shared with their message."""

    file_id: str
    name: str
    mimetype: str = ""
    size: int = 0
    filetype: str = ""  # the platform's own type name, e.g. "pdf", "m4a"
    download_url: str = ""  # where the platform serves the file's bytes to the bot


@dataclass(frozen=True)
class Turn:
    """One user message the bot must answer, in platform-neutral terms."""

    event_id: str
    team_id: str
    channel_id: str
    thread_key: str  # the conversation's key inside the channel
    surface: Surface
    user_id: str
    user_name: str
    text: str
    message_ts: str
    reply_thread_ts: str | None  # where the answer goes; None for the top level of a DM
    user_timezone: str | None = None
    files: tuple[SharedFile, ...] = field(default_factory=tuple)
    # What the person has in view as they write (e.g. the channel open beside the assistant pane), as a line
    # for the assistant; they did not write it.
    context: str = ""
    # Recorded as it arrived: the text still in the platform's markup and the speaker not yet looked up.
    # Acknowledging an event does no lookups; the platform prepares the turn when it is answered.
    raw: bool = False

    @property
    def names_speaker(self) -> bool:
        """Several people may talk in a channel thread, so the assistant is told who said what."""
        return self.surface is Surface.CHANNEL

    def content_for_assistant(self) -> str:
        said = f"{self.user_name}: {self.text}" if self.names_speaker else self.text
        return f"{self.context}\n\n{said}" if self.context else said

    def to_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["surface"] = self.surface.value
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Turn:
        values = dict(payload)
        values["surface"] = Surface(values["surface"])
        values["files"] = tuple(SharedFile(**item) for item in values.get("files", ()))
        return cls(**values)


@dataclass(frozen=True)
class HistoryMessage:
    """An earlier message of a Slack thread, used to seed a new API thread."""

    role: str  # "user" or "assistant"
    text: str


# Reply parts: what the conversation service streams to the platform's renderer.


class ToolStatus(str, enum.Enum):
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class ToolActivity:
    """A tool call started or ended: shown as progress beside the answer, never in it."""

    call_id: str
    tool: str  # "function", "file_search", "code_interpreter", "web_search", "image_generation", "mcp"
    name: str  # the function's name, or the tool's own
    status: ToolStatus


@dataclass(frozen=True)
class ReasoningNote:
    """A summary of what a reasoning model is thinking about: shown as status while it works, never in the answer."""

    text: str


@dataclass(frozen=True)
class ReplyStopped:
    """Someone stopped the answer: keep what was shown, end it with a short note, add nothing more."""


@dataclass(frozen=True)
class TextDelta:
    """More answer text, appended to what came before."""

    text: str


@dataclass(frozen=True)
class AnswerFile:
    """A file the assistant made (a chart, a table) to be shared beside its answer."""

    name: str
    data: bytes
    # The text in the answer that points at this file (e.g. a code interpreter's sandbox link), which the
    # platform replaces with a link to the shared file.
    link: str | None = None


@dataclass(frozen=True)
class DraftImage:
    """An unfinished look at an image the assistant is still drawing: shown in place of the previous draft, and
    taken back once the answer ends (the finished image comes with it)."""

    index: int  # 0 for the first draft of the answer, counting up
    data: bytes = field(repr=False)  # PNG


@dataclass(frozen=True)
class WithheldFile:
    """A file the assistant made that is not shared, and why (plain words for the person)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Citation:
    """A source the answer cites: its text carries ``[number]`` where the source is used."""

    number: int
    title: str  # a file's name or a page's title
    url: str | None = None  # for web sources


@dataclass(frozen=True)
class ReplyCompleted:
    """The whole answer; replaces whatever was streamed."""

    text: str
    files: tuple[AnswerFile, ...] = ()
    citations: tuple[Citation, ...] = ()
    withheld: tuple[WithheldFile, ...] = ()  # files the assistant made that could not be brought over


@dataclass(frozen=True)
class ReplyFailed:
    """No answer this time; a short plain-words reason for the person."""

    reason: str


@dataclass(frozen=True)
class ReplyWithdrawn:
    """Take back whatever of the answer was shown and show `notice` in its place (nothing if empty)."""

    notice: str = ""


@dataclass(frozen=True)
class PersonalNotice:
    """A short note beside the answer for one person only, where the platform can show it to them alone."""

    user_id: str
    text: str


ReplyPart = (
    TextDelta
    | ReplyCompleted
    | ReplyFailed
    | ReplyWithdrawn
    | ReplyStopped
    | PersonalNotice
    | ToolActivity
    | ReasoningNote
    | DraftImage
)

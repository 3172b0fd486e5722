"""A turn's message on its way to the backend, and the stages it passes through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.conversations.backend import ConversationRef, FileKind, InputFile, UserInput
from bot.conversations.ports import ReplyStream
from bot.conversations.turn import Turn


@dataclass
class PreparedInput:
    """One turn's message as it will reach the backend; stages refine it in order."""

    turn: Turn
    text: str  # what the assistant reads: speaker-prefixed text, plus transcripts
    files: list[InputFile] = field(default_factory=list)
    transcripts: list[tuple[str, str]] = field(default_factory=list)  # (file name, transcript)
    blocked: bool = False  # refused (e.g. by moderation): nothing of it may reach the backend

    @classmethod
    def of(cls, turn: Turn) -> PreparedInput:
        return cls(turn=turn, text=turn.content_for_assistant() if turn.text.strip() else "")

    @property
    def is_empty(self) -> bool:
        return not self.text.strip() and not self.files

    @property
    def images(self) -> list[InputFile]:
        return [file for file in self.files if file.kind is FileKind.IMAGE]

    def user_input(self) -> UserInput:
        return UserInput(key=self.turn.event_id, text=self.text, files=tuple(self.files))


class InputStage(Protocol):
    """One step between Slack and the backend (limits, file download, moderation, ...)."""

    async def process(self, item: PreparedInput, *, conversation: ConversationRef, reply: ReplyStream) -> None:
        """Refine `item` in place; tell the person through `reply` about anything refused."""
        ...


class OutputStage(Protocol):
    """A filter between the backend's answer and what people see."""

    def wrap(self, reply: ReplyStream, *, turn: Turn) -> ReplyStream: ...

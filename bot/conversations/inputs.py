"""A turn's message on its way into the API thread, and the stages it passes through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.conversations.ports import ReplyStream
from bot.conversations.turn import SharedFile, Turn
from bot.store.models import Conversation


@dataclass
class Download:
    """A shared file's bytes, fetched from the chat platform."""

    file: SharedFile
    data: bytes
    kind: str  # "image", "document", "data" or "audio"


@dataclass
class PreparedInput:
    """One turn's message as it will be added to the API thread; stages refine it in order."""

    turn: Turn
    text: str  # what the assistant reads: speaker-prefixed text, plus transcripts
    downloads: list[Download] = field(default_factory=list)
    transcripts: list[tuple[str, str]] = field(default_factory=list)  # (file name, transcript)
    content_parts: list[dict[str, Any]] = field(default_factory=list)  # e.g. image_file parts
    attachments: list[dict[str, Any]] = field(default_factory=list)  # file_search / code_interpreter
    vector_store_id: str | None = None  # the conversation's store, which the API thread must search
    blocked: bool = False  # refused (e.g. by moderation): nothing of it may reach the API

    @classmethod
    def of(cls, turn: Turn) -> PreparedInput:
        return cls(turn=turn, text=turn.content_for_assistant() if turn.text.strip() else "")

    @property
    def is_empty(self) -> bool:
        return not self.text.strip() and not self.content_parts and not self.attachments

    def message_content(self) -> str | list[dict[str, Any]]:
        if not self.content_parts:
            return self.text
        text_part = [{"type": "text", "text": self.text}] if self.text.strip() else []
        return [*text_part, *self.content_parts]


class InputStage(Protocol):
    """One step between Slack and the API thread (file download, moderation, upload, ...)."""

    async def process(self, item: PreparedInput, *, conversation: Conversation, reply: ReplyStream) -> None:
        """Refine `item` in place; tell the person through `reply` about anything refused."""
        ...


class OutputStage(Protocol):
    """A filter between the backend's answer and what people see."""

    def wrap(self, reply: ReplyStream, *, turn: Turn) -> ReplyStream: ...


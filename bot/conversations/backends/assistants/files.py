"""A user message's files on the Assistants API: images for vision, documents for file search, data for code.

Images go up for vision and into the message's content; documents into the conversation's vector
store (file search); data files to the code interpreter as attachments. Whatever the bot created for
a file that then failed is deleted again, so nothing is left orphaned on the API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bot.conversations.backend import (
    BackendState,
    ConversationRef,
    FileKind,
    InputFile,
    InputNotice,
    StateChanged,
    UserInput,
)
from bot.conversations.backends.openai_files import FILE_SEARCH_TYPES, ConversationFiles, quietly
from bot.errors import FileRefused
from bot.openai_api.files import FilePurpose

log = logging.getLogger(__name__)

NOT_SEARCHABLE = "the assistant can't search this kind of file"


@dataclass
class OutgoingMessage:
    """One user message as it will be added to the thread; its files are attached in order."""

    input: UserInput
    image_parts: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    attached_names: list[str] = field(default_factory=list)
    searched: bool = False  # a document went into the conversation's vector store

    @property
    def text(self) -> str:
        return self.input.text_naming(self.attached_names)

    @property
    def is_empty(self) -> bool:
        return not self.text.strip() and not self.image_parts and not self.attachments

    def content(self) -> str | list[dict[str, Any]]:
        if not self.image_parts:
            return self.text
        text_part = [{"type": "text", "text": self.text}] if self.text.strip() else []
        return [*text_part, *self.image_parts]


class MessageFiles:
    """Attaches a message's files; the conversation state records what the conversation owns on the API."""

    def __init__(self, files: ConversationFiles) -> None:
        self._files = files

    async def attach(
        self, message: OutgoingMessage, *, conversation: ConversationRef, state: BackendState
    ) -> AsyncIterator[StateChanged | InputNotice]:
        """Attach each file of the message; StateChanged whenever the state gains or loses an API object."""
        for file in message.input.files:
            before = _owned(state)
            try:
                await self._attach(message, file, conversation, state)
            except FileRefused as exc:
                log.info("file %s in %s not attached: %s", file.key, conversation.channel_id, exc)
                yield InputNotice(file.name, str(exc))
            else:
                message.attached_names.append(file.name)
            if _owned(state) != before:
                yield StateChanged(dict(state))

    async def _attach(
        self, message: OutgoingMessage, file: InputFile, conversation: ConversationRef, state: BackendState
    ) -> None:
        searchable = file.extension in FILE_SEARCH_TYPES
        if file.kind is FileKind.DOCUMENT and not searchable:
            raise FileRefused(NOT_SEARCHABLE)
        purpose: FilePurpose = "vision" if file.kind is FileKind.IMAGE else "assistants"
        uploaded = await self._files.upload(conversation, file, purpose=purpose)
        if uploaded.fresh:
            state["file_ids"] = [*state.get("file_ids", []), uploaded.id]
        if file.kind is FileKind.IMAGE:
            message.image_parts.append({"type": "image_file", "image_file": {"file_id": uploaded.id}})
            return
        tools = [{"type": "code_interpreter"}] if file.kind is FileKind.DATA else []
        if searchable:
            try:
                await self._index(uploaded.id, conversation, state)
            except FileRefused:
                if uploaded.fresh:
                    await self._files.discard(conversation, uploaded.id)
                    state["file_ids"] = [known for known in state["file_ids"] if known != uploaded.id]
                raise
            tools.append({"type": "file_search"})
            message.searched = True
        message.attachments.append({"file_id": uploaded.id, "tools": tools})
        if file.kind is FileKind.DATA and uploaded.id not in state.get("data_file_ids", ()):
            # A run's tools replace the assistant's: the conversation's runs must bring the code interpreter.
            state["data_file_ids"] = [*state.get("data_file_ids", ()), uploaded.id]

    async def _index(self, file_id: str, conversation: ConversationRef, state: BackendState) -> None:
        """Add the file to the conversation's vector store, created on first use (and removed if that use fails)."""
        vector_store_id = state.get("vector_store_id")
        created = vector_store_id is None
        if vector_store_id is None:
            vector_store_id = await self._files.create_vector_store(conversation)
        try:
            await self._files.index(vector_store_id, file_id)
        except FileRefused:
            if created:
                await quietly(self._files.delete_vector_store(vector_store_id), f"delete store {vector_store_id}")
            raise
        state["vector_store_id"] = vector_store_id


def _owned(state: BackendState) -> tuple[object, ...]:
    return state.get("vector_store_id"), tuple(state.get("file_ids", ())), tuple(state.get("data_file_ids", ()))

"""The chat histories and document passages the `chat` backend keeps, appended by key at most once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select

from bot.store.models import ChatMessage, DocumentChunk
from bot.store.repositories import Store, insert_ignoring_duplicates


@dataclass(frozen=True)
class HistoryEntry:
    """One message of a history: its key, role, chat-completions fields and estimated tokens."""

    key: str
    role: str
    fields: dict[str, Any]  # "content" and, for tool use, "tool_calls" or "tool_call_id"
    tokens: int


@dataclass(frozen=True)
class Passage:
    """A passage of a shared document, with its embedding."""

    file_key: str
    file_name: str
    position: int
    text: str
    embedding: tuple[float, ...]


@dataclass(frozen=True)
class HistoryRef:
    """Which history: a conversation starts a new one whenever it starts afresh on the backend."""

    conversation_id: int
    history_id: str


class ChatHistoryRecords:
    """Histories and their document passages; appending a key the history already has changes nothing."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def append(self, history: HistoryRef, entries: Sequence[HistoryEntry]) -> None:
        """Add the entries in order, skipping keys the history already has (a resumed batch's)."""
        rows = [
            {
                "conversation_id": history.conversation_id,
                "history_id": history.history_id,
                "key": entry.key,
                "role": entry.role,
                "content": entry.fields,
                "tokens": entry.tokens,
            }
            for entry in entries
        ]
        await self._insert_ignoring_duplicates(ChatMessage, rows)

    async def entries(self, history: HistoryRef) -> list[HistoryEntry]:
        """The whole history, oldest first."""
        async with self._store.transaction() as session:
            rows = await session.scalars(
                select(ChatMessage).where(ChatMessage.history_id == history.history_id).order_by(ChatMessage.id)
            )
            return [HistoryEntry(row.key, row.role, dict(row.content), row.tokens) for row in rows]

    async def add_passages(self, history: HistoryRef, passages: Sequence[Passage]) -> None:
        """Store a document's passages; those already stored (same file and position) are kept as they are."""
        rows = [
            {
                "conversation_id": history.conversation_id,
                "history_id": history.history_id,
                "file_key": passage.file_key,
                "file_name": passage.file_name[:255],
                "position": passage.position,
                "text": passage.text,
                "embedding": list(passage.embedding),
            }
            for passage in passages
        ]
        await self._insert_ignoring_duplicates(DocumentChunk, rows)

    async def has_document(self, history: HistoryRef, file_key: str) -> bool:
        async with self._store.transaction() as session:
            found = await session.scalar(
                select(
                    exists().where(DocumentChunk.history_id == history.history_id, DocumentChunk.file_key == file_key)
                )
            )
            return bool(found)

    async def passages(self, history: HistoryRef) -> list[Passage]:
        async with self._store.transaction() as session:
            rows = await session.scalars(
                select(DocumentChunk).where(DocumentChunk.history_id == history.history_id).order_by(DocumentChunk.id)
            )
            return [Passage(row.file_key, row.file_name, row.position, row.text, tuple(row.embedding)) for row in rows]

    async def forget(self, history_id: str) -> None:
        """Delete a history and its passages."""
        async with self._store.transaction() as session:
            await session.execute(delete(ChatMessage).where(ChatMessage.history_id == history_id))
            await session.execute(delete(DocumentChunk).where(DocumentChunk.history_id == history_id))

    async def _insert_ignoring_duplicates(self, model: type, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        async with self._store.transaction() as session:
            await session.execute(insert_ignoring_duplicates(session, model), rows)

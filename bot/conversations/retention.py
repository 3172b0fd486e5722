"""Data retention: conversations idle longer than RETENTION_DAYS are purged, API objects first."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Protocol

from bot.errors import APIError, NotFoundError, StoreError
from bot.openai_api.client import OpenAIClient
from bot.openai_api.files import FilesAPI
from bot.store.channels import ApiObjectIds, ChannelStore
from bot.store.repositories import Store, utcnow
from bot.store.retention import IdleConversation, RetentionRepository

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0
BATCH_SIZE = 100
# Long enough for one conversation's API deletions, each bounded by the API client's own timeout.
PURGE_LEASE_SECONDS = 600.0


class ApiObjects(Protocol):
    """Deleting what the API keeps for a conversation; an object already gone counts as deleted."""

    async def delete_thread(self, thread_id: str) -> None: ...

    async def delete_vector_store(self, vector_store_id: str) -> None: ...

    async def delete_file(self, file_id: str) -> None: ...


async def delete_api_objects(api: ApiObjects, objects: ApiObjectIds) -> None:
    """Delete a conversation's threads, vector stores and files on the API; stops at the first failure."""
    for thread_id in objects.thread_ids:
        await api.delete_thread(thread_id)
    for vector_store_id in objects.vector_store_ids:
        await api.delete_vector_store(vector_store_id)
    for file_id in objects.file_ids:
        await api.delete_file(file_id)


class OpenAIObjects:
    """ApiObjects over the Assistants API client."""

    def __init__(self, client: OpenAIClient) -> None:
        self._client = client
        self._files = FilesAPI(client)

    async def delete_thread(self, thread_id: str) -> None:
        await self._unless_gone(self._client.delete_thread(thread_id))

    async def delete_vector_store(self, vector_store_id: str) -> None:
        await self._unless_gone(self._files.delete_vector_store(vector_store_id))

    async def delete_file(self, file_id: str) -> None:
        await self._unless_gone(self._files.delete(file_id))

    @staticmethod
    async def _unless_gone(deletion: Awaitable[object]) -> None:
        try:
            await deletion
        except NotFoundError as exc:
            log.info("retention: already deleted on the API (%s)", exc)


class RetentionPurger:
    """Deletes idle conversations: their API threads, vector stores and files, then their rows."""

    def __init__(self, *, store: Store, api: ApiObjects, retention_days: int) -> None:
        self._store = store
        self._repository = RetentionRepository(store)
        self._channels = ChannelStore(store)
        self._api = api
        self._retention = timedelta(days=retention_days)
        self._owner = f"retention-{uuid.uuid4().hex[:12]}"

    async def purge_once(self) -> int:
        """Purge every conversation idle past the retention period; returns how many were deleted."""
        cutoff = utcnow() - self._retention
        deleted = 0
        skipped: set[int] = set()
        while True:
            batch = [
                conversation
                for conversation in await self._repository.idle_conversations(cutoff, limit=BATCH_SIZE + len(skipped))
                if conversation.id not in skipped
            ]
            if not batch:
                break
            for conversation in batch:
                if await self._purge(conversation, cutoff):
                    deleted += 1
                else:
                    skipped.add(conversation.id)
        if deleted or skipped:
            log.info("retention: purged %d conversations; %d left for the next purge", deleted, len(skipped))
        return deleted

    async def purge_forever(self, interval_seconds: float = PURGE_INTERVAL_SECONDS) -> None:
        while True:
            try:
                await self.purge_once()
            except StoreError:
                log.exception("retention purge failed; trying again later")
            await asyncio.sleep(interval_seconds)

    async def _purge(self, conversation: IdleConversation, cutoff: datetime) -> bool:
        """True when the conversation is gone; False leaves it (busy, woke up, or the API failed)."""
        # The lease keeps workers off the conversation while its API thread is being deleted.
        if not await self._store.claim_conversation(
            conversation.id, owner=self._owner, lease_seconds=PURGE_LEASE_SECONDS
        ):
            return False
        try:
            await delete_api_objects(self._api, await self._channels.api_objects(conversation.id))
        except APIError as exc:
            log.warning(
                "retention: conversation %s (team %s, channel %s) kept for now; the API refused a deletion: %s",
                conversation.id, conversation.team_id, conversation.channel_id, exc,
            )
            await self._store.release_conversation(conversation.id, owner=self._owner)
            return False
        if await self._repository.delete_if_idle(conversation.id, cutoff):
            return True
        await self._store.release_conversation(conversation.id, owner=self._owner)
        return False

"""Data retention: conversations idle longer than RETENTION_DAYS are purged, server objects first; expired
OAuth states (installs begun and never finished) go too."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.background import repeat
from bot.conversations.backend import Backend
from bot.errors import APIError
from bot.store.channels import BackendMemory, ChannelStore
from bot.store.repositories import Store, utcnow
from bot.store.retention import IdleConversation, OAuthStateRecords, RetentionRepository

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0
BATCH_SIZE = 100
# Long enough for one conversation's API deletions, each bounded by the API client's own timeout.
PURGE_LEASE_SECONDS = 600.0


async def forget_memories(backend: Backend, memories: Sequence[BackendMemory], *, conversation_id: int) -> None:
    """Delete what the backend keeps for each memory of the conversation; stops at the first failure.

    A memory another backend wrote (before the deployment switched) cannot be reached through this
    one: it is logged for the operator and its rows go; the server objects stay where they are.
    """
    for memory in memories:
        if memory.backend != backend.name:
            log.warning(
                "a conversation memory on the %s backend cannot be deleted through the %s backend; "
                "its server objects are left",
                memory.backend,
                backend.name,
            )
            continue
        await backend.forget(memory.state, conversation_id=conversation_id)


class RetentionPurger:
    """Deletes idle conversations (what the backend keeps for them, then their rows), unless `retention_days`
    is 0, and expired OAuth states."""

    def __init__(self, *, store: Store, backend: Backend, retention_days: int) -> None:
        self._store = store
        self._repository = RetentionRepository(store)
        self._oauth_states = OAuthStateRecords(store)
        self._channels = ChannelStore(store)
        self._backend = backend
        self._retention = timedelta(days=retention_days)
        self._owner = f"retention-{uuid.uuid4().hex[:12]}"

    async def purge_once(self) -> int:
        """Purge expired OAuth states, and every conversation idle past the retention period; returns how many
        conversations were deleted."""
        expired_states = await self._oauth_states.delete_expired()
        if expired_states:
            log.info("retention: deleted %d expired OAuth states", expired_states)
        if not self._retention:
            return 0
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
        await repeat(self.purge_once, every=interval_seconds, failure="retention purge failed")

    async def _purge(self, conversation: IdleConversation, cutoff: datetime) -> bool:
        """True when the conversation is gone; False leaves it (busy, woke up, or the API failed)."""
        # The lease keeps workers off the conversation while its server objects are being deleted.
        if not await self._store.claim_conversation(
            conversation.id, owner=self._owner, lease_seconds=PURGE_LEASE_SECONDS
        ):
            return False
        try:
            memories = await self._channels.backend_states(conversation.id)
            await forget_memories(self._backend, memories, conversation_id=conversation.id)
        except APIError as exc:
            log.warning(
                "retention: conversation %s (team %s, channel %s) kept for now; the API refused a deletion: %s",
                conversation.id,
                conversation.team_id,
                conversation.channel_id,
                exc,
            )
            await self._store.release_conversation(conversation.id, owner=self._owner)
            return False
        if await self._repository.delete_if_idle(conversation.id, cutoff):
            return True
        await self._store.release_conversation(conversation.id, owner=self._owner)
        return False

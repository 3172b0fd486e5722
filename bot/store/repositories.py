"""Repositories: every read and write the bot makes, each keyed by Slack team (and channel)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import StoreError
from bot.store.models import AppState, ChannelSetting, Conversation, RetiredState, TurnRecord, TurnStatus

OPEN_STATUSES = (TurnStatus.PENDING.value, TurnStatus.RUNNING.value)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """The bot's database, as the operations the rest of the bot needs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success; database failures become StoreError."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {type(exc).__name__}") from exc

    # Conversations -------------------------------------------------------------------------

    async def find_conversation(self, *, team_id: str, channel_id: str, thread_key: str) -> Conversation | None:
        async with self.transaction() as session:
            return await session.scalar(
                select(Conversation).where(
                    Conversation.team_id == team_id,
                    Conversation.channel_id == channel_id,
                    Conversation.thread_key == thread_key,
                )
            )

    async def get_conversation(self, conversation_id: int) -> Conversation:
        async with self.transaction() as session:
            conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            raise StoreError(f"conversation {conversation_id} does not exist")
        return conversation

    async def get_or_create_conversation(
        self, *, team_id: str, channel_id: str, thread_key: str, surface: str
    ) -> Conversation:
        found = await self.find_conversation(team_id=team_id, channel_id=channel_id, thread_key=thread_key)
        if found is not None:
            return found
        try:
            async with self.transaction() as session:
                conversation = Conversation(
                    team_id=team_id, channel_id=channel_id, thread_key=thread_key, surface=surface
                )
                session.add(conversation)
            return conversation
        except IntegrityError:
            # Another worker created it between our read and our insert: use theirs.
            found = await self.find_conversation(team_id=team_id, channel_id=channel_id, thread_key=thread_key)
            if found is None:
                raise StoreError("conversation vanished while being created") from None
            return found

    async def set_backend_state(self, conversation_id: int, *, backend: str, state: dict[str, Any] | None) -> None:
        """The conversation's state on ``backend``; a state another backend wrote is kept as retired, so that
        forgetting the conversation still finds it."""
        async with self.transaction() as session:
            conversation = await session.get(Conversation, conversation_id, with_for_update=True)
            if conversation is None:
                raise StoreError(f"conversation {conversation_id} does not exist")
            if conversation.backend not in (None, backend) and conversation.backend_state:
                session.add(
                    RetiredState(
                        conversation_id=conversation_id,
                        team_id=conversation.team_id,
                        backend=conversation.backend,
                        state=conversation.backend_state,
                    )
                )
            conversation.backend, conversation.backend_state = backend, state

    async def claim_conversation(self, conversation_id: int, *, owner: str, lease_seconds: float) -> bool:
        """Take the conversation's lease if it is free, expired or already ours; True if taken."""
        now = utcnow()
        async with self.transaction() as session:
            result = await session.execute(
                update(Conversation)
                .where(
                    Conversation.id == conversation_id,
                    or_(
                        Conversation.lease_owner.is_(None),
                        Conversation.lease_owner == owner,
                        Conversation.lease_expires_at < now,
                    ),
                )
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
            return result.rowcount == 1

    async def release_conversation(self, conversation_id: int, *, owner: str) -> None:
        async with self.transaction() as session:
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    async def conversations_needing_work(self) -> list[int]:
        """Conversations with unfinished turns and no live lease: work to start or to take over."""
        now = utcnow()
        async with self.transaction() as session:
            rows = await session.scalars(
                select(Conversation.id)
                .join(TurnRecord, TurnRecord.conversation_id == Conversation.id)
                .where(
                    TurnRecord.status.in_(OPEN_STATUSES),
                    or_(Conversation.lease_owner.is_(None), Conversation.lease_expires_at < now),
                )
                .distinct()
            )
            return list(rows)

    # Turns -------------------------------------------------------------------------------

    async def record_turn(
        self,
        *,
        conversation_id: int,
        team_id: str,
        event_id: str,
        channel_id: str,
        user_id: str,
        message_ts: str,
        payload: dict[str, Any],
    ) -> bool:
        """Write a new pending turn; False when this Slack event was already recorded."""
        try:
            async with self.transaction() as session:
                await session.execute(
                    update(Conversation).where(Conversation.id == conversation_id).values(last_message_at=utcnow())
                )
                session.add(
                    TurnRecord(
                        conversation_id=conversation_id,
                        team_id=team_id,
                        event_id=event_id,
                        channel_id=channel_id,
                        user_id=user_id,
                        message_ts=message_ts,
                        payload=payload,
                        status=TurnStatus.PENDING.value,
                        attempts=0,
                    )
                )
        except IntegrityError as exc:
            # Only the (team, event) key makes this a redelivery; any other violation (say, its
            # conversation purged meanwhile) must fail loudly so that Slack delivers the event again.
            if await self.get_turn(team_id=team_id, event_id=event_id) is None:
                raise StoreError("the turn could not be recorded") from exc
            return False
        return True

    async def open_turns(self, conversation_id: int) -> list[TurnRecord]:
        async with self.transaction() as session:
            rows = await session.scalars(
                select(TurnRecord)
                .where(TurnRecord.conversation_id == conversation_id, TurnRecord.status.in_(OPEN_STATUSES))
                .order_by(TurnRecord.id)
            )
            return list(rows)

    async def get_turn(self, *, team_id: str, event_id: str) -> TurnRecord | None:
        async with self.transaction() as session:
            return await session.scalar(
                select(TurnRecord).where(TurnRecord.team_id == team_id, TurnRecord.event_id == event_id)
            )

    async def update_turns(self, turn_ids: Sequence[int], **values: Any) -> None:
        """Set fields on turns; an end status also stamps finished_at."""
        if values.get("status") in (TurnStatus.ANSWERED.value, TurnStatus.FAILED.value):
            values["finished_at"] = utcnow()
        async with self.transaction() as session:
            await session.execute(update(TurnRecord).where(TurnRecord.id.in_(list(turn_ids))).values(**values))

    async def record_progress(self, turn_ids: Sequence[int], progress: dict[str, Any]) -> None:
        """How far the backend got with the batch of these turns."""
        async with self.transaction() as session:
            await session.execute(
                update(TurnRecord).where(TurnRecord.id.in_(list(turn_ids))).values(backend_progress=progress)
            )

    async def start_turns(self, turn_ids: Sequence[int]) -> None:
        """Mark turns running and count the attempt, so endless crash loops can be seen."""
        async with self.transaction() as session:
            await session.execute(
                update(TurnRecord)
                .where(TurnRecord.id.in_(list(turn_ids)))
                .values(status=TurnStatus.RUNNING.value, attempts=TurnRecord.attempts + 1)
            )

    # Channel settings --------------------------------------------------------------------

    async def channel_profile(self, *, team_id: str, channel_id: str) -> str | None:
        async with self.transaction() as session:
            return await session.scalar(
                select(ChannelSetting.profile_id).where(
                    and_(ChannelSetting.team_id == team_id, ChannelSetting.channel_id == channel_id)
                )
            )

    async def set_channel_profile(
        self, *, team_id: str, channel_id: str, profile_id: str | None, updated_by: str | None
    ) -> None:
        async with self.transaction() as session:
            setting = await session.get(ChannelSetting, (team_id, channel_id))
            if setting is None:
                session.add(
                    ChannelSetting(team_id=team_id, channel_id=channel_id, profile_id=profile_id, updated_by=updated_by)
                )
            else:
                setting.profile_id = profile_id
                setting.updated_by = updated_by

    # App state ---------------------------------------------------------------------------

    async def get_state(self, key: str) -> str | None:
        async with self.transaction() as session:
            return await session.scalar(select(AppState.value).where(AppState.key == key))

    async def put_state_once(self, key: str, value: str) -> str:
        """Store value under key unless one is there already; returns the value that won."""
        try:
            async with self.transaction() as session:
                session.add(AppState(key=key, value=value))
        except IntegrityError:
            existing = await self.get_state(key)
            if existing is None:
                raise StoreError(f"app state {key!r} vanished while being written") from None
            return existing
        return value

"""Repositories: every read and write the bot makes, each keyed by Slack team (and channel)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, DateTime, and_, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import StoreError
from bot.store.models import (
    AppState,
    ChannelSetting,
    Conversation,
    ProcessHeartbeat,
    RetiredState,
    TurnRecord,
    TurnStatus,
)

OPEN_STATUSES = (TurnStatus.PENDING.value, TurnStatus.RUNNING.value)
END_STATUSES = (TurnStatus.ANSWERED.value, TurnStatus.FAILED.value, TurnStatus.STOPPED.value)
# A process stamps its heartbeat this often; one silent for HEARTBEAT_STALE_SECONDS is taken for dead
# and its leases are free. Several missed beats, so that a slow query or a short network stall is survived.
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_STALE_SECONDS = 5.0


def updated_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE changed (its result is a cursor result, whatever the session's typing says)."""
    return cast("CursorResult[Any]", result).rowcount


def utcnow() -> datetime:
    return datetime.now(UTC)


def database_now(session: AsyncSession, *, plus_seconds: float = 0.0) -> ColumnElement[datetime]:
    """The database's clock, plus an offset: replicas' clocks may disagree, the database's is one.

    A SQLite database is a local file, so its clock is this host's: the value is computed here.
    """
    if session.get_bind().dialect.name == "postgresql":
        return func.now() + timedelta(seconds=plus_seconds)
    return literal(utcnow() + timedelta(seconds=plus_seconds), DateTime(timezone=True))


def dialect_insert(session: AsyncSession, model: type) -> Any:
    """An INSERT that can take ON CONFLICT clauses, which both databases speak, each through its own dialect."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(model)


def insert_ignoring_duplicates(session: AsyncSession, model: type) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING."""
    return dialect_insert(session, model).on_conflict_do_nothing()


def lease_free(session: AsyncSession) -> ColumnElement[bool]:
    """Nobody holds the conversation's lease: never taken, released, expired, or held by a dead process."""
    owner_alive = (
        select(ProcessHeartbeat.process_id)
        .where(
            ProcessHeartbeat.process_id == Conversation.lease_process,
            ProcessHeartbeat.beat_at >= database_now(session, plus_seconds=-HEARTBEAT_STALE_SECONDS),
        )
        .exists()
    )
    return or_(
        Conversation.lease_owner.is_(None),
        Conversation.lease_expires_at < database_now(session),
        and_(Conversation.lease_process.is_not(None), ~owner_alive),
    )


@dataclass(frozen=True)
class ArrivingTurn:
    """A message as it arrives, before anything else is known of it."""

    team_id: str
    channel_id: str
    thread_key: str
    surface: str
    event_id: str
    user_id: str
    message_ts: str
    payload: dict[str, Any]


class Store:
    """The bot's database, as the operations the rest of the bot needs."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        urgent: async_sessionmaker[AsyncSession] | None = None,
        process_id: str | None = None,
    ) -> None:
        self._sessions = sessions
        # Connections of their own for the writes that must not queue behind answers' work for a connection:
        # an arriving message's (Slack wants its ack within 3 s) and the heartbeat (leases hang on it).
        self._urgent = urgent or sessions
        # Whose heartbeat keeps this process's leases alive (every lease claimed through this store).
        # (Given: another store of the same process, connected on another loop.)
        self.process_id = process_id or f"process-{uuid.uuid4().hex[:12]}"

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success; database failures become StoreError.

        OSError too: with the server down, asyncpg raises ConnectionRefusedError (or another OSError,
        such as a timeout) while connecting, and SQLAlchemy passes it through untranslated.
        """
        try:
            async with (self._urgent if urgent else self._sessions)() as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"database error: {type(exc).__name__}") from exc

    # Heartbeats ----------------------------------------------------------------------------

    async def beat(self, *, renewing: Sequence[int] = (), owner: str = "", lease_seconds: float = 0.0) -> set[int]:
        """Stamp this process's heartbeat with the database's clock, and renew ``owner``'s leases of the
        conversations ``renewing`` names for ``lease_seconds`` in the same statement for all; returns those
        still held (a lease lost to another worker is not)."""
        async with self.transaction(urgent=True) as session:
            await self._beat(session)
            if not renewing:
                return set()
            renewed = await session.scalars(
                update(Conversation)
                .where(Conversation.id.in_(renewing), Conversation.lease_owner == owner)
                .values(
                    lease_process=self.process_id,
                    lease_expires_at=database_now(session, plus_seconds=lease_seconds),
                )
                .returning(Conversation.id)
                .execution_options(synchronize_session=False)
            )
            return set(renewed)

    async def _beat(self, session: AsyncSession) -> None:
        now = database_now(session)
        stamped = await session.execute(
            update(ProcessHeartbeat).where(ProcessHeartbeat.process_id == self.process_id).values(beat_at=now)
        )
        if updated_rows(stamped) == 0:  # only this process writes its row, so nobody inserts it meanwhile
            session.add(ProcessHeartbeat(process_id=self.process_id, beat_at=now))

    async def stop_beating(self) -> None:
        """At a clean exit: this process's leases are released, and its heartbeat goes with it."""
        async with self.transaction() as session:
            await session.execute(delete(ProcessHeartbeat).where(ProcessHeartbeat.process_id == self.process_id))

    async def free_every_lease(self) -> None:
        """Release every lease: for a SQLite database at start, which no other process can be using."""
        async with self.transaction() as session:
            await session.execute(
                update(Conversation)
                .where(Conversation.lease_owner.is_not(None))
                .values(lease_owner=None, lease_expires_at=None, lease_process=None)
            )

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
            # Nearly always the backend is the one that wrote before (or none did): one UPDATE.
            same_backend = await session.execute(
                update(Conversation)
                .where(
                    Conversation.id == conversation_id,
                    or_(Conversation.backend.is_(None), Conversation.backend == backend),
                )
                .values(backend=backend, backend_state=state)
                .execution_options(synchronize_session=False)
            )
            if updated_rows(same_backend) == 1:
                return
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

    async def request_stop(self, conversation_id: int) -> bool:
        """Ask whichever worker answers the conversation to stop; False when no answer is in progress."""
        running = (
            select(TurnRecord.id)
            .where(TurnRecord.conversation_id == conversation_id, TurnRecord.status == TurnStatus.RUNNING.value)
            .exists()
        )
        async with self.transaction() as session:
            result = await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, running)
                .values(stop_requested_at=database_now(session))
            )
            return updated_rows(result) == 1

    async def stops_requested(self, conversation_ids: Sequence[int]) -> set[int]:
        """Which of these conversations someone asked to stop."""
        async with self.transaction() as session:
            found = await session.scalars(
                select(Conversation.id).where(
                    Conversation.id.in_(conversation_ids), Conversation.stop_requested_at.is_not(None)
                )
            )
            return set(found)

    async def set_viewing_context(self, conversation_id: int, context: dict[str, Any] | None) -> None:
        """The channel the person views beside an assistant-pane thread (None: none, or not known)."""
        async with self.transaction() as session:
            await session.execute(
                update(Conversation).where(Conversation.id == conversation_id).values(viewing_context=context)
            )

    async def claim_conversation(self, conversation_id: int, *, owner: str, lease_seconds: float) -> bool:
        """Take the conversation's lease if it is free, expired, its process dead, or already ours; True if taken.

        The heartbeat is stamped in the same transaction, so a lease is never younger than its process's beat.
        """
        async with self.transaction() as session:
            await self._beat(session)
            result = await session.execute(self._taking_lease(session, conversation_id, owner, lease_seconds))
            return updated_rows(result) == 1

    def _taking_lease(
        self, session: AsyncSession, conversation_id: int, owner: str, lease_seconds: float, **also: Any
    ) -> Any:
        """The UPDATE that takes a conversation's lease when it is free or already ``owner``'s (and sets ``also``)."""
        return (
            update(Conversation)
            .where(Conversation.id == conversation_id, or_(lease_free(session), Conversation.lease_owner == owner))
            .values(
                lease_owner=owner,
                lease_process=self.process_id,
                lease_expires_at=database_now(session, plus_seconds=lease_seconds),
                **also,
            )
        )

    async def claim_work(
        self, conversation_id: int, *, owner: str, lease_seconds: float
    ) -> tuple[Conversation, list[TurnRecord]] | None:
        """Take the lease as ``claim_conversation`` does and read the conversation and its open turns, in one
        transaction; None when another worker holds it.

        A stop asked of an earlier answer (one that ended before its worker saw the request) is cleared: it
        must not stop the next one.
        """
        async with self.transaction() as session:
            await self._beat(session)
            conversation = await session.scalar(
                self._taking_lease(session, conversation_id, owner, lease_seconds, stop_requested_at=None)
                .returning(Conversation)
                .execution_options(synchronize_session=False)
            )
            if conversation is None:
                return None
            records = await session.scalars(
                select(TurnRecord)
                .where(TurnRecord.conversation_id == conversation_id, TurnRecord.status.in_(OPEN_STATUSES))
                .order_by(TurnRecord.id)
            )
            return conversation, list(records)

    async def finish_batch(
        self,
        conversation_id: int,
        *,
        owner: str,
        turn_ids: Sequence[int],
        status: str,
        error: str | None,
        reply_ts: str | None,
        tokens: tuple[int, int] | None,
    ) -> bool:
        """End a batch in one transaction: its turns' outcome (the answer's tokens counted on the newest turn),
        the lease released, and whether other turns wait. A turn recorded after this commits finds the lease
        free, so its own worker claims it; one recorded before is seen here."""
        values: dict[str, Any] = {"status": status, "error": error, "reply_ts": reply_ts}
        if status in END_STATUSES:
            values["finished_at"] = utcnow()
        ids = list(turn_ids)
        async with self.transaction() as session:
            if tokens is not None and len(ids) == 1:
                values["prompt_tokens"], values["completion_tokens"] = tokens
            elif tokens is not None:
                await session.execute(
                    update(TurnRecord)
                    .where(TurnRecord.id == ids[-1])
                    .values(prompt_tokens=tokens[0], completion_tokens=tokens[1])
                    .execution_options(synchronize_session=False)
                )
            await session.execute(
                update(TurnRecord)
                .where(TurnRecord.id.in_(ids))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None, lease_process=None)
                .execution_options(synchronize_session=False)
            )
            waiting = await session.scalar(
                select(TurnRecord.id)
                .where(TurnRecord.conversation_id == conversation_id, TurnRecord.status.in_(OPEN_STATUSES))
                .limit(1)
            )
            return waiting is not None

    async def release_conversation(self, conversation_id: int, *, owner: str) -> None:
        async with self.transaction() as session:
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None, lease_process=None)
            )

    async def conversations_needing_work(self, *, owner: str | None = None) -> list[int]:
        """Conversations with unfinished turns and no live lease (but ``owner``'s): work to start or take over.

        ``owner``'s own leases count, because a release that failed (the database was down) leaves one behind.
        """
        async with self.transaction() as session:
            workable = lease_free(session)
            if owner is not None:
                workable = or_(workable, Conversation.lease_owner == owner)
            rows = await session.scalars(
                select(Conversation.id)
                .join(TurnRecord, TurnRecord.conversation_id == Conversation.id)
                .where(TurnRecord.status.in_(OPEN_STATUSES), workable)
                .distinct()
            )
            return list(rows)

    # Turns -------------------------------------------------------------------------------

    async def record_arriving_turn(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_key: str,
        surface: str,
        event_id: str,
        user_id: str,
        message_ts: str,
        payload: dict[str, Any],
    ) -> tuple[int, bool]:
        """One arriving message, as `record_arriving_turns` records several."""
        arriving = ArrivingTurn(
            team_id=team_id,
            channel_id=channel_id,
            thread_key=thread_key,
            surface=surface,
            event_id=event_id,
            user_id=user_id,
            message_ts=message_ts,
            payload=payload,
        )
        [recorded] = await self.record_arriving_turns([arriving])
        return recorded

    async def record_arriving_turns(self, arriving: Sequence[ArrivingTurn]) -> list[tuple[int, bool]]:
        """The one write of arriving messages, in one transaction: each one's conversation (made when new, its
        last message stamped) and its pending turn. Returns each one's conversation id, and False for a
        redelivered event."""
        now = utcnow()
        recorded = []
        async with self.transaction(urgent=True) as session:
            for turn in arriving:
                conversation_id = await session.scalar(
                    dialect_insert(session, Conversation)
                    .values(
                        team_id=turn.team_id,
                        channel_id=turn.channel_id,
                        thread_key=turn.thread_key,
                        surface=turn.surface,
                        last_message_at=now,
                    )
                    .on_conflict_do_update(
                        index_elements=["team_id", "channel_id", "thread_key"], set_={"last_message_at": now}
                    )
                    .returning(Conversation.id)
                )
                if conversation_id is None:
                    raise StoreError("the conversation could not be recorded")
                turn_id = await session.scalar(
                    insert_ignoring_duplicates(session, TurnRecord)
                    .values(
                        conversation_id=conversation_id,
                        team_id=turn.team_id,
                        event_id=turn.event_id,
                        channel_id=turn.channel_id,
                        user_id=turn.user_id,
                        message_ts=turn.message_ts,
                        payload=turn.payload,
                        status=TurnStatus.PENDING.value,
                        attempts=0,
                    )
                    .returning(TurnRecord.id)
                )
                recorded.append((conversation_id, turn_id is not None))
        return recorded

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
        if values.get("status") in END_STATUSES:
            values["finished_at"] = utcnow()
        async with self.transaction() as session:
            await session.execute(
                update(TurnRecord)
                .where(TurnRecord.id.in_(list(turn_ids)))
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    async def record_progress(self, turn_ids: Sequence[int], progress: dict[str, Any]) -> None:
        """How far the backend got with the batch of these turns."""
        async with self.transaction() as session:
            await session.execute(
                update(TurnRecord)
                .where(TurnRecord.id.in_(list(turn_ids)))
                .values(backend_progress=progress)
                .execution_options(synchronize_session=False)
            )

    async def start_turns(self, turn_ids: Sequence[int]) -> None:
        """Mark turns running and count the attempt, so endless crash loops can be seen."""
        async with self.transaction() as session:
            await session.execute(
                update(TurnRecord)
                .where(TurnRecord.id.in_(list(turn_ids)))
                .values(status=TurnStatus.RUNNING.value, attempts=TurnRecord.attempts + 1)
                .execution_options(synchronize_session=False)
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

"""Queries behind data retention: which conversations have been idle too long, and removing them; expired
OAuth states."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Select, delete, func, select, update

from bot.store.files import drop_file_records_of
from bot.store.models import SLACK_OAUTH_STATES, Conversation, RetiredState, TurnRecord
from bot.store.repositories import OPEN_STATUSES, Store, lease_free, updated_rows


@dataclass(frozen=True)
class IdleConversation:
    """A conversation nobody has written in since before the cutoff."""

    id: int
    team_id: str
    channel_id: str


def _last_activity() -> ColumnElement[datetime]:
    # A conversation opened (assistant pane) but never written in has only its creation time.
    return func.coalesce(Conversation.last_message_at, Conversation.created_at)


def _busy() -> Select[int]:
    """Conversations with an unfinished turn."""
    return select(TurnRecord.conversation_id).where(TurnRecord.status.in_(OPEN_STATUSES))


class RetentionRepository:
    """Finds and deletes conversations idle since before a cutoff, with their turns and records."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def idle_conversations(self, cutoff: datetime, *, limit: int) -> list[IdleConversation]:
        """Idle conversations with no unfinished turn and no live lease, oldest first."""
        async with self._store.transaction() as session:
            rows = await session.execute(
                select(Conversation.id, Conversation.team_id, Conversation.channel_id)
                .where(
                    _last_activity() < cutoff,
                    Conversation.id.not_in(_busy()),
                    lease_free(session),
                )
                .order_by(_last_activity(), Conversation.id)
                .limit(limit)
            )
            return [IdleConversation(id=row.id, team_id=row.team_id, channel_id=row.channel_id) for row in rows]

    async def delete_if_idle(self, conversation_id: int, cutoff: datetime) -> bool:
        """Delete the conversation and its rows, unless a message arrived meanwhile; True if deleted.

        A conversation that woke up keeps its rows but forgets its backend state, whose objects are
        gone now: its next answer starts afresh, seeded from the Slack history.
        """
        async with self._store.transaction() as session:
            # FOR UPDATE (PostgreSQL; SQLite has one writer at a time anyway): a message being recorded
            # updates this row first, so the check waits for it and sees it, or the message waits for
            # the delete and fails, and Slack delivers it again into a new conversation.
            still_idle = await session.scalar(
                select(Conversation.id)
                .where(
                    Conversation.id == conversation_id,
                    _last_activity() < cutoff,
                    Conversation.id.not_in(_busy()),
                )
                .with_for_update()
            )
            # Explicit deletes rather than ON DELETE CASCADE, which SQLite only honours with foreign keys on.
            await session.execute(delete(RetiredState).where(RetiredState.conversation_id == conversation_id))
            await drop_file_records_of(session, conversation_id)
            if still_idle is None:
                await session.execute(
                    update(Conversation).where(Conversation.id == conversation_id).values(backend_state=None)
                )
                return False
            await session.execute(delete(TurnRecord).where(TurnRecord.conversation_id == conversation_id))
            await session.execute(delete(Conversation).where(Conversation.id == conversation_id))
            return True


class OAuthStateRecords:
    """The OAuth states slack_sdk's state store issued (one per visit of /slack/install)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def delete_expired(self) -> int:
        """Delete the states past their expiry; returns how many went.

        slack_sdk deletes a state when it is used, so only those of installs never finished pile up. It
        writes `expire_at` as naive UTC from the host's clock and checks it against the host's clock, so
        it is compared here the same way.
        """
        now = datetime.now(UTC).replace(tzinfo=None)
        async with self._store.transaction() as session:
            deleted = await session.execute(delete(SLACK_OAUTH_STATES).where(SLACK_OAUTH_STATES.c.expire_at < now))
            return updated_rows(deleted)

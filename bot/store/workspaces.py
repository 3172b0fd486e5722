"""Everything one workspace left with the bot, for purging it when it uninstalls the app, and the purge's
durable record (table `workspace_purges`): requested at the uninstall, claimed by one process, finished once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.limits import RATE_NOTICE_KEY
from bot.store.models import (
    AppState,
    AssistantChange,
    ChannelSetting,
    ChannelSettingChange,
    Conversation,
    McpServerRecord,
    ModerationEvent,
    ProcessHeartbeat,
    StoredProfile,
    TurnRecord,
    TurnStatus,
    WorkspacePurge,
)
from bot.store.repositories import (
    HEARTBEAT_STALE_SECONDS,
    OPEN_STATUSES,
    Store,
    database_now,
    dialect_insert,
    lease_free,
    updated_rows,
)

# Why a turn of an uninstalled workspace ended unanswered (for the operator: the person can no longer be told).
UNINSTALLED = "the workspace uninstalled the app before the answer"


@dataclass(frozen=True)
class PendingPurge:
    """A claimed purge: the workspace's rows last written before `requested_at` are to go."""

    team_id: str
    requested_at: datetime
    attempts: int


def _claim_free(session: AsyncSession) -> ColumnElement[bool]:
    """Nobody works the purge: never claimed, released, expired, or claimed by a dead process."""
    claimer_alive = (
        select(ProcessHeartbeat.process_id)
        .where(
            ProcessHeartbeat.process_id == WorkspacePurge.claimed_by,
            ProcessHeartbeat.beat_at >= database_now(session, plus_seconds=-HEARTBEAT_STALE_SECONDS),
        )
        .exists()
    )
    return or_(
        WorkspacePurge.claimed_by.is_(None),
        WorkspacePurge.claim_expires_at < database_now(session),
        ~claimer_alive,
    )


class WorkspaceRecords:
    """A workspace's rows, by team id, and the purges of workspaces that uninstalled."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # The purge's own record ------------------------------------------------------------------

    async def request_purge(self, team_id: str) -> None:
        """Record that the workspace's rows are to go, as of now; an unfinished purge now reaches this far."""
        async with self._store.transaction() as session:
            now = database_now(session)
            await session.execute(
                dialect_insert(session, WorkspacePurge)
                .values(team_id=team_id, requested_at=now, attempts=0)
                .on_conflict_do_update(
                    index_elements=["team_id"], set_={"requested_at": now, "finished_at": None, "attempts": 0}
                )
            )

    async def unfinished_purges(self) -> list[str]:
        """The workspaces whose purge is unfinished and not being worked (its claim is free)."""
        async with self._store.transaction() as session:
            found = await session.scalars(
                select(WorkspacePurge.team_id)
                .where(WorkspacePurge.finished_at.is_(None), _claim_free(session))
                .order_by(WorkspacePurge.requested_at)
            )
            return list(found)

    async def claim_purge(self, team_id: str, *, lease_seconds: float) -> PendingPurge | None:
        """Take the workspace's unfinished purge if nobody works it, counting the attempt; None if finished or taken.

        One conditional UPDATE, so that of several replicas (or tasks) trying at once exactly one gets it. The
        claim is this process's, whose heartbeat (stamped first) keeps it: once that goes stale, it is free.
        """
        await self._store.beat()
        async with self._store.transaction() as session:
            claimed = await session.execute(
                update(WorkspacePurge)
                .where(
                    WorkspacePurge.team_id == team_id,
                    WorkspacePurge.finished_at.is_(None),
                    _claim_free(session),
                )
                .values(
                    claimed_by=self._store.process_id,
                    claim_expires_at=database_now(session, plus_seconds=lease_seconds),
                    attempts=WorkspacePurge.attempts + 1,
                )
                .returning(WorkspacePurge.requested_at, WorkspacePurge.attempts)
            )
            row = claimed.one_or_none()
        return None if row is None else PendingPurge(team_id, row.requested_at, row.attempts)

    async def end_purge(self, purge: PendingPurge, *, finished: bool, retry_seconds: float) -> bool:
        """End this attempt; True if the purge is finished now.

        Unfinished, the claim is kept (by this process) for `retry_seconds`: nobody tries again before then,
        unless this process dies first. An uninstall recorded since the claim (after a re-install) moved
        `requested_at`: the purge is then not finished, as rows written up to that later uninstall may be left.
        """
        async with self._store.transaction() as session:
            mine = (WorkspacePurge.team_id == purge.team_id, WorkspacePurge.claimed_by == self._store.process_id)
            if finished:
                marked = await session.execute(
                    update(WorkspacePurge)
                    .where(*mine, WorkspacePurge.requested_at == purge.requested_at)
                    .values(finished_at=database_now(session), claimed_by=None, claim_expires_at=None)
                )
                if updated_rows(marked) == 1:
                    return True
            await session.execute(
                update(WorkspacePurge)
                .where(*mine)
                .values(claim_expires_at=database_now(session, plus_seconds=retry_seconds))
            )
            return False

    async def release_every_purge_claim(self) -> None:
        """Free every claim: for a SQLite database at start, which no other process can be using."""
        async with self._store.transaction() as session:
            await session.execute(
                update(WorkspacePurge)
                .where(WorkspacePurge.claimed_by.is_not(None))
                .values(claimed_by=None, claim_expires_at=None)
            )

    # What the workspace left -------------------------------------------------------------------

    async def conversation_ids(self, team_id: str, *, before: datetime) -> list[int]:
        """The workspace's conversations begun before `before`, oldest first."""
        async with self._store.transaction() as session:
            found = await session.scalars(
                select(Conversation.id)
                .where(Conversation.team_id == team_id, Conversation.created_at < before)
                .order_by(Conversation.id)
            )
            return list(found)

    async def profile_ids(self, team_id: str, *, before: datetime) -> list[str]:
        """The profiles made in the workspace (and last changed) before `before`."""
        async with self._store.transaction() as session:
            found = await session.scalars(
                select(StoredProfile.id).where(StoredProfile.team_id == team_id, StoredProfile.updated_at < before)
            )
            return list(found)

    async def end_unanswerable_turns(self, conversation_ids: Sequence[int]) -> int:
        """Fail the unfinished turns of these conversations that no worker holds; returns how many.

        The workspace uninstalled: without its token no worker can answer them (the one that tries fails
        before it starts), and they would keep their conversation from being forgotten for good. One a
        live worker answers is left to end by itself.
        """
        async with self._store.transaction() as session:
            unattended = select(Conversation.id).where(Conversation.id.in_(conversation_ids), lease_free(session))
            ended = await session.execute(
                update(TurnRecord)
                .where(TurnRecord.conversation_id.in_(unattended), TurnRecord.status.in_(OPEN_STATUSES))
                .values(status=TurnStatus.FAILED.value, error=UNINSTALLED, finished_at=database_now(session))
            )
            return updated_rows(ended)

    async def delete_settings_and_records(self, team_id: str, *, before: datetime) -> dict[str, int]:
        """Delete the workspace's rows outside its conversations last written before `before`; returns how many
        went, by table.

        Channel settings and their audit, profiles made in the workspace, MCP servers (with their encrypted
        secrets), moderation events and rate-limit notices. Nothing is kept for audit: the workspace asked
        for its data to go, and what it did in the bot is no longer the operator's to keep. Turns (with
        their token usage and feedback), chat history, documents, uploaded-file records, MCP approvals
        and tool calls belong to conversations, and go with each (`ConversationControl.forget`), after
        what the API keeps for it.
        """
        rate_notices = RATE_NOTICE_KEY.format(team_id=team_id, user_id="")
        # Each table's rows of the workspace, and the column that says when a row was last written.
        written_at: dict[str, Any] = {
            "channel_settings": (ChannelSetting, ChannelSetting.updated_at),
            "channel_setting_changes": (ChannelSettingChange, ChannelSettingChange.created_at),
            "assistant_changes": (AssistantChange, AssistantChange.created_at),
            "profiles": (StoredProfile, StoredProfile.updated_at),
            "mcp_servers": (McpServerRecord, McpServerRecord.updated_at),
            "moderation_events": (ModerationEvent, ModerationEvent.created_at),
        }
        deletions: dict[str, Any] = {
            table: delete(model).where(model.team_id == team_id, column < before)
            for table, (model, column) in written_at.items()
        }
        deletions["rate_notices"] = delete(AppState).where(
            AppState.key.startswith(rate_notices, autoescape=True), AppState.updated_at < before
        )
        async with self._store.transaction() as session:
            return {table: updated_rows(await session.execute(statement)) for table, statement in deletions.items()}

"""Which Slack files are already on the API, per team and channel, so that sharing one again reuses it;
and which conversations use each, so that a file is deleted only with its last user."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import ApiFile, ApiFileUse
from bot.store.repositories import Store, insert_ignoring_duplicates


class ApiFileRecords:
    """Slack file id -> API file id, never across channels (a DM's file stays in that DM), with its users.

    Reuse and release lock the file's record (FOR UPDATE, on PostgreSQL), so that a conversation
    starting to use a file and the file's last user letting go of it are ordered: either the use is
    counted, or the record is gone and the file is uploaded afresh.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    async def use(self, *, team_id: str, channel_id: str, slack_file_id: str, conversation_id: int) -> str | None:
        """The API file id on record for this channel, now counted as used by the conversation; None if none."""
        async with self._store.transaction() as session:
            record = await session.scalar(
                select(ApiFile)
                .where(
                    ApiFile.team_id == team_id,
                    ApiFile.channel_id == channel_id,
                    ApiFile.slack_file_id == slack_file_id,
                )
                .with_for_update()
            )
            if record is None:
                return None
            await _add_use(session, record.id, conversation_id)
            return record.api_file_id

    async def remember(
        self,
        *,
        team_id: str,
        channel_id: str,
        slack_file_id: str,
        conversation_id: int,
        api_file_id: str,
        purpose: str,
        filename: str,
    ) -> str:
        """Record the upload as used by its conversation; returns the API file id on record (another
        worker's if it was first, then used by this conversation too)."""
        try:
            async with self._store.transaction() as session:
                record = ApiFile(
                    team_id=team_id,
                    channel_id=channel_id,
                    slack_file_id=slack_file_id,
                    conversation_id=conversation_id,
                    api_file_id=api_file_id,
                    purpose=purpose,
                    filename=filename[:255],
                )
                session.add(record)
                await session.flush()
                await _add_use(session, record.id, conversation_id)
            return api_file_id
        except IntegrityError:
            recorded = await self.use(
                team_id=team_id, channel_id=channel_id, slack_file_id=slack_file_id, conversation_id=conversation_id
            )
            return recorded or api_file_id

    async def release(self, conversation_id: int) -> list[str]:
        """The conversation stops using its files; returns the API file ids nobody uses any more, whose
        records are gone now (so the caller deletes those files on the API)."""
        async with self._store.transaction() as session:
            records = list(
                await session.scalars(
                    select(ApiFile)
                    .join(ApiFileUse, ApiFileUse.record_id == ApiFile.id)
                    .where(ApiFileUse.conversation_id == conversation_id)
                    .order_by(ApiFile.id)
                    .with_for_update(of=ApiFile)
                )
            )
            await session.execute(delete(ApiFileUse).where(ApiFileUse.conversation_id == conversation_id))
            unused = [
                record
                for record in records
                if not await session.scalar(select(exists().where(ApiFileUse.record_id == record.id)))
            ]
            if unused:
                await session.execute(delete(ApiFile).where(ApiFile.id.in_([record.id for record in unused])))
            return [record.api_file_id for record in unused]

    async def unrecorded(self, api_file_ids: Iterable[str]) -> list[str]:
        """Those of the API file ids no record holds: no conversation can reuse them (any more)."""
        wanted = list(dict.fromkeys(api_file_ids))
        if not wanted:
            return []
        async with self._store.transaction() as session:
            recorded = set(await session.scalars(select(ApiFile.api_file_id).where(ApiFile.api_file_id.in_(wanted))))
        return [api_file_id for api_file_id in wanted if api_file_id not in recorded]

    async def forget(self, *, team_id: str, channel_id: str, api_file_id: str) -> None:
        async with self._store.transaction() as session:
            await session.execute(
                delete(ApiFile).where(
                    ApiFile.team_id == team_id, ApiFile.channel_id == channel_id, ApiFile.api_file_id == api_file_id
                )
            )


async def _add_use(session: AsyncSession, record_id: int, conversation_id: int) -> None:
    """Count the conversation as a user of the record's file (once, however often it shares the file)."""
    await session.execute(
        insert_ignoring_duplicates(session, ApiFileUse).values(record_id=record_id, conversation_id=conversation_id)
    )


async def drop_file_records_of(session: AsyncSession, conversation_id: int) -> None:
    """A conversation's rows are going: its uses go, and so do the records of files nobody else uses; a
    file another conversation still uses keeps its record, without an uploader."""
    await session.execute(delete(ApiFileUse).where(ApiFileUse.conversation_id == conversation_id))
    used = exists().where(ApiFileUse.record_id == ApiFile.id)
    await session.execute(delete(ApiFile).where(ApiFile.conversation_id == conversation_id, ~used))
    await session.execute(
        update(ApiFile).where(ApiFile.conversation_id == conversation_id).values(conversation_id=None)
    )

"""Which Slack files are already on the API, per team and channel, so that sharing one again reuses it."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from bot.store.models import ApiFile
from bot.store.repositories import Store


class ApiFileRecords:
    """Slack file id -> API file id, never across channels (a DM's file stays in that DM)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def find(self, *, team_id: str, channel_id: str, slack_file_id: str) -> str | None:
        async with self._store.transaction() as session:
            return await session.scalar(
                select(ApiFile.api_file_id).where(
                    ApiFile.team_id == team_id,
                    ApiFile.channel_id == channel_id,
                    ApiFile.slack_file_id == slack_file_id,
                )
            )

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
        """Record the upload; returns the API file id on record (another worker's if it was first)."""
        try:
            async with self._store.transaction() as session:
                session.add(
                    ApiFile(
                        team_id=team_id,
                        channel_id=channel_id,
                        slack_file_id=slack_file_id,
                        conversation_id=conversation_id,
                        api_file_id=api_file_id,
                        purpose=purpose,
                        filename=filename[:255],
                    )
                )
            return api_file_id
        except IntegrityError:
            recorded = await self.find(team_id=team_id, channel_id=channel_id, slack_file_id=slack_file_id)
            return recorded or api_file_id

    async def forget(self, *, team_id: str, channel_id: str, api_file_id: str) -> None:
        async with self._store.transaction() as session:
            await session.execute(
                delete(ApiFile).where(
                    ApiFile.team_id == team_id, ApiFile.channel_id == channel_id, ApiFile.api_file_id == api_file_id
                )
            )

"""Queries over everything one workspace left with the bot, for purging it when it uninstalls the app."""

from __future__ import annotations

from sqlalchemy import select

from bot.store.models import Conversation
from bot.store.repositories import Store


class WorkspaceRecords:
    """A workspace's rows, by team id."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def conversation_ids(self, team_id: str) -> list[int]:
        """Every conversation of the workspace, oldest first."""
        async with self._store.transaction() as session:
            found = await session.scalars(
                select(Conversation.id).where(Conversation.team_id == team_id).order_by(Conversation.id)
            )
            return list(found)

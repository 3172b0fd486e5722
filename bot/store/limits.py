"""Queries behind the per-person limits: how many messages someone sent just before a given one."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from bot.store.models import TurnRecord
from bot.store.repositories import Store


class LimitsRepository:
    """Read-only counts over recorded turns, keyed by team and person."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def messages_before(self, *, team_id: str, event_id: str, window: timedelta) -> int | None:
        """How many turns the same person recorded in `window` before this event's turn; None if unknown.

        Counting turns recorded before this one (by id) keeps the answer the same however the
        conversations' workers happen to be scheduled.
        """
        async with self._store.transaction() as session:
            turn = await session.scalar(
                select(TurnRecord).where(TurnRecord.team_id == team_id, TurnRecord.event_id == event_id)
            )
            if turn is None:
                return None
            return await session.scalar(
                select(func.count(TurnRecord.id)).where(
                    TurnRecord.team_id == team_id,
                    TurnRecord.user_id == turn.user_id,
                    TurnRecord.id < turn.id,
                    TurnRecord.created_at >= turn.created_at - window,
                )
            )

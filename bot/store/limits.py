"""Queries behind the per-person limits: how many messages someone sent just before a given one, and when they were told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot.store.models import AppState, TurnRecord
from bot.store.repositories import Store

# The app_state key under which the moment a person was last told they are too fast is kept.
RATE_NOTICE_KEY = "rate-notice:{team_id}:{user_id}"


class LimitsRepository:
    """Counts over recorded turns, keyed by team and person, and the memory of rate-limit notices."""

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

    async def claim_rate_notice(self, *, team_id: str, event_id: str, window: timedelta) -> bool:
        """True when the person who sent this event is to be told they are too fast: once per `window`.

        The moment they were last told (the told turn's own time, on the database's clock) is claimed
        under a row lock, so replicas answering the same person's conversations tell them once between them.
        """
        try:
            async with self._store.transaction() as session:
                turn = await session.scalar(
                    select(TurnRecord).where(TurnRecord.team_id == team_id, TurnRecord.event_id == event_id)
                )
                if turn is None:
                    return False
                key = RATE_NOTICE_KEY.format(team_id=team_id, user_id=turn.user_id)
                moment = _aware(turn.created_at)
                told = await session.scalar(select(AppState).where(AppState.key == key).with_for_update())
                if told is None:
                    session.add(AppState(key=key, value=moment.isoformat()))
                    return True
                if _aware(datetime.fromisoformat(told.value)) > moment - window:
                    return False
                told.value = moment.isoformat()
                return True
        except IntegrityError:
            return False  # another replica told them at this very moment


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are UTC there."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

"""The moderation log: every flagged input or answer, for operators to review."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from bot.store.models import ModerationEvent
from bot.store.repositories import Store


@dataclass(frozen=True)
class Flag:
    """One flag to record: who, where, which way, what kind of content and why."""

    team_id: str
    channel_id: str
    user_id: str | None
    direction: str  # "input" or "output"
    source: str  # "text", "image", "transcript" or "answer"
    categories: tuple[str, ...]
    top_scores: dict[str, float]
    flagged_text: str | None  # only when the operator keeps flagged text


class ModerationLog:
    """Writes flags to `moderation_events` and reads the recent ones back."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, flag: Flag) -> None:
        async with self._store.transaction() as session:
            session.add(
                ModerationEvent(
                    team_id=flag.team_id,
                    channel_id=flag.channel_id,
                    user_id=flag.user_id,
                    direction=flag.direction,
                    source=flag.source,
                    categories=list(flag.categories),
                    top_scores=flag.top_scores,
                    flagged_text=flag.flagged_text,
                )
            )

    async def recent(self, *, limit: int, team_id: str | None = None) -> Sequence[ModerationEvent]:
        """The newest flags first, of one team or of all."""
        query = select(ModerationEvent).order_by(ModerationEvent.created_at.desc(), ModerationEvent.id.desc())
        if team_id is not None:
            query = query.where(ModerationEvent.team_id == team_id)
        async with self._store.transaction() as session:
            return list(await session.scalars(query.limit(limit)))

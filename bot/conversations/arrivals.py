"""Arriving messages recorded by group commit (see bot.store.group_commit)."""

from __future__ import annotations

from collections.abc import Callable

from bot.store.group_commit import GroupCommit
from bot.store.repositories import ArrivingTurn, Store


class Arrivals:
    """Records arriving turns durably, several to a transaction, and schedules each recorded conversation.

    Scheduling is done after the commit, so that a turn recorded for a caller that is no longer waiting (its
    request was cut off) is still answered at once.
    """

    def __init__(self, store: Store, *, schedule: Callable[[int], None]) -> None:
        self._schedule = schedule
        self._writes = GroupCommit(store.record_arriving_turns, written=self._recorded)

    async def record(self, arriving: ArrivingTurn) -> bool:
        """Record the turn; False for a redelivered event. Database failures raise, as from the store."""
        _, recorded = await self._writes.write(arriving)
        return recorded

    def _recorded(self, outcome: tuple[int, bool]) -> None:
        conversation_id, recorded = outcome
        if recorded:
            self._schedule(conversation_id)

"""What the bot has done, counted from the database: read when metrics are scraped, never on an answer's path.

The database holds these counts for every replica at once, so each replica reports the same, complete
figures (a dashboard takes their max, not their sum), and a restart loses none of them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Text, cast, func, select

from bot.store.models import Conversation, Feedback, ModerationEvent, TurnRecord, TurnStatus
from bot.store.repositories import Store


@dataclass(frozen=True)
class ActivityCounts:
    """The counts at one moment, keyed by their labels."""

    turns: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, surface)
    tokens: dict[tuple[str, str], int] = field(default_factory=dict)  # (team, "prompt" | "completion")
    flags: dict[tuple[str, str], int] = field(default_factory=dict)  # (category, direction)
    feedback: dict[str, int] = field(default_factory=dict)  # value ("good", "bad")

    @property
    def waiting(self) -> int:
        """Turns recorded and not yet taken up by a worker."""
        return sum(count for (status, _), count in self.turns.items() if status == TurnStatus.PENDING.value)


class Activity:
    """Reads ActivityCounts in one transaction, with a few grouped queries."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def counts(self) -> ActivityCounts:
        async with self._store.transaction() as session:
            turns = await session.execute(
                select(TurnRecord.status, Conversation.surface, func.count())
                .join(Conversation, Conversation.id == TurnRecord.conversation_id)
                .group_by(TurnRecord.status, Conversation.surface)
            )
            tokens = await session.execute(
                select(
                    TurnRecord.team_id,
                    func.coalesce(func.sum(TurnRecord.prompt_tokens), 0),
                    func.coalesce(func.sum(TurnRecord.completion_tokens), 0),
                )
                .where(TurnRecord.prompt_tokens.is_not(None))
                .group_by(TurnRecord.team_id)
            )
            # Grouped by the categories' JSON text (a handful of distinct sets), split into categories here:
            # SQLite and PostgreSQL unnest JSON arrays with different functions.
            categories = cast(ModerationEvent.categories, Text)
            flag_sets = await session.execute(
                select(ModerationEvent.direction, categories, func.count()).group_by(
                    ModerationEvent.direction, categories
                )
            )
            feedback = await session.execute(select(Feedback.value, func.count()).group_by(Feedback.value))
            flags: Counter[tuple[str, str]] = Counter()
            for direction, listed, count in flag_sets:
                for category in json.loads(listed):
                    flags[category, direction] += count
            token_counts: dict[tuple[str, str], int] = {}
            for team, prompt, completion in tokens:
                token_counts[team, "prompt"] = int(prompt or 0)
                token_counts[team, "completion"] = int(completion or 0)
            return ActivityCounts(
                turns={(status, surface): count for status, surface, count in turns},
                tokens=token_counts,
                flags=dict(flags),
                feedback={value: count for value, count in feedback},
            )

"""Repository of people's ratings of answers: one per person per answer, with an optional comment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, case, func, select

from bot.store.models import Feedback, TurnRecord
from bot.store.repositories import Store, dialect_insert, utcnow

GOOD = "good"
BAD = "bad"
RATINGS = (GOOD, BAD)


@dataclass(frozen=True)
class FeedbackComment:
    channel_id: str
    user_id: str
    value: str
    comment: str
    at: datetime


@dataclass(frozen=True)
class ChannelFeedback:
    """A channel's ratings: how many good and bad, and its newest comments (newest first)."""

    team_id: str
    channel_id: str
    good: int
    bad: int
    comments: tuple[FeedbackComment, ...] = ()


class FeedbackStore:
    """Ratings over the shared Store's transactions; an answer is found by where it is shown (its first message)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def rate(self, *, team_id: str, channel_id: str, answer_ts: str, user_id: str, value: str) -> bool:
        """Record the person's rating of the answer that begins at answer_ts, replacing an earlier one (and its
        comment, when the rating changes); False when no answer of the bot begins there."""
        async with self._store.transaction() as session:
            turn_id = await session.scalar(_answer_turn(team_id, channel_id, answer_ts))
            if turn_id is None:
                return False
            statement = dialect_insert(session, Feedback).values(
                team_id=team_id, channel_id=channel_id, turn_id=turn_id, user_id=user_id, value=value
            )
            excluded = statement.excluded
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[Feedback.turn_id, Feedback.user_id],
                    set_={
                        "value": excluded.value,
                        "comment": case((Feedback.value == excluded.value, Feedback.comment), else_=None),
                        "updated_at": utcnow(),
                    },
                )
            )
            return True

    async def comment(self, *, team_id: str, channel_id: str, answer_ts: str, user_id: str, comment: str) -> bool:
        """Add the person's comment to their rating of the answer; False when they have not rated it."""
        async with self._store.transaction() as session:
            turn_id = await session.scalar(_answer_turn(team_id, channel_id, answer_ts))
            if turn_id is None:
                return False
            rating = await session.scalar(
                select(Feedback).where(Feedback.turn_id == turn_id, Feedback.user_id == user_id).with_for_update()
            )
            if rating is None:
                return False
            rating.comment = comment
            rating.updated_at = utcnow()
            return True

    async def summary(
        self,
        *,
        team_id: str | None = None,
        channel_id: str | None = None,
        since: datetime | None = None,
        comments: int = 5,
    ) -> list[ChannelFeedback]:
        """Each channel's counts and its newest ``comments`` comments, channels with most ratings first."""
        conditions = []
        if team_id is not None:
            conditions.append(Feedback.team_id == team_id)
        if channel_id is not None:
            conditions.append(Feedback.channel_id == channel_id)
        if since is not None:
            conditions.append(Feedback.updated_at >= since)
        counts = (
            select(
                Feedback.team_id,
                Feedback.channel_id,
                func.count(case((Feedback.value == GOOD, 1))),
                func.count(case((Feedback.value == BAD, 1))),
            )
            .where(*conditions)
            .group_by(Feedback.team_id, Feedback.channel_id)
            .order_by(func.count().desc(), Feedback.team_id, Feedback.channel_id)
        )
        async with self._store.transaction() as session:
            channels = []
            for row_team, row_channel, good, bad in (await session.execute(counts)).all():
                latest = await session.scalars(
                    select(Feedback)
                    .where(
                        *conditions,
                        Feedback.team_id == row_team,
                        Feedback.channel_id == row_channel,
                        Feedback.comment.is_not(None),
                    )
                    .order_by(Feedback.updated_at.desc(), Feedback.id.desc())
                    .limit(comments)
                )
                channels.append(
                    ChannelFeedback(
                        team_id=row_team,
                        channel_id=row_channel,
                        good=int(good),
                        bad=int(bad),
                        comments=tuple(
                            FeedbackComment(row.channel_id, row.user_id, row.value, row.comment or "", row.updated_at)
                            for row in latest
                        ),
                    )
                )
            return channels


def _answer_turn(team_id: str, channel_id: str, answer_ts: str) -> Select[int]:
    """The newest turn answered by the message at answer_ts (a batch's turns share their answer)."""
    return (
        select(TurnRecord.id)
        .where(TurnRecord.team_id == team_id, TurnRecord.channel_id == channel_id, TurnRecord.reply_ts == answer_ts)
        .order_by(TurnRecord.id.desc())
        .limit(1)
    )

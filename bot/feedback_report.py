"""`python -m bot feedback`: each channel's ratings of the bot's answers and their latest comments, for operators."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, timedelta

from bot.store.db import create_engine, migrate, session_factory
from bot.store.feedback import GOOD, ChannelFeedback, FeedbackStore
from bot.store.repositories import Store, utcnow

LATEST_COMMENTS = 5
# A comment is cut so that it stays one line of the report.
COMMENT_PREVIEW_CHARS = 100


def positive_days(value: str) -> int:
    """argparse type of --since."""
    days = int(value)
    if days < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return days


async def channel_feedback(database_url: str, *, team_id: str | None, since_days: int | None) -> list[ChannelFeedback]:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        since = utcnow() - timedelta(days=since_days) if since_days else None
        return await FeedbackStore(Store(session_factory(engine))).summary(
            team_id=team_id, since=since, comments=LATEST_COMMENTS
        )
    finally:
        await engine.dispose()


def format_feedback(channels: Sequence[ChannelFeedback]) -> str:
    """One block per channel: its counts, then its newest comments; channels with most ratings first."""
    if not channels:
        return "no feedback recorded"
    lines: list[str] = []
    for channel in channels:
        lines.append(f"{channel.team_id} {channel.channel_id}: {channel.good} good, {channel.bad} bad")
        for comment in channel.comments:
            when = comment.at if comment.at.tzinfo else comment.at.replace(tzinfo=UTC)
            text = " ".join(comment.comment.split())
            if len(text) > COMMENT_PREVIEW_CHARS:
                text = text[: COMMENT_PREVIEW_CHARS - 1] + "…"
            rating = "good" if comment.value == GOOD else "bad"
            lines.append(f"  {when.astimezone(UTC):%Y-%m-%d %H:%M} {comment.user_id} ({rating}): {text}")
    return "\n".join(lines)

"""`python -m bot moderation-log`: the recent moderation flags as a table for operators."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC

from bot.store.db import create_engine, migrate, session_factory
from bot.store.models import ModerationEvent
from bot.store.moderation_log import ModerationLog
from bot.store.repositories import Store

COLUMNS = ("when (UTC)", "team", "channel", "user", "direction", "source", "categories", "top scores", "text")
# Kept text is cut so that one flag stays one line of the table.
TEXT_PREVIEW_CHARS = 60


def positive_count(value: str) -> int:
    """argparse type of --limit."""
    count = int(value)
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


async def recent_flags(database_url: str, *, limit: int, team_id: str | None) -> Sequence[ModerationEvent]:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        return await ModerationLog(Store(session_factory(engine))).recent(limit=limit, team_id=team_id)
    finally:
        await engine.dispose()


def _row(event: ModerationEvent) -> tuple[str, ...]:
    when = event.created_at if event.created_at.tzinfo else event.created_at.replace(tzinfo=UTC)
    text = " ".join((event.flagged_text or "").split())
    return (
        when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        event.team_id,
        event.channel_id,
        event.user_id or "-",
        event.direction,
        event.source,
        ", ".join(event.categories),
        ", ".join(f"{category} {score:.2f}" for category, score in event.top_scores.items()),
        text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 1] + "…",
    )


def format_flags(events: Sequence[ModerationEvent]) -> str:
    """A plain-text table, newest first; one line per flag."""
    if not events:
        return "no moderation flags recorded"
    rows = [COLUMNS, *(_row(event) for event in events)]
    widths = [max(len(row[index]) for row in rows) for index in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)

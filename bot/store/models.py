"""SQLAlchemy models: conversations, channel settings, turns and the bot's own state."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names keep migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class TurnStatus(str, enum.Enum):
    """A turn's life: written as PENDING before any API call, then one of the end states.

    PENDING   recorded, waiting for its conversation's worker
    RUNNING   claimed: its message is being added / its run is being followed
    ANSWERED  the answer is in Slack
    FAILED    ended without an answer; the person was told why
    """

    PENDING = "pending"
    RUNNING = "running"
    ANSWERED = "answered"
    FAILED = "failed"


class Conversation(Timestamped, Base):
    """One Slack conversation (channel thread, DM, assistant-pane thread) and its API thread."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    # The Slack thread's ts, or "dm" for the rolling top-level conversation of a DM channel.
    thread_key: Mapped[str] = mapped_column(String(64))
    surface: Mapped[str] = mapped_column(String(16))
    api_thread_id: Mapped[str | None] = mapped_column(String(128))
    assistant_id: Mapped[str | None] = mapped_column(String(128))
    # Whoever holds an unexpired lease is the only worker answering this conversation.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ChannelSetting(Timestamped, Base):
    """Per-channel choices, such as the assistant the channel talks to."""

    __tablename__ = "channel_settings"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    assistant_id: Mapped[str | None] = mapped_column(String(128))
    updated_by: Mapped[str | None] = mapped_column(String(32))


class TurnRecord(Timestamped, Base):
    """One handled user message: the durable record of the work it causes."""

    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("team_id", "event_id"),
        Index("ix_turns_conversation_status", "conversation_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str] = mapped_column(String(32))
    # The serialised domain Turn, so that a restarted bot can finish the work without Slack.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=TurnStatus.PENDING.value, index=True)
    api_message_id: Mapped[str | None] = mapped_column(String(128))
    run_id: Mapped[str | None] = mapped_column(String(128))
    reply_ts: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AppState(Timestamped, Base):
    """Small facts the bot remembers about itself, such as the assistant it created."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

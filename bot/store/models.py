"""SQLAlchemy models: conversations, channel settings, turns and the bot's own state."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
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
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


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
    STOPPED   stopped on request while answering; what was shown so far stays
    WAITING   the answer waits for a person's decision (an MCP tool approval); a decision makes it PENDING again
    """

    PENDING = "pending"
    RUNNING = "running"
    ANSWERED = "answered"
    FAILED = "failed"
    STOPPED = "stopped"
    WAITING = "waiting"


class Conversation(Timestamped, Base):
    """One Slack conversation (channel thread, DM, assistant-pane thread) and its memory on a backend."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    # The Slack thread's ts, or "dm" for the rolling top-level conversation of a DM channel.
    thread_key: Mapped[str] = mapped_column(String(64))
    surface: Mapped[str] = mapped_column(String(16))
    # The backend that holds this conversation's memory, and its opaque state there (a thread id, a
    # conversation id...). A conversation from another backend starts afresh, seeded from Slack.
    backend: Mapped[str | None] = mapped_column(String(16))
    backend_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # After `/assistant new`: a fresh start is seeded only with the chat's messages after this (a Slack ts).
    history_since: Mapped[str | None] = mapped_column(String(32))
    last_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # Whoever holds an unexpired lease is the only worker answering this conversation.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The process whose heartbeat keeps the lease alive: once that heartbeat is stale, the lease is free
    # (seconds after a crash, not when lease_expires_at comes).
    lease_process: Mapped[str | None] = mapped_column(String(64))
    # Someone asked to stop the answer in progress: whichever worker holds the lease stops it and clears this.
    stop_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The channel the person is viewing beside an assistant-pane thread: {"channel_id", "name", "topic"}.
    viewing_context: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ChannelSetting(Timestamped, Base):
    """Per-channel choices, such as the assistant profile the channel talks to."""

    __tablename__ = "channel_settings"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    profile_id: Mapped[str | None] = mapped_column(String(128))
    # "mention", "thread" or "all"; None follows REPLY_WITHOUT_MENTION.
    reply_mode: Mapped[str | None] = mapped_column(String(16))
    # None and True show the feedback buttons on answers; False hides them.
    feedback_enabled: Mapped[bool | None] = mapped_column(Boolean)
    updated_by: Mapped[str | None] = mapped_column(String(32))


class TurnRecord(Timestamped, Base):
    """One handled user message: the durable record of the work it causes."""

    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("team_id", "event_id"),
        Index("ix_turns_conversation_status", "conversation_id", "status"),
        Index("ix_turns_team_user_created", "team_id", "user_id", "created_at"),
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
    # How far the backend got with the batch this turn is in (opaque to all but that backend).
    backend_progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reply_ts: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Token usage of the answer to this turn (shared by the turns it answered at once).
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProcessHeartbeat(Base):
    """A running bot process, stamped every few seconds with the database's clock; a stale stamp means dead."""

    __tablename__ = "process_heartbeats"

    process_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AppState(Timestamped, Base):
    """Small facts the bot remembers about itself, such as the assistant it created."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RetiredState(Base):
    """A backend state a conversation no longer uses (after `/assistant new`); kept until forgotten."""

    __tablename__ = "retired_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[str] = mapped_column(String(32))
    backend: Mapped[str] = mapped_column(String(16))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    retired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiFile(Base):
    """A Slack file uploaded to the API, so that sharing it again in the same channel reuses it."""

    __tablename__ = "api_files"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "slack_file_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    # Files never cross channels: a DM's or private channel's file is only reused where it was shared.
    channel_id: Mapped[str] = mapped_column(String(32))
    slack_file_id: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"), index=True)
    api_file_id: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiFileUse(Base):
    """A conversation that uses an uploaded file (its uploader, or one that reused it): the file is deleted
    from the API only when its last user is forgotten or purged."""

    __tablename__ = "api_file_uses"

    record_id: Mapped[int] = mapped_column(ForeignKey("api_files.id", ondelete="CASCADE"), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ModerationEvent(Base):
    """One flagged input or output; the text itself only when the operator asks to keep it."""

    __tablename__ = "moderation_events"
    __table_args__ = (Index("ix_moderation_events_team_created", "team_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))  # "input" or "output"
    source: Mapped[str] = mapped_column(String(16))  # "text", "image", "transcript", "answer", "prompt"
    categories: Mapped[list[str]] = mapped_column(JSON)
    top_scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    flagged_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StoredProfile(Timestamped, Base):
    """An assistant profile kept by the bot: made with `/assistant create`, or copied from the API's
    assistants so that a channel's choice survives a change of backend."""

    __tablename__ = "profiles"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(128))
    instructions: Mapped[str] = mapped_column(Text)
    tools: Mapped[list[str]] = mapped_column(JSON)
    vector_store_ids: Mapped[list[str]] = mapped_column(JSON)
    # How hard a reasoning model thinks (REASONING_EFFORTS); None: ASSISTANT_REASONING_EFFORT.
    reasoning_effort: Mapped[str | None] = mapped_column(String(16))
    # Where it was created (None for profiles copied from the API).
    team_id: Mapped[str | None] = mapped_column(String(32), index=True)
    channel_id: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str | None] = mapped_column(String(32))


class AssistantChange(Base):
    """Who changed which channel's assistant profile, when, from what to what."""

    __tablename__ = "assistant_changes"
    __table_args__ = (Index("ix_assistant_changes_team_channel", "team_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))  # use, create, edit, reset
    from_profile_id: Mapped[str | None] = mapped_column(String(128))
    to_profile_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ChatMessage(Base):
    """One message of a conversation whose history the bot keeps itself (the `chat` backend), oldest first by id."""

    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("history_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    # One history of the conversation (it starts a new one after `/assistant new` or a change of backend),
    # so that forgetting a retired history leaves the current one alone.
    history_id: Mapped[str] = mapped_column(String(96))
    # Unique in the history, so that a resumed batch adds nothing twice: the Slack event id of a user
    # message, "<batch key>:answer" for an answer, "<batch key>:tool:<call id>" for a tool output...
    key: Mapped[str] = mapped_column(String(160))
    role: Mapped[str] = mapped_column(String(16))
    # The chat-completions message without its role: {"content": ...} and, for tool use, tool_calls / tool_call_id.
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    # An offline estimate, for trimming the history to the token budget without an API call.
    tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DocumentChunk(Base):
    """A passage of a large shared document and its embedding, for retrieval in a `chat` conversation."""

    __tablename__ = "document_chunks"
    __table_args__ = (UniqueConstraint("history_id", "file_key", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    history_id: Mapped[str] = mapped_column(String(96))
    file_key: Mapped[str] = mapped_column(String(64))  # the chat platform's file id
    file_name: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[list[float]] = mapped_column(JSON)


class Feedback(Timestamped, Base):
    """One person's rating of one answer (a later click replaces it), with an optional comment."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("turn_id", "user_id"),
        Index("ix_feedback_team_channel_updated", "team_id", "channel_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(8))  # "good" or "bad"
    comment: Mapped[str | None] = mapped_column(Text)


class ChannelSettingChange(Base):
    """Who changed one of a channel's settings (its reply mode, its feedback buttons), when, from what to what."""

    __tablename__ = "channel_setting_changes"
    __table_args__ = (Index("ix_channel_setting_changes_team_channel", "team_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    setting: Mapped[str] = mapped_column(String(32))  # "reply_mode" or "feedback"
    from_value: Mapped[str] = mapped_column(String(32))
    to_value: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# OAuth mode: the tables slack_sdk's SQLAlchemy installation and state stores read and write, as slack_sdk
# 3.48 defines them (naive UTC timestamps, its own index names); tests/test_oauth_e2e.py checks that they
# still match slack_sdk's, since the stores build their own copies by these names.
SLACK_INSTALLATIONS = Table(
    "slack_installations",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(32), nullable=False),
    Column("app_id", String(32), nullable=False),
    Column("enterprise_id", String(32)),
    Column("enterprise_name", String(200)),
    Column("enterprise_url", String(200)),
    Column("team_id", String(32)),
    Column("team_name", String(200)),
    Column("bot_token", String(200)),
    Column("bot_id", String(32)),
    Column("bot_user_id", String(32)),
    Column("bot_scopes", String(1000)),
    Column("bot_refresh_token", String(200)),
    Column("bot_token_expires_at", DateTime),
    Column("user_id", String(32), nullable=False),
    Column("user_token", String(200)),
    Column("user_scopes", String(1000)),
    Column("user_refresh_token", String(200)),
    Column("user_token_expires_at", DateTime),
    Column("incoming_webhook_url", String(200)),
    Column("incoming_webhook_channel", String(200)),
    Column("incoming_webhook_channel_id", String(200)),
    Column("incoming_webhook_configuration_url", String(200)),
    Column("is_enterprise_install", Boolean, default=False, nullable=False),
    Column("token_type", String(32)),
    Column("installed_at", DateTime, nullable=False, default=func.now()),
    Index("slack_installations_idx", "client_id", "enterprise_id", "team_id", "user_id", "installed_at"),
)
SLACK_BOTS = Table(
    "slack_bots",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(32), nullable=False),
    Column("app_id", String(32), nullable=False),
    Column("enterprise_id", String(32)),
    Column("enterprise_name", String(200)),
    Column("team_id", String(32)),
    Column("team_name", String(200)),
    Column("bot_token", String(200)),
    Column("bot_id", String(32)),
    Column("bot_user_id", String(32)),
    Column("bot_scopes", String(1000)),
    Column("bot_refresh_token", String(200)),
    Column("bot_token_expires_at", DateTime),
    Column("is_enterprise_install", Boolean, default=False, nullable=False),
    Column("installed_at", DateTime, nullable=False, default=func.now()),
    Index("slack_bots_idx", "client_id", "enterprise_id", "team_id", "installed_at"),
)
SLACK_OAUTH_STATES = Table(
    "slack_oauth_states",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(200), nullable=False),
    Column("expire_at", DateTime, nullable=False),
)


class McpServerRecord(Timestamped, Base):
    """A remote MCP server an admin registered for a workspace; its header secret is stored encrypted."""

    __tablename__ = "mcp_servers"
    __table_args__ = (UniqueConstraint("team_id", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    allowed_tools: Mapped[list[str]] = mapped_column(JSON)
    approval: Mapped[str] = mapped_column(String(16))  # "always", "never" or "per_tool"
    approval_tools: Mapped[list[str]] = mapped_column(JSON)
    secret_header: Mapped[str | None] = mapped_column(String(128))
    secret_ciphertext: Mapped[str | None] = mapped_column(Text)  # Fernet token of the header's value
    created_by: Mapped[str] = mapped_column(String(32))


class McpApproval(Base):
    """The model asked to run an MCP tool: who was asked, where, and who decided what, when."""

    __tablename__ = "mcp_approvals"
    __table_args__ = (Index("ix_mcp_approvals_decision_expires", "decision", "expires_at"),)

    approval_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    asker_id: Mapped[str] = mapped_column(String(32))
    server_label: Mapped[str] = mapped_column(String(64))
    tool_name: Mapped[str] = mapped_column(String(128))
    arguments: Mapped[str] = mapped_column(Text)
    prompt_ts: Mapped[str | None] = mapped_column(String(32))  # the message with the buttons
    decision: Mapped[str] = mapped_column(String(16))  # pending, approved, denied, timed_out
    decided_by: Mapped[str | None] = mapped_column(String(32))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class McpToolCall(Base):
    """One MCP tool call the model made: which server and tool, for whom, and how it ended."""

    __tablename__ = "mcp_tool_calls"
    __table_args__ = (Index("ix_mcp_tool_calls_team_called", "team_id", "called_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    server_label: Mapped[str] = mapped_column(String(64))
    tool_name: Mapped[str] = mapped_column(String(128))
    asked_by: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))  # "completed", "failed", or "unreachable" (listing failed)
    called_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The response item that tells of it (mcp_call, or a failed mcp_list_tools): a response followed again
    # after a crash records nothing twice. None on calls recorded before revision 0012.
    item_id: Mapped[str | None] = mapped_column(String(128), unique=True)


class WorkspacePurge(Base):
    """A workspace that uninstalled the app with DATA_ON_UNINSTALL=purge: what it left before `requested_at`
    is to be deleted, durably (a restarted bot resumes it), by one process at a time (the claim)."""

    __tablename__ = "workspace_purges"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The latest uninstall: what the workspace wrote after it (once installed again) stays.
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The process working it; the claim is free once it expires or that process's heartbeat is stale.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claim_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

"""A workspace's state in memory: channels, messages, files and views, and the lookups every area shares."""

from __future__ import annotations

import copy
import functools
import secrets
import string
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .methods import SlackError

BOT_NAME = "assistant"
MANIFEST = Path(__file__).resolve().parents[3] / "manifest.yml"


@functools.cache
def manifest_bot_scopes() -> tuple[str, ...]:
    return tuple(yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"])


_clock_lock = threading.Lock()
_last_ts_micros = 0


def next_ts() -> str:
    """A new message timestamp: wall-clock microseconds like real Slack's, strictly increasing in the process."""
    global _last_ts_micros
    with _clock_lock:
        micros = max(time.time_ns() // 1000, _last_ts_micros + 1)
        _last_ts_micros = micros
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    """Slack timestamps compare as (seconds, microseconds); floats lose the last digits."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds or 0), int((fraction or "0").ljust(6, "0")[:6])


def random_id(prefix: str, length: int = 10) -> str:
    return prefix + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


@dataclass
class Channel:
    id: str
    name: str | None
    is_private: bool
    is_im: bool
    is_mpim: bool
    user: str | None
    members: set[str]
    created: int
    topic: str = ""

    @property
    def channel_type(self) -> str:
        """The channel_type Slack puts on message events."""
        if self.is_im:
            return "im"
        if self.is_mpim:
            return "mpim"
        return "group" if self.is_private else "channel"


@dataclass
class StoredMessage:
    channel: str
    fields: dict[str, Any]
    texts: list[str]
    deleted: bool = False
    streaming: bool = False
    streamed_at: float = 0.0  # time.monotonic() of the last call that streamed into it
    chunks: list[dict[str, Any]] = field(default_factory=list)  # every chunk streamed into it, in order

    @property
    def ts(self) -> str:
        return self.fields["ts"]

    @property
    def author(self) -> str:
        return self.fields.get("user", "")

    @property
    def thread_root(self) -> str:
        return self.fields.get("thread_ts", self.ts)

    @property
    def is_reply(self) -> bool:
        return self.thread_root != self.ts

    @property
    def is_top_level(self) -> bool:
        return not self.is_reply or self.fields.get("subtype") == "thread_broadcast"


@dataclass
class StoredFile:
    info: dict[str, Any]
    content: bytes | None
    deleted: bool = False  # files.delete: gone from files.info, a tombstone in the messages that shared it


@dataclass
class Workspace:
    """One team with the app installed: its bot identity and everything in it."""

    team_id: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    app_id: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    messages: dict[str, list[StoredMessage]] = field(default_factory=dict)
    ephemeral: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, StoredFile] = field(default_factory=dict)
    # Upload id -> id of the file whose bytes that upload URL accepts, once.
    pending_uploads: dict[str, str] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    home_views: dict[str, str] = field(default_factory=dict)
    statuses: dict[tuple[str, str], str] = field(default_factory=dict)
    # The bot token's scopes, which Slack names in every Web API answer's x-oauth-scopes header: by default
    # those manifest.yml asks for, as after installing the app from it.
    scopes: tuple[str, ...] = field(default_factory=manifest_bot_scopes)
    # The error chat.startStream answers, as Slack does where the plan or the app may not stream; None streams.
    streaming_refusal: str | None = None
    # The error agents.sessions.setStatus answers, as for an app not declared an agent (the default); None accepts.
    agent_sessions_refusal: str | None = "feature_disabled"
    agent_sessions: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.team_id.lower()

    @property
    def name(self) -> str:
        return f"Team {self.team_id}"

    # -- channels ----------------------------------------------------------------------------

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        is_private: bool = False,
        is_im: bool = False,
        is_mpim: bool = False,
        user: str | None = None,
        members: Iterable[str] | None = None,
        topic: str = "",
    ) -> Channel:
        if is_im and user is None:
            raise ValueError("an IM needs the user it is with")
        default_members = {self.bot_user_id, *([user] if user else [])}
        self.channels[channel_id] = Channel(
            id=channel_id,
            name=name,
            is_private=is_private or is_im or is_mpim,
            is_im=is_im,
            is_mpim=is_mpim,
            user=user,
            members=set(members) if members is not None else default_members,
            created=int(time.time()),
            topic=topic,
        )
        self.messages.setdefault(channel_id, [])
        return self.channels[channel_id]

    def known_channel(self, channel_id: str) -> Channel:
        """The channel a test helper names; an unknown one is a mistake in the test, not a Slack error."""
        if channel_id not in self.channels:
            raise ValueError(f"unknown channel {channel_id} in {self.team_id}; add it with add_channel()")
        return self.channels[channel_id]

    def visible_channel(self, channel_id: str | None) -> Channel:
        """A conversation the bot may know about: private ones only when it is a member."""
        conversation = self.channels.get(channel_id or "")
        if conversation is None or (conversation.is_private and self.bot_user_id not in conversation.members):
            raise SlackError("channel_not_found")
        return conversation

    def joined_channel(self, channel_id: str | None) -> Channel:
        """A conversation the bot is in, as a Web API call names it (a user ID means the IM with them)."""
        if channel_id in self.users:
            return self.im_with(channel_id)
        conversation = self.visible_channel(channel_id)
        if self.bot_user_id not in conversation.members:
            raise SlackError("not_in_channel")
        return conversation

    def im_with(self, user: str) -> Channel:
        # Posting to a user ID posts into the app's IM with them, opening it if needed.
        for conversation in self.channels.values():
            if conversation.is_im and conversation.user == user:
                return conversation
        return self.add_channel(random_id("D"), is_im=True, user=user)

    # -- messages ----------------------------------------------------------------------------

    def find(self, channel: str, ts: str, *, include_deleted: bool = False) -> StoredMessage | None:
        for message in self.messages.get(channel, []):
            if message.ts == ts and (include_deleted or not message.deleted):
                return message
        return None

    def stored(self, channel: str, ts: str) -> StoredMessage:
        """The message a Web API call names, or Slack's message_not_found."""
        message = self.find(channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        return message

    def existing(self, channel: str, ts: str) -> StoredMessage:
        """The message a test helper names; a wrong ts is a mistake in the test, not a Slack error."""
        message = self.find(channel, ts, include_deleted=True)
        if message is None:
            raise ValueError(f"no message {ts} in {channel} of {self.team_id}")
        return message

    def visible(self, channel: str, thread_ts: str | None) -> list[StoredMessage]:
        """Live top-level messages, or a thread's parent and replies, oldest first."""
        live = [m for m in self.messages.get(channel, []) if not m.deleted]
        if thread_ts is None:
            return [m for m in live if m.is_top_level]
        return [m for m in live if m.thread_root == thread_ts]

    def store(self, channel: str, fields: dict[str, Any]) -> StoredMessage:
        message = StoredMessage(channel, fields, texts=[fields.get("text", "")])
        self.messages.setdefault(channel, []).append(message)
        return message

    def message_view(self, message: StoredMessage) -> dict[str, Any]:
        """The message as Slack returns it: stored fields plus a live thread summary on thread roots."""
        view = copy.deepcopy(message.fields)
        if message.is_reply:
            return view
        replies = [m for m in self.visible(message.channel, message.ts) if m.is_reply]
        if replies:
            reply_users = list(dict.fromkeys(r.author for r in replies))
            view |= {
                "thread_ts": message.ts,
                "reply_count": len(replies),
                "reply_users": reply_users,
                "reply_users_count": len(reply_users),
                "latest_reply": replies[-1].ts,
                "is_locked": False,
                "subscribed": False,
            }
        return view

    def thread_root_ts(self, channel: str, thread_ts: str | None) -> str | None:
        # Replying to a reply lands in the same thread, as in Slack.
        if not thread_ts:
            return None
        message = self.find(channel, thread_ts)
        return message.thread_root if message is not None else thread_ts

    def post_as_bot(self, channel: str, content: Mapping[str, Any], thread_ts: str | None) -> StoredMessage:
        """The app posts content (text, blocks, files...) into channel, in the thread of thread_ts if given."""
        root_ts = self.thread_root_ts(channel, thread_ts)
        fields: dict[str, Any] = {
            "type": "message",
            "text": "",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "deleted": False,
                "name": BOT_NAME,
                "updated": int(time.time()),
                "app_id": self.app_id,
                "icons": {f"image_{size}": f"https://a.slack-edge.com/bot_{size}.png" for size in (36, 48, 72)},
                "team_id": self.team_id,
            },
            "ts": next_ts(),
            **content,
        }
        if root_ts:
            parent = self.find(channel, root_ts, include_deleted=True)
            fields |= {"thread_ts": root_ts, "parent_user_id": parent.author if parent else self.bot_user_id}
            # Slack clears an assistant thread's status once the app replies in it.
            self.statuses.pop((channel, root_ts), None)
        return self.store(channel, fields)

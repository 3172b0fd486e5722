"""The read_thread and read_channel tools: the assistant reads the chat it is in, under the asker's rights.

The bot reads with its own token, which sees more than the person asking may: every read is admitted only
when the asker could read the same place themselves (a member of it), the bot is in it, and it is in the
asker's workspace. Direct messages are never read except the asker's own with the bot that the question
came from. What is read is moderated like any message a person sends, and cut to a token budget.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.conversations.moderation import Moderator
from bot.conversations.tools import Tool, ToolContext
from bot.conversations.turn import Surface
from bot.errors import BotError, PlatformUnavailable

log = logging.getLogger(__name__)

# A token is about four characters of English; the budget is counted this way, offline and on the safe side
# for the JSON around each message (its field names and time), which is counted too.
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_CHARS = 60
DEFAULT_MESSAGES = 50
MAX_MESSAGES = 200
DEFAULT_HOURS = 24.0
MAX_HOURS = 90 * 24.0
TRUNCATED = " […]"

MODERATION_UNAVAILABLE = (
    "Content moderation could not check these messages just now, so they were not read. Try again in a moment."
)
SLACK_UNAVAILABLE = "The chat platform did not answer just now, so nothing was read. Try again in a moment."


class ReadRefused(BotError):
    """A read the rules do not allow, or that cannot be done; the message is for the person, via the model."""


class PlaceKind(str, enum.Enum):
    CHANNEL = "channel"  # public
    PRIVATE_CHANNEL = "private_channel"
    GROUP_DM = "group_dm"
    DM = "dm"


@dataclass(frozen=True)
class ChatPlace:
    """A conversation of the asker's workspace, as far as the rules need to know it."""

    channel_id: str
    name: str  # how a person names it: "#launch"; empty for direct messages
    kind: PlaceKind
    bot_is_member: bool
    dm_user_id: str | None = None  # the person a direct message is with (besides the bot)


@dataclass(frozen=True)
class LinkedThread:
    """The thread a link points into."""

    channel_id: str
    thread_ts: str  # the thread's first message


@dataclass(frozen=True)
class ReadMessage:
    """A message as a person reads it: who wrote it (a display name), when, and plain text with names."""

    ts: str
    at: datetime
    author: str
    text: str
    reply_count: int = 0


class ChatReader(Protocol):
    """What the tools need from the chat platform; the platform knows its API, the rules stay here.

    Every method reads in the workspace ``team_id`` only, and raises ReadRefused for what cannot be read
    there (unknown, another workspace's, hidden from the bot) and PlatformUnavailable when the platform
    fails for now.
    """

    async def linked_thread(self, link: str, *, team_id: str) -> LinkedThread:
        """The thread a message link points into; ReadRefused for another workspace's link or no link at all."""
        ...

    async def place(self, reference: str, *, team_id: str) -> ChatPlace:
        """A conversation by id or by name ("#launch", "launch")."""
        ...

    async def is_member(self, channel_id: str, user_id: str, *, team_id: str) -> bool: ...

    async def thread(
        self, channel_id: str, thread_ts: str, *, team_id: str, latest: str | None, limit: int
    ) -> list[ReadMessage]:
        """The thread's newest ``limit`` messages (up to ``latest``, inclusive), oldest first."""
        ...

    async def recent(
        self, channel_id: str, *, team_id: str, since: datetime, latest: str | None, limit: int
    ) -> list[ReadMessage]:
        """The newest ``limit`` top-level messages since ``since`` (up to ``latest``, inclusive), oldest first."""
        ...


@dataclass(frozen=True)
class ReadingTools:
    """read_thread and read_channel, for the tool registry."""

    reader: ChatReader
    moderator: Moderator
    max_tokens: int

    def tools(self) -> list[Tool]:
        return [
            Tool(
                name="read_thread",
                description=(
                    "Read the messages of a Slack thread, oldest first, with who wrote each. Without arguments: "
                    "the thread this conversation is in. Or a thread someone linked (permalink), or one that "
                    "read_channel listed (channel and thread_ts). Long threads are cut to their newest messages. "
                    "Only threads the person asking may read themselves."
                ),
                parameters={
                    "type": "object",
                    "properties": {
                        "permalink": {"type": "string", "description": "A link to a message of the thread."},
                        "channel": {"type": "string", "description": "With thread_ts: the thread's channel id."},
                        "thread_ts": {"type": "string", "description": "With channel: the thread's first message."},
                        "limit": {
                            "type": "integer",
                            "description": f"Most messages to read (default {MAX_MESSAGES}, at most {MAX_MESSAGES}).",
                        },
                    },
                    "required": [],
                },
                handler=self.read_thread,
            ),
            Tool(
                name="read_channel",
                description=(
                    "Read the recent top-level messages of a Slack channel, oldest first, with who wrote each; "
                    "messages with replies carry thread_ts and reply_count (read those with read_thread). "
                    "Without a channel: the channel the person is viewing beside the assistant, else this one. "
                    "Only channels the person asking is a member of."
                ),
                parameters={
                    "type": "object",
                    "properties": {
                        "channel": {"type": "string", "description": "A channel name (#launch) or id (C0123)."},
                        "since_hours": {
                            "type": "number",
                            "description": f"How far back to read, in hours (default {DEFAULT_HOURS:g}; 168 is "
                            f"a week; at most {MAX_HOURS:g}).",
                        },
                        "limit": {
                            "type": "integer",
                            "description": f"Most messages to read (default {DEFAULT_MESSAGES}, at most "
                            f"{MAX_MESSAGES}); the newest are kept.",
                        },
                    },
                    "required": [],
                },
                handler=self.read_channel,
            ),
        ]

    async def read_thread(self, context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self._answered("read_thread", context, self._read_thread(context, arguments))

    async def read_channel(self, context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self._answered("read_channel", context, self._read_channel(context, arguments))

    async def _answered(
        self, tool: str, context: ToolContext, reading: Coroutine[Any, Any, dict[str, Any]]
    ) -> dict[str, Any]:
        """What was read, or why not: a refusal, bad arguments or a platform failing are all outputs."""
        try:
            return await reading
        except ValueError as exc:
            return {"error": f"invalid arguments: {exc}"}
        except ReadRefused as refusal:
            turn = context.turn
            log.info("%s refused for %s in %s/%s: %s", tool, turn.user_id, turn.team_id, turn.channel_id, refusal)
            return {"refused": str(refusal)}
        except PlatformUnavailable as exc:
            log.warning("%s: the chat platform failed: %s", tool, exc)
            return {"error": SLACK_UNAVAILABLE}

    async def _read_thread(self, context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        turn = context.turn
        limit = _whole_number(arguments, "limit", default=MAX_MESSAGES, most=MAX_MESSAGES)
        permalink, channel, thread_ts = (_text(arguments, name) for name in ("permalink", "channel", "thread_ts"))
        if permalink:
            linked = await self.reader.linked_thread(permalink, team_id=turn.team_id)
            channel, thread_ts = linked.channel_id, linked.thread_ts
        elif channel or thread_ts:
            if not (channel and thread_ts):
                raise ValueError("give both channel and thread_ts, or a permalink")
        elif turn.reply_thread_ts is None:
            raise ReadRefused("this conversation is not a thread; read_channel reads its recent messages")
        else:
            channel, thread_ts = turn.channel_id, turn.reply_thread_ts
        place = await self._admitted(context, channel)
        # The thread being answered is read up to the question: what comes after it is the answer being written.
        answering = (place.channel_id, thread_ts) == (turn.channel_id, turn.reply_thread_ts)
        latest = turn.message_ts if answering else None
        messages = await self.reader.thread(
            place.channel_id, thread_ts, team_id=turn.team_id, latest=latest, limit=limit
        )
        return await self._output(context, "read_thread", place, messages, thread_ts=thread_ts)

    async def _read_channel(self, context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        turn = context.turn
        limit = _whole_number(arguments, "limit", default=DEFAULT_MESSAGES, most=MAX_MESSAGES)
        hours = _hours(arguments)
        reference = _text(arguments, "channel") or context.viewed_channel_id or turn.channel_id
        place = await self._admitted(context, reference)
        # In the conversation's own channel, messages after the question are not part of what was asked about.
        latest = turn.message_ts if place.channel_id == turn.channel_id else None
        since = datetime.now(UTC) - timedelta(hours=hours)
        messages = await self.reader.recent(
            place.channel_id, team_id=turn.team_id, since=since, latest=latest, limit=limit
        )
        return await self._output(context, "read_channel", place, messages, since_hours=hours)

    async def _admitted(self, context: ToolContext, reference: str) -> ChatPlace:
        """The place, if the asker may have it read to them; ReadRefused, saying why, if not."""
        turn = context.turn
        place = await self.reader.place(reference, team_id=turn.team_id)
        called = place.name or "that conversation"
        if place.kind is PlaceKind.DM:
            in_this_dm = place.channel_id == turn.channel_id and turn.surface is not Surface.CHANNEL
            if not (in_this_dm and place.dm_user_id == turn.user_id):
                raise ReadRefused("I only read the direct messages of the conversation we are in now, not others")
            return place
        if place.kind is PlaceKind.PRIVATE_CHANNEL or place.kind is PlaceKind.GROUP_DM:
            called = "that conversation"  # a private name is not told to someone who may not be in it
        if not place.bot_is_member:
            raise ReadRefused(f"I'm not a member of {called}; someone in it can add me")
        if not await self.reader.is_member(place.channel_id, turn.user_id, team_id=turn.team_id):
            raise ReadRefused(f"you are not a member of {called}, so I won't read it for you")
        return place

    async def _output(
        self, context: ToolContext, tool: str, place: ChatPlace, messages: Sequence[ReadMessage], **about: Any
    ) -> dict[str, Any]:
        kept, older = _within_budget(messages, max_chars=self.max_tokens * CHARS_PER_TOKEN)
        kept, moderated = await self._screened(context, tool, kept)
        zone = _zone(context.turn.user_timezone)
        output: dict[str, Any] = {"channel": place.name or "direct messages", **about}
        output["messages"] = [_shown(message, zone) for message in kept]
        if older:
            output["older_messages_left_out"] = older
            output["note"] = f"Only the newest messages fit the budget of about {self.max_tokens} tokens."
        if moderated:
            output["left_out_by_moderation"] = moderated
        return output

    async def _screened(
        self, context: ToolContext, tool: str, messages: list[ReadMessage]
    ) -> tuple[list[ReadMessage], int]:
        """The messages that pass moderation, and how many did not; each flag is logged like an input's."""
        policy = self.moderator.policy
        said = [message for message in messages if message.text.strip()]
        if not said or not policy.checks_input:
            return messages, 0
        verdicts = await self.moderator.check_each([message.text for message in said])
        if any(verdict.unavailable for verdict in verdicts) and policy.block_on_error:
            raise ReadRefused(MODERATION_UNAVAILABLE)
        refused = set()
        for message, verdict in zip(said, verdicts, strict=True):
            if verdict.flagged:
                refused.add(message.ts)
                await self.moderator.record(
                    verdict, turn=context.turn, direction="input", source=tool, text=message.text
                )
        if refused:
            log.info("%s: left %d of %d messages out (moderation)", tool, len(refused), len(messages))
        return [message for message in messages if message.ts not in refused], len(refused)


def _within_budget(messages: Sequence[ReadMessage], *, max_chars: int) -> tuple[list[ReadMessage], int]:
    """The newest messages that fit the budget (the newest one cut to fit, if it alone is too long), oldest first."""
    kept: list[ReadMessage] = []
    left = max_chars
    for message in reversed(messages):
        size = MESSAGE_OVERHEAD_CHARS + len(message.author) + len(message.text)
        if size > left:
            room = left - MESSAGE_OVERHEAD_CHARS - len(message.author) - len(TRUNCATED)
            if not kept and room > 0:
                kept.append(_cut(message, room))
            break
        kept.append(message)
        left -= size
    return kept[::-1], len(messages) - len(kept)


def _cut(message: ReadMessage, chars: int) -> ReadMessage:
    return ReadMessage(message.ts, message.at, message.author, message.text[:chars] + TRUNCATED, message.reply_count)


def _shown(message: ReadMessage, zone: ZoneInfo) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "author": message.author,
        "time": message.at.astimezone(zone).isoformat(timespec="minutes"),
        "text": message.text,
    }
    if message.reply_count:
        shown |= {"thread_ts": message.ts, "reply_count": message.reply_count}
    return shown


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _text(arguments: dict[str, Any], name: str) -> str:
    value = arguments.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value.strip()


def _whole_number(arguments: dict[str, Any], name: str, *, default: int, most: int) -> int:
    value = arguments.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1")
    return min(int(value), most)


def _hours(arguments: dict[str, Any]) -> float:
    value = arguments.get("since_hours")
    if value is None:
        return DEFAULT_HOURS
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("since_hours must be a number of hours above 0")
    return min(float(value), MAX_HOURS)

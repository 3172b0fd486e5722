"""The read tools' own rules, on a reader that holds a few conversations: arguments, access, budget, moderation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.conversations.moderation import ModerationPolicy, Moderator
from bot.conversations.reading import (
    CHARS_PER_TOKEN,
    MAX_MESSAGES,
    MESSAGE_OVERHEAD_CHARS,
    MODERATION_UNAVAILABLE,
    ChatPlace,
    LinkedThread,
    PlaceKind,
    ReadingTools,
    ReadMessage,
    ReadRefused,
)
from bot.conversations.tools import ToolContext
from bot.conversations.turn import Surface, Turn
from bot.errors import APIConnectionError
from bot.openai_api.models import ModerationResponse

NOW = datetime.now(UTC)


def message(ts: str, author: str, text: str) -> ReadMessage:
    return ReadMessage(ts=ts, at=NOW - timedelta(minutes=10) + timedelta(seconds=float(ts)), author=author, text=text)


@dataclass
class Reader:
    """A workspace of a few conversations; it records what was read."""

    places: dict[str, ChatPlace] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    messages: dict[str, list[ReadMessage]] = field(default_factory=dict)
    reads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def linked_thread(self, link: str, *, team_id: str) -> LinkedThread:
        channel, _, ts = link.rpartition("/")
        return LinkedThread(channel.rpartition("/")[2], ts)

    async def place(self, reference: str, *, team_id: str) -> ChatPlace:
        for place in self.places.values():
            if reference in (place.channel_id, place.name):
                return place
        raise ReadRefused("no such channel")

    async def is_member(self, channel_id: str, user_id: str, *, team_id: str) -> bool:
        return user_id in self.members.get(channel_id, set())

    async def thread(
        self, channel_id: str, thread_ts: str, *, team_id: str, latest: str | None, limit: int
    ) -> list[ReadMessage]:
        self.reads.append((channel_id, {"thread_ts": thread_ts, "latest": latest, "limit": limit}))
        return [m for m in self.messages[channel_id] if latest is None or float(m.ts) <= float(latest)][-limit:]

    async def recent(
        self, channel_id: str, *, team_id: str, since: datetime, latest: str | None, limit: int
    ) -> list[ReadMessage]:
        self.reads.append((channel_id, {"since": since, "latest": latest, "limit": limit}))
        return [m for m in self.messages[channel_id] if m.at >= since][-limit:]


class Moderations:
    """The Moderations endpoint: flags texts holding a word, or fails."""

    def __init__(self, *, flag: str = "", fail: bool = False) -> None:
        self.flag, self.fail = flag, fail

    async def create_moderation(self, input: Any, *, model: str) -> ModerationResponse:
        if self.fail:
            raise APIConnectionError("moderation unreachable")
        results = [
            {"flagged": bool(self.flag) and self.flag in text, "categories": {"violence": self.flag in text}}
            | {"category_scores": {"violence": 0.9 if self.flag and self.flag in text else 0.0}}
            for text in input
        ]
        return ModerationResponse.model_validate({"id": "modr-1", "model": model, "results": results})


class Flags:
    def __init__(self) -> None:
        self.recorded: list[Any] = []

    async def record(self, flag: Any) -> None:
        self.recorded.append(flag)


def turn(*, channel: str = "C1", surface: Surface = Surface.CHANNEL, thread: str | None = "100.0") -> Turn:
    return Turn(
        event_id="Ev1",
        team_id="T1",
        channel_id=channel,
        thread_key=thread or "dm",
        surface=surface,
        user_id="U1",
        user_name="Ada",
        text="summarise",
        message_ts="103.0",
        reply_thread_ts=thread,
        user_timezone="Asia/Tokyo",
    )


def workspace() -> Reader:
    reader = Reader()
    reader.places = {
        "C1": ChatPlace("C1", "#general", PlaceKind.CHANNEL, bot_is_member=True),
        "C2": ChatPlace("C2", "#launch", PlaceKind.CHANNEL, bot_is_member=True),
        "C3": ChatPlace("C3", "#outside", PlaceKind.CHANNEL, bot_is_member=False),
        "G1": ChatPlace("G1", "#hidden-plans", PlaceKind.PRIVATE_CHANNEL, bot_is_member=True),
        "D1": ChatPlace("D1", "", PlaceKind.DM, bot_is_member=True, dm_user_id="U1"),
        "D2": ChatPlace("D2", "", PlaceKind.DM, bot_is_member=True, dm_user_id="U2"),
    }
    reader.members = {"C1": {"U1", "U2"}, "C2": {"U1"}, "C3": {"U1"}, "G1": {"U2"}}
    reader.messages = {
        "C1": [
            message("100.0", "Ada", "ship Friday?"),
            message("101.0", "Bob", "Monday"),
            message("104.0", "Bot", "…"),
        ],
        "C2": [message(f"{n}.0", "Bob", f"launch note {n}") for n in range(10)],
        "D1": [message("100.0", "Ada", "hello")],
    }
    return reader


def tools(reader: Reader, *, moderation: Moderations | None = None, max_tokens: int = 4000) -> ReadingTools:
    policy = ModerationPolicy(mode="both" if moderation else "off")
    return ReadingTools(
        reader=reader,
        moderator=Moderator(moderation or Moderations(), policy, Flags()),  # type: ignore[arg-type]
        max_tokens=max_tokens,
    )


async def test_the_current_thread_is_read_up_to_the_question() -> None:
    reader = workspace()
    output = await tools(reader).read_thread(ToolContext(turn()), {})
    assert [m["text"] for m in output["messages"]] == ["ship Friday?", "Monday"]
    assert reader.reads == [("C1", {"thread_ts": "100.0", "latest": "103.0", "limit": MAX_MESSAGES})]
    assert output["messages"][0]["time"].endswith("+09:00")  # in the asker's timezone


async def test_a_top_level_dm_has_no_thread_to_read() -> None:
    output = await tools(workspace()).read_thread(ToolContext(turn(channel="D1", surface=Surface.DM, thread=None)), {})
    assert "not a thread" in output["refused"]


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"limit": 0}, "limit must be a whole number"),
        ({"limit": 2.5}, "limit must be a whole number"),
        ({"limit": True}, "limit must be a whole number"),
        ({"since_hours": -1}, "since_hours must be a number"),
        ({"channel": 5}, "channel must be a string"),
    ],
)
async def test_bad_arguments_are_explained(arguments: dict[str, Any], error: str) -> None:
    output = await tools(workspace()).read_channel(ToolContext(turn()), arguments)
    assert error in output["error"]


async def test_a_thread_needs_both_channel_and_ts() -> None:
    output = await tools(workspace()).read_thread(ToolContext(turn()), {"channel": "C2"})
    assert "both channel and thread_ts" in output["error"]


async def test_channel_reads_are_capped_and_the_viewed_channel_is_the_default() -> None:
    reader = workspace()
    context = ToolContext(turn(channel="D1", surface=Surface.ASSISTANT, thread="99.0"), viewed_channel_id="C2")
    output = await tools(reader).read_channel(context, {"limit": 3, "since_hours": 1e9})
    assert output["channel"] == "#launch"
    assert [m["text"] for m in output["messages"]] == ["launch note 7", "launch note 8", "launch note 9"]
    channel, read = reader.reads[0]
    assert channel == "C2" and read["limit"] == 3 and read["latest"] is None  # another channel: no cut at the question
    assert NOW - read["since"] < timedelta(days=91)  # the window is bounded


@pytest.mark.parametrize(
    ("reference", "refusal"),
    [
        ("#outside", "I'm not a member of #outside"),
        ("G1", "you are not a member of that conversation"),  # a private channel's name is not told
        ("D2", "only read the direct messages of the conversation we are in"),
        ("D1", "only read the direct messages of the conversation we are in"),  # the asker's, asked from a channel
    ],
)
async def test_places_outside_the_askers_rights_are_refused_unread(reference: str, refusal: str) -> None:
    reader = workspace()
    output = await tools(reader).read_channel(ToolContext(turn()), {"channel": reference})
    assert refusal in output["refused"] and "hidden-plans" not in output["refused"]
    assert reader.reads == []


async def test_the_askers_own_dm_is_read_from_that_dm() -> None:
    context = ToolContext(turn(channel="D1", surface=Surface.DM, thread=None))
    output = await tools(workspace()).read_channel(context, {})
    assert output["channel"] == "direct messages" and [m["text"] for m in output["messages"]] == ["hello"]


async def test_the_budget_keeps_the_newest_messages_and_says_how_many_were_left_out() -> None:
    each = MESSAGE_OVERHEAD_CHARS + len("Bob") + len("launch note 0")
    max_tokens = 3 * each // CHARS_PER_TOKEN + 1
    output = await tools(workspace(), max_tokens=max_tokens).read_channel(
        ToolContext(turn()), {"channel": "#launch", "since_hours": 1e9}
    )
    assert [m["text"] for m in output["messages"]] == ["launch note 7", "launch note 8", "launch note 9"]
    assert output["older_messages_left_out"] == 7


async def test_a_newest_message_longer_than_the_budget_is_cut_to_fit() -> None:
    reader = workspace()
    reader.messages["C2"] = [message("1.0", "Bob", "x" * 10_000)]
    output = await tools(reader, max_tokens=100).read_channel(ToolContext(turn()), {"channel": "C2"})
    [shown] = output["messages"]
    assert shown["text"].endswith("[…]") and len(shown["text"]) < 100 * CHARS_PER_TOKEN


async def test_flagged_messages_are_left_out_and_recorded() -> None:
    reader = workspace()
    reader.messages["C2"] = [message("1.0", "Bob", "I will hurt you"), message("2.0", "Ada", "ship it")]
    reading = tools(reader, moderation=Moderations(flag="hurt"))
    output = await reading.read_channel(ToolContext(turn()), {"channel": "C2"})
    assert [m["text"] for m in output["messages"]] == ["ship it"] and output["left_out_by_moderation"] == 1
    [flag] = reading.moderator._log.recorded  # type: ignore[attr-defined]
    assert (flag.source, flag.direction, flag.categories) == ("read_channel", "input", ("violence",))


async def test_messages_moderation_cannot_check_are_not_passed_on() -> None:
    output = await tools(workspace(), moderation=Moderations(fail=True)).read_channel(
        ToolContext(turn()), {"channel": "C2"}
    )
    assert output == {"refused": MODERATION_UNAVAILABLE}

"""The tool registry: every call yields an output, and the built-in clock knows the user's zone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot.conversations.tools import CURRENT_TIME_TOOL, Tool, ToolContext, ToolRegistry, builtin_tools, current_time
from bot.conversations.turn import Surface, Turn


def make_turn(timezone: str | None = "Asia/Tokyo") -> Turn:
    return Turn(
        event_id="Ev1",
        team_id="T1",
        channel_id="C1",
        thread_key="1.0",
        surface=Surface.CHANNEL,
        user_id="U1",
        user_name="Ada",
        text="what time is it?",
        message_ts="1.0",
        reply_thread_ts="1.0",
        user_timezone=timezone,
    )


def test_current_time_uses_the_askers_slack_timezone() -> None:
    fixed = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    result = current_time(ToolContext(make_turn()), {}, now=lambda: fixed)
    assert result["timezone"] == "Asia/Tokyo"
    assert result["iso"] == "2026-11-26T08:30:00+09:00"
    assert result["date"] == "Thursday 26 November 2026"


def test_current_time_accepts_an_explicit_zone_and_falls_back_to_utc() -> None:
    fixed = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert current_time(ToolContext(make_turn()), {"timezone": "Europe/Paris"}, now=lambda: fixed)["time"] == "14:00"
    assert current_time(ToolContext(make_turn(None)), {}, now=lambda: fixed)["timezone"] == "UTC"


async def test_registry_outputs_errors_instead_of_raising() -> None:
    def explode(_context: ToolContext, _arguments: dict) -> str:
        raise RuntimeError("boom")

    registry = ToolRegistry([Tool("explode", "fails", {"type": "object", "properties": {}}, explode)])
    context = ToolContext(make_turn())
    assert "unknown function 'nope'" in json.loads(await registry.call("nope", "{}", context))["error"]
    assert "RuntimeError: boom" in json.loads(await registry.call("explode", "{}", context))["error"]
    assert "invalid arguments" in json.loads(await registry.call("explode", "{not json", context))["error"]
    assert "invalid arguments" in json.loads(await registry.call("explode", "[1]", context))["error"]


async def test_builtin_registry_offers_the_clock_as_a_function_tool() -> None:
    registry = builtin_tools()
    assert registry.specs() == [CURRENT_TIME_TOOL.spec()]
    assert registry.specs()[0]["function"]["name"] == "get_current_time"
    output = json.loads(
        await registry.call("get_current_time", '{"timezone": "Mars/Olympus"}', ToolContext(make_turn()))
    )
    assert "unknown timezone 'Mars/Olympus'" in output["error"]
    with pytest.raises(ValueError):
        registry.register(CURRENT_TIME_TOOL)

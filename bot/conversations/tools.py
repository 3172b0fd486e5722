"""The registry of Python functions offered to the assistant as function tools."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.conversations.turn import Turn

log = logging.getLogger(__name__)

ToolHandler = Callable[["ToolContext", dict[str, Any]], Awaitable[Any] | Any]


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the message it serves."""

    turn: Turn
    # The channel the person is viewing beside the assistant pane, when the platform said (read_channel reads it).
    viewed_channel_id: str | None = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler

    def spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class ToolRegistry:
    """Named tools; calling one never raises: failures become an error output for the assistant."""

    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools or []:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[dict[str, Any]]:
        return [tool.spec() for tool in self._tools.values()]

    async def call(self, name: str, arguments: str, context: ToolContext) -> str:
        tool = self._tools.get(name)
        if tool is None:
            log.warning("assistant asked for unknown tool %r", name)
            return _error_output(f"unknown function {name!r}; available: {', '.join(self._tools) or 'none'}")
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
            if not isinstance(parsed, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            return _error_output(f"invalid arguments for {name}: {exc}")
        try:
            result = tool.handler(context, parsed)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # a tool's bug must not take the conversation down with it
            log.exception("tool %s failed", name)
            return _error_output(f"{name} failed: {type(exc).__name__}: {exc}")
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)


def _error_output(message: str) -> str:
    return json.dumps({"error": message})


def current_time(
    context: ToolContext, arguments: dict[str, Any], *, now: Callable[[], datetime] | None = None
) -> dict[str, str]:
    """The current date and time in the asker's Slack timezone, or a timezone the assistant names."""
    zone_name = arguments.get("timezone") or context.turn.user_timezone or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {zone_name!r}; use an IANA name such as Europe/Paris") from None
    moment = (now or (lambda: datetime.now(UTC)))().astimezone(zone)
    return {
        "timezone": zone_name,
        "iso": moment.isoformat(timespec="seconds"),
        "date": moment.strftime("%A %d %B %Y"),
        "time": moment.strftime("%H:%M"),
        "utc_offset": moment.strftime("%z"),
    }


CURRENT_TIME_TOOL = Tool(
    name="get_current_time",
    description=(
        "Get the current date and time. Without arguments it uses the timezone of the person who asked "
        "(from their Slack profile)."
    ),
    parameters={
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "Optional IANA timezone name, e.g. Asia/Tokyo."}},
        "required": [],
    },
    handler=current_time,
)


def builtin_tools() -> ToolRegistry:
    return ToolRegistry([CURRENT_TIME_TOOL])

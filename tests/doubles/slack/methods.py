"""The Web API method table: request arguments read as Slack reads them, required arguments, and registration."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import SlackDouble
    from .workspace import Workspace


class SlackError(Exception):
    """A Slack API error code, answered as {"ok": false, "error": code}."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


# Arguments Slack reads as JSON; form-encoded clients send them as JSON strings.
JSON_ARGUMENTS = frozenset(
    {"blocks", "attachments", "metadata", "prompts", "files", "view", "chunks", "loading_messages"}
)


class Params:
    """Request arguments merged from query string, form body and JSON body, read the way Slack reads them."""

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = dict(raw)

    def present(self, name: str, *, allow_empty: bool = False) -> bool:
        value = self.raw.get(name)
        return value is not None if allow_empty else value not in (None, "", [])

    def text(self, name: str) -> str | None:
        value = self.raw.get(name)
        return None if value is None else str(value)

    def flag(self, name: str) -> bool:
        value = self.raw.get(name)
        return value is True or str(value).lower() in ("1", "true")

    def integer(self, name: str, default: int) -> int:
        value = self.raw.get(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None

    def json(self, name: str, *, error: str = "invalid_arguments") -> Any:
        value = self.raw.get(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise SlackError(error) from None

    def decoded(self) -> dict[str, Any]:
        """All arguments with JSON strings decoded where they are valid JSON, for the call record."""
        decoded = dict(self.raw)
        for name in JSON_ARGUMENTS & decoded.keys():
            with contextlib.suppress(SlackError):
                decoded[name] = self.json(name)
        return decoded


@dataclass(frozen=True)
class Requirement:
    """At least one of names must be given, else Slack answers error."""

    names: tuple[str, ...]
    error: str
    allow_empty: bool = False


def need(*names: str, error: str = "invalid_arguments", allow_empty: bool = False) -> Requirement:
    return Requirement(names, error, allow_empty)


# A method's answer without "ok"; it raises SlackError for Slack's {"ok": false, "error": ...}.
Handler = Callable[["SlackDouble", "Workspace", Params], dict[str, Any]]


@dataclass(frozen=True)
class Method:
    handler: Handler
    requires: tuple[Requirement, ...] = ()


NEED_CHANNEL = need("channel", error="channel_not_found")
NEED_CHANNEL_ID = need("channel_id", error="channel_not_found")
NEED_MESSAGE_CONTENT = need("text", "blocks", "attachments", "markdown_text", error="no_text")
NEED_TS = need("ts", error="message_not_found")
NEED_THREAD_TS = need("thread_ts")

# Every Web API method the double answers, by name; each area module registers its own with @web_api.
METHODS: dict[str, Method] = {}


def web_api(name: str, *requires: Requirement) -> Callable[[Handler], Handler]:
    """Register handler as the Web API method name; Slack answers a missing requirement before calling it."""

    def register(handler: Handler) -> Handler:
        if name in METHODS:
            raise ValueError(f"{name} is registered twice")
        METHODS[name] = Method(handler, requires)
        return handler

    return register

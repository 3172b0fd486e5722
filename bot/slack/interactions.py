"""Who clicked or submitted, and where: the fields of Slack's interaction payloads, each read once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Interaction:
    """A block action or view submission's workspace, person and place; empty strings for what Slack left out."""

    team_id: str
    user_id: str
    channel_id: str
    thread_ts: str | None  # the thread of the message whose button was clicked, if it is in one

    @classmethod
    def of(cls, body: dict[str, Any]) -> Interaction:
        def part(key: str) -> dict[str, Any]:
            value = body.get(key)
            return value if isinstance(value, dict) else {}

        container, message = part("container"), part("message")
        thread_ts = _text(container.get("thread_ts")) or _text(message.get("thread_ts"))
        return cls(
            team_id=_text(part("team").get("id")),
            user_id=_text(part("user").get("id")),
            channel_id=_text(part("channel").get("id")) or _text(container.get("channel_id")),
            thread_ts=thread_ts or None,
        )

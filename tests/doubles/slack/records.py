"""What the double records for tests to inspect: Web API calls, response URL posts, and shape violations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .references import Shape, shape_violations


@dataclass(frozen=True)
class RecordedCall:
    """One Web API request as the double received it, with the body it answered."""

    method: str
    params: dict[str, Any]
    token: str | None
    time: float
    response: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HumanPost:
    """What a person did (ts of the message concerned) and the Events API envelopes Slack delivers for it."""

    ts: str
    envelopes: list[dict[str, Any]]


@dataclass(frozen=True)
class ResponseUrlPost:
    url: str
    body: dict[str, Any]
    time: float


@dataclass
class Recording:
    """Everything recorded since the last reset(); SlackDouble's properties hand out copies under its lock."""

    calls: list[RecordedCall] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    status_updates: list[dict[str, Any]] = field(default_factory=list)
    suggested_prompts: list[dict[str, Any]] = field(default_factory=list)
    title_updates: list[dict[str, Any]] = field(default_factory=list)
    response_url_posts: list[ResponseUrlPost] = field(default_factory=list)

    def check(self, value: dict[str, Any], shape: Shape | None, label: str) -> None:
        """Record where value, which the double produced, leaves the reference shape."""
        if shape is None:
            self.violations.append(f"{label}: no reference shape to check against")
            return
        self.violations += [f"{label}: {problem}" for problem in shape_violations(value, shape)]

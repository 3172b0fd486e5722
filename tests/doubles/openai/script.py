"""The scripted model: what it answers, which tools it calls and how an answer ends, on every API family."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

# How an answer can end, in Assistants words (a run's final status); each family maps them to its own.
FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled", "incomplete"})
DEFAULT_LAST_ERROR = {"code": "server_error", "message": "Sorry, something went wrong."}
DEFAULT_INCOMPLETE_DETAILS = {"reason": "max_completion_tokens"}


@dataclass
class ScriptedAnswer:
    """What the model does in one model call: answer text, tool calls first, and how the answer ends."""

    # The answer; None answers "Echo: " + the newest user text if the answer completes, and nothing otherwise.
    text: str | None = None
    # How many text deltas carry the text when it is streamed.
    chunks: int = 3
    # (function name, arguments): the model first calls these tools and waits for their outputs.
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # None answers "Tool results: " + the JSON list of the submitted outputs.
    text_after_tools: str | None = None
    # How the answer ends; failed ones carry last_error, incomplete ones incomplete_details (defaults if None).
    status: str = "completed"
    last_error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    # Seconds between streamed text deltas, so that tests can watch a reply grow.
    chunk_delay: float = 0.0
    # Seconds before the first streamed text delta: the model's time to first token (the benchmark sets it).
    first_token_delay: float = 0.0
    # The answer never starts (stays queued) until cancelled.
    stall: bool = False
    # Files (ids the double holds, e.g. from add_output_file) the answer shows as images after its text.
    image_file_ids: list[str] = field(default_factory=list)
    # (type, annotated text, file id): file_path or file_citation annotations on the answer text, which holds the text.
    annotations: list[tuple[str, str, str]] = field(default_factory=list)
    # Responses only: the model searches the web first, then cites each (text in the answer, url, page title) there.
    web_sources: list[tuple[str, str, str]] = field(default_factory=list)
    # Responses only: a reasoning model thinks first; these are the summary parts it reports when asked for them.
    reasoning_summary: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(FINAL_STATUSES)}, not {self.status!r}")
        if self.chunks < 1:
            raise ValueError("chunks must be at least 1")

    def default_text(self, newest_user_text: str) -> str | None:
        """The answer text before any tool call: the scripted text, else an echo if the answer completes."""
        if self.text is not None:
            return self.text
        return "Echo: " + newest_user_text if self.status == "completed" else None

    def after_tools_text(self, outputs: list[str]) -> str:
        """The answer text once the tool outputs (in call order) are in."""
        return self.text_after_tools if self.text_after_tools is not None else "Tool results: " + json.dumps(outputs)

    def text_pieces(self, text: str) -> list[str]:
        """The text as its streamed deltas: at most `chunks` consecutive pieces of near-equal length."""
        count = min(self.chunks, len(text))
        bounds = [round(index * len(text) / count) for index in range(count + 1)] if count else []
        return [text[start:end] for start, end in itertools.pairwise(bounds)]

    @property
    def error(self) -> dict[str, Any]:
        """The {"code", "message"} a failed answer reports."""
        return self.last_error or DEFAULT_LAST_ERROR

    @property
    def incomplete_reason(self) -> dict[str, Any]:
        """The incomplete_details an incomplete answer reports."""
        return self.incomplete_details or DEFAULT_INCOMPLETE_DETAILS


# Old tests script runs; the model answers the same on every API.
ScriptedRun = ScriptedAnswer


def annotation(kind: str, marker: str, file_id: str, text: str) -> dict[str, Any]:
    """A file_citation or file_path annotation (Assistants shape) on the first place `marker` appears in text."""
    start = text.index(marker)
    end = start + len(marker)
    return {"type": kind, "text": marker, kind: {"file_id": file_id}, "start_index": start, "end_index": end}

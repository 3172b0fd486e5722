"""The moderations family of the OpenAI double: POST /moderations, flagged by substrings tests choose."""

from __future__ import annotations

import base64
from typing import Any

from .server import ApiCall, JsonReply, Route, ServerCore

MODERATION_CATEGORIES = (
    "hate",
    "hate/threatening",
    "harassment",
    "harassment/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# Categories the omni moderation model also scores images for; the others apply to text only.
IMAGE_MODERATION_CATEGORIES = frozenset(
    {"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"}
)
# Harmless content still scores a little in every category, differently in each.
_BASELINE_MODERATION_SCORES = {category: 1e-5 * (index + 1) for index, category in enumerate(MODERATION_CATEGORIES)}
_FLAGGED_MODERATION_SCORE = 0.97


class ModerationsFamily:
    """Flags and scores texts and images by the substrings in `flags` and `scores`."""

    name = "moderations"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [Route.of("POST", "/moderations", self._create_moderation)]

    def reset(self) -> None:
        # Substring of a text, or of an image's bytes: categories the API flags for it.
        self.flags: dict[str, list[str]] = {}
        # Substring of a text, or of an image's bytes: category scores reported without a flag.
        self.scores: dict[str, dict[str, float]] = {}

    def _create_moderation(self, call: ApiCall) -> JsonReply:
        inputs = call.body["input"]
        if isinstance(inputs, str):
            items = [[("text", inputs)]]
        elif all(isinstance(item, str) for item in inputs):
            items = [[("text", text)] for text in inputs]
        else:
            # A multi-modal input is one item judged as a whole: its texts and its images together.
            items = [[_moderated_part(part) for part in inputs]]
        return JsonReply(
            {
                "id": self._core.new_id("modr"),
                "model": call.body.get("model", "omni-moderation-latest"),
                "results": [self._moderation_result(parts) for parts in items],
            }
        )

    def _moderation_result(self, parts: list[tuple[str, str]]) -> dict[str, Any]:
        """Flags and scores from whichever text or image matches; like the API, it does not say which one."""
        kinds = {kind for kind, _ in parts}
        applied = {
            category: [
                kind
                for kind in ("text", "image")
                if kind in kinds and (kind == "text" or category in IMAGE_MODERATION_CATEGORIES)
            ]
            for category in MODERATION_CATEGORIES
        }
        scores = dict(_BASELINE_MODERATION_SCORES)
        flagged: set[str] = set()
        for kind, content in parts:
            for substring, categories in self.flags.items():
                if substring.lower() in content.lower():
                    flagged.update(category for category in categories if kind in applied[category])
            for substring, category_scores in self.scores.items():
                if substring.lower() in content.lower():
                    for category, score in category_scores.items():
                        scores[category] = max(scores[category], score)
        for category in flagged:
            scores[category] = max(scores[category], _FLAGGED_MODERATION_SCORE)
        return {
            "flagged": bool(flagged),
            "categories": {category: category in flagged for category in MODERATION_CATEGORIES},
            "category_scores": scores,
            "category_applied_input_types": applied,
        }


def _moderated_part(part: dict[str, Any]) -> tuple[str, str]:
    """A multi-modal part as (kind, content); an image's content is its bytes, so tests flag pictures by content."""
    if part["type"] == "text":
        return "text", part["text"]
    url = part["image_url"]["url"]
    if url.startswith("data:") and ";base64," in url:
        return "image", base64.b64decode(url.split(",", 1)[1]).decode("latin-1")
    return "image", url

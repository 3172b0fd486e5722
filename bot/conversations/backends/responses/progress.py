"""What a response's stream says about its progress, as events for the person: tool activity and reasoning.

Built-in tools report their phases twice (``response.output_item.added/done`` and their own
``response.<tool>_call.*`` events), so each change of a call's status is passed on once.

Image generation shows as a task while it works, and its partial images (the request asks for
PARTIAL_IMAGES of them) as drafts: an image takes the better part of a minute, and a draft shows
people it is coming. Each partial costs about 100 output tokens; the platform decides how often it
shows one. The finished image comes with the answer, as before.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from bot.conversations.backend import DraftImage, ReasoningNote, ToolActivity, ToolStatus

log = logging.getLogger(__name__)

# Partial images asked of the image_generation tool (the API takes 0-3).
PARTIAL_IMAGES = 2
PARTIAL_IMAGE_EVENT = "response.image_generation_call.partial_image"

# The phase in a built-in tool's own stream events -> the status it means (later phases of a running
# call repeat STARTED, which is passed on only once).
PHASES = {
    "in_progress": ToolStatus.STARTED,
    "searching": ToolStatus.STARTED,
    "generating": ToolStatus.STARTED,
    "partial_image": ToolStatus.STARTED,
    "interpreting": ToolStatus.STARTED,
    "completed": ToolStatus.COMPLETED,
    "failed": ToolStatus.FAILED,
}
# response.<prefix>.<phase> -> the neutral tool name of ToolActivity.
TOOL_EVENT_PREFIXES = {
    "response.web_search_call.": "web_search",
    "response.image_generation_call.": "image_generation",
    "response.code_interpreter_call.": "code_interpreter",
    "response.file_search_call.": "file_search",
}
REASONING_SUMMARY_DONE = "response.reasoning_summary_text.done"


class StreamProgress:
    """One stream's progress events; each tool call's status is passed on once."""

    def __init__(self) -> None:
        self._shown: dict[str, ToolStatus] = {}

    def once(self, activity: ToolActivity) -> ToolActivity | None:
        """The activity, unless its call already showed this status."""
        if self._shown.get(activity.call_id) is activity.status:
            return None
        self._shown[activity.call_id] = activity.status
        return activity

    def read(self, kind: str | None, data: dict[str, Any]) -> ToolActivity | ReasoningNote | None:
        """The progress event a stream event (of this type) means; None for events about something else."""
        if not kind:
            return None
        if kind == REASONING_SUMMARY_DONE:
            text = str(data.get("text") or "").strip()
            return ReasoningNote(text) if text else None
        for prefix, tool in TOOL_EVENT_PREFIXES.items():
            if kind.startswith(prefix):
                status = PHASES.get(kind.removeprefix(prefix))
                if status is None:
                    return None
                return self.once(ToolActivity(str(data.get("item_id") or ""), tool, tool, status))
        return None


def draft_image(data: dict[str, Any]) -> DraftImage | None:
    """The draft a partial_image event carries; None (logged) when its image data is not base64."""
    try:
        image = base64.b64decode(str(data.get("partial_image_b64") or ""), validate=True)
    except binascii.Error:
        image = b""
    if not image:
        log.warning(
            "partial image %s of image call %s carried no valid image",
            data.get("partial_image_index"),
            data.get("item_id"),
        )
        return None
    return DraftImage(index=int(data.get("partial_image_index") or 0), data=image)

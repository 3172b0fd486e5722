"""What a response's stream says about its progress, as events for the person: tool activity and reasoning.

Built-in tools report their phases twice (``response.output_item.added/done`` and their own
``response.<tool>_call.*`` events), so each change of a call's status is passed on once.

Image generation shows as a task while it works; partial images are not asked for. Each would be
a file upload of its own (three Slack calls, rate limited per workspace, and a file in the channel
to take back when the next one arrives), and each costs output tokens: the finished image alone
is shared, as soon as the response ends.
"""

from __future__ import annotations

from typing import Any

from bot.conversations.backend import ReasoningNote, ToolActivity, ToolStatus

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

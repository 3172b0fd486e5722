"""Plain words for an answer that ended without one, shared by the OpenAI backends."""

from __future__ import annotations

QUEUED_TOO_LONG = "The assistant did not get to this in time, so I cancelled it. Please try again."


def failure_reason(
    status: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    incomplete_reason: str | None = None,
) -> str:
    """Plain words for a run or response that ended without an answer; statuses as the OpenAI APIs name them
    ("queued" for one given up on while it was still waiting to start)."""
    if status == "queued":
        return QUEUED_TOO_LONG
    if status == "failed":
        if error_code == "rate_limit_exceeded":
            return "The assistant is over its rate limit right now. Please try again in a minute."
        if error_code == "invalid_prompt":
            return "The assistant could not process this request."
        return f"The assistant ran into an error and could not answer{': ' + error_message if error_message else '.'}"
    if status == "expired":
        return "The assistant took too long and the run expired. Please try again."
    if status == "cancelled":
        return "The run was cancelled before the assistant finished."
    if status == "incomplete":
        if incomplete_reason in ("max_output_tokens", "max_completion_tokens", "max_prompt_tokens"):
            return "The answer was cut short because it reached the token limit."
        if incomplete_reason == "content_filter":
            return "The answer was stopped by the content filter."
        return f"The answer is incomplete{' (' + incomplete_reason + ')' if incomplete_reason else ''}."
    return f"The run ended with status {status}."

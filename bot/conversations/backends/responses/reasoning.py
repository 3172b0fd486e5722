"""Reasoning models on the Responses API: how hard they think, and the summaries they report while they do."""

from __future__ import annotations

from typing import Any

from bot.conversations.profiles import Profile, is_reasoning_model
from bot.errors import BadRequestError


def reasoning_parameters(profile: Profile, configured_effort: str | None, *, summaries: bool) -> dict[str, Any] | None:
    """The request's ``reasoning`` object; None for models that do not reason, which refuse it.

    Summaries are asked for ("auto": the most detailed the model offers) so that people see what it is
    thinking about while they wait; they are shown as status, never in the answer.
    """
    if not is_reasoning_model(profile.model):
        return None
    reasoning: dict[str, Any] = {}
    effort = profile.effort(configured_effort)
    if effort:
        reasoning["effort"] = effort
    if summaries:
        reasoning["summary"] = "auto"
    return reasoning or None


def refuses_summaries(error: BadRequestError) -> bool:
    """The API's refusal of reasoning summaries (organisations must be verified to get them, 2025-2026)."""
    message = error.message.lower()
    return "reasoning" in message and "summar" in message

"""Slack's answers to a failed call, sorted by what the bot can do about them."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.errors import DeliveryError, PlatformUnavailable

# Errors of Slack's own that pass, as opposed to refusals (channel_not_found, not_in_channel, missing_scope)
# that the same call meets again. `ratelimited` arrives only after the SDK's retry handler gave up waiting.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)
# What the connection retry handler lets through once its retries are spent.
CONNECTION_ERRORS = (aiohttp.ClientError, TimeoutError)


def slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")


def is_transient(exc: SlackApiError) -> bool:
    return slack_error(exc) in TRANSIENT_ERRORS or exc.response.status_code >= 500


def delivery_failure(exc: SlackApiError, method: str) -> DeliveryError | PlatformUnavailable:
    """A refusal that the same call would meet again ends the answer; a failure of Slack's that passes does not."""
    error = slack_error(exc)
    if is_transient(exc):
        return PlatformUnavailable(f"{method}: {error}")
    return DeliveryError(f"{method}: {error}")

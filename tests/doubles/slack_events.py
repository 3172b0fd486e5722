"""Send requests to the bot the way Slack does: signed Events API envelopes, slash commands and interactivity."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import ssl
import time
from typing import Any
from urllib.parse import urlencode

import httpx

from .slack import DEFAULT_APP_ID, DEFAULT_VERIFICATION_TOKEN

EVENTS_PATH = "/slack/events"
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
# Slack gives up on a request after 3 seconds, counts it as failed and retries it later.
SLACK_TIMEOUT_SECONDS = 3.0
JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def sign(
    body: bytes, signing_secret: str, timestamp: int | None = None, *, content_type: str = JSON_CONTENT_TYPE
) -> dict[str, str]:
    """Slack's request signing headers: v0=HMAC-SHA256 of "v0:{timestamp}:{body}" under the signing secret."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(signing_secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Signature": f"v0={digest}",
        "X-Slack-Request-Timestamp": str(timestamp),
        "Content-Type": content_type,
    }


@functools.cache
def shared_tls() -> ssl.SSLContext:
    """One TLS context for the tests' HTTP clients: every httpx client builds one otherwise, even for plain
    HTTP on loopback, and loading the CA bundle costs tens of milliseconds each time."""
    return ssl.create_default_context()


async def deliver(
    bot_url: str,
    envelope: dict[str, Any],
    signing_secret: str,
    *,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    timestamp: int | None = None,
    bad_signature: bool = False,
    timeout: float = SLACK_TIMEOUT_SECONDS,
) -> httpx.Response:
    """POST an Events API envelope to {bot_url}/slack/events as Slack does, optionally as a retry or forged."""
    return await _post(
        f"{bot_url.rstrip('/')}{EVENTS_PATH}",
        json.dumps(envelope).encode(),
        JSON_CONTENT_TYPE,
        signing_secret,
        retry_num=retry_num,
        retry_reason=retry_reason,
        timestamp=timestamp,
        bad_signature=bad_signature,
        timeout=timeout,
    )


async def deliver_form(
    bot_url: str,
    body: bytes,
    signing_secret: str,
    *,
    path: str = EVENTS_PATH,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    timestamp: int | None = None,
    bad_signature: bool = False,
    timeout: float = SLACK_TIMEOUT_SECONDS,
) -> httpx.Response:
    """POST a form-encoded slash command or interactivity body (from the builders below) as Slack does."""
    return await _post(
        f"{bot_url.rstrip('/')}{path}",
        body,
        FORM_CONTENT_TYPE,
        signing_secret,
        retry_num=retry_num,
        retry_reason=retry_reason,
        timestamp=timestamp,
        bad_signature=bad_signature,
        timeout=timeout,
    )


async def _post(
    url: str,
    body: bytes,
    content_type: str,
    signing_secret: str,
    *,
    retry_num: int | None,
    retry_reason: str,
    timestamp: int | None,
    bad_signature: bool,
    timeout: float,
) -> httpx.Response:
    # A forged request is one signed with some other secret: well-formed, but not verifiable.
    secret = f"not-{signing_secret}" if bad_signature else signing_secret
    headers = sign(body, secret, timestamp, content_type=content_type) | {"User-Agent": SLACK_USER_AGENT}
    if retry_num is not None:
        headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
    async with httpx.AsyncClient(timeout=timeout, verify=shared_tls()) as client:
        return await client.post(url, content=body, headers=headers)


def slash_command_body(
    command: str,
    text: str,
    *,
    team_id: str,
    channel_id: str,
    user_id: str,
    response_url: str,
    trigger_id: str,
    channel_name: str = "general",
    user_name: str = "user",
    api_app_id: str = DEFAULT_APP_ID,
    token: str = DEFAULT_VERIFICATION_TOKEN,
) -> bytes:
    """The form body Slack posts for a slash command (samples/app-backend/slash-commands)."""
    return urlencode(
        {
            "token": token,
            "team_id": team_id,
            "team_domain": team_id.lower(),
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    ).encode()


def block_action_body(
    *,
    action_id: str,
    value: str,
    team_id: str,
    channel_id: str,
    user_id: str,
    message: dict[str, Any],
    response_url: str,
    trigger_id: str,
    block_id: str = "actions",
    label: str = "Button",
    element_type: str = "button",
    channel_name: str = "general",
    user_name: str = "user",
    api_app_id: str = DEFAULT_APP_ID,
    token: str = DEFAULT_VERIFICATION_TOKEN,
) -> bytes:
    """The form body Slack posts when a person clicks a button in message (samples/.../BlockActionPayload)."""
    return _interactivity_body(
        {
            "type": "block_actions",
            **_actor(team_id, user_id, user_name, api_app_id, token, trigger_id),
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "channel": {"id": channel_id, "name": channel_name},
            "message": message,
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": label, "emoji": True},
                    "value": value,
                    "type": element_type,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
    )


def view_submission_body(
    view: dict[str, Any],
    values: dict[str, Any],
    *,
    team_id: str,
    user_id: str,
    trigger_id: str,
    user_name: str = "user",
    api_app_id: str = DEFAULT_APP_ID,
    token: str = DEFAULT_VERIFICATION_TOKEN,
) -> bytes:
    """The form body Slack posts when a person submits view (as views.open returned it) with state values."""
    return _interactivity_body(
        {
            "type": "view_submission",
            **_actor(team_id, user_id, user_name, api_app_id, token, trigger_id),
            "view": view | {"state": {"values": values}},
        }
    )


def _actor(team_id: str, user_id: str, user_name: str, api_app_id: str, token: str, trigger_id: str) -> dict[str, Any]:
    """The fields every interactivity payload carries about who acted where."""
    return {
        "team": {"id": team_id, "domain": team_id.lower()},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": token,
        "trigger_id": trigger_id,
        "is_enterprise_install": False,
    }


def _interactivity_body(payload: dict[str, Any]) -> bytes:
    # Slack form-encodes interactivity as a single "payload" field holding JSON.
    return urlencode({"payload": json.dumps(payload)}).encode()


def agent_session_stopped_envelope(
    *,
    team_id: str,
    channel: str,
    thread_ts: str,
    user: str,
    bot_user_id: str,
    streaming_message_ts: list[str],
    api_app_id: str = DEFAULT_APP_ID,
    token: str = DEFAULT_VERIFICATION_TOKEN,
) -> dict[str, Any]:
    """The Events API envelope Slack sends when a person presses the native stop button of an agent session
    (docs.slack.dev/reference/events/agent_session_stopped): the streams Slack stopped, or none."""
    event_ts = f"{time.time():.6f}"
    return {
        "token": token,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": {
            "type": "agent_session_stopped",
            "channel": channel,
            "thread_ts": thread_ts,
            "user": user,
            "streaming_message_ts": streaming_message_ts,
            "event_ts": event_ts,
        },
        "type": "event_callback",
        "event_id": f"Ev{secrets.token_hex(5).upper()}",
        "event_time": int(float(event_ts)),
        "authorizations": [
            {"team_id": team_id, "user_id": bot_user_id, "is_bot": True, "is_enterprise_install": False}
        ],
        "is_ext_shared_channel": False,
    }

"""The HTTP front door: Slack's requests to /slack/events and the /healthz probe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def build_web_app(bolt_app: AsyncApp | None, *, is_ready: Callable[[], bool]) -> web.Application:
    """Routes for HTTP mode; in Socket Mode (no bolt_app) only the health probe is served."""

    async def slack_events(request: web.Request) -> web.Response:
        assert bolt_app is not None
        # Bolt reads ids out of the body before verifying it, and fails on a body of the wrong shape:
        # that must be a 400 (nothing done), not a 500 that makes Slack resend the same body.
        try:
            bolt_request = await to_bolt_request(request)
            problem = _malformed(bolt_request.body)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            problem = type(exc).__name__
        if problem:
            log.warning("refused a malformed request to %s (%s)", EVENTS_PATH, problem)
            return web.Response(status=400, text="malformed request")
        response = await bolt_app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    async def health(_request: web.Request) -> web.Response:
        if is_ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "starting"}, status=503)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get(HEALTH_PATH, health)
    if bolt_app is not None:
        app.router.add_post(EVENTS_PATH, slack_events)
    return app


def _malformed(body: Any) -> str | None:
    """What is wrong with the shape of a parsed Slack request body, or None when Bolt can read it."""
    if not isinstance(body, dict):
        return "the body is not an object"
    if "event" in body and not isinstance(body["event"], dict):
        return "its event is not an object"
    return None

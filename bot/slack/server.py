"""The HTTP front door: Slack's requests to /slack/events, the OAuth install pages, the /healthz and /readyz
probes, and /metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"


class MetricsSource(Protocol):
    """Whatever renders the metrics page (bot.metrics.BotMetrics)."""

    content_type: str

    async def exposition(self) -> bytes: ...


def build_web_app(
    bolt_app: AsyncApp | None,
    *,
    is_ready: Callable[[], bool],
    readiness_problem: Callable[[], Awaitable[str | None]] | None = None,
    metrics: MetricsSource | None = None,
    oauth_flow: AsyncOAuthFlow | None = None,
) -> web.Application:
    """Routes for HTTP mode; in Socket Mode (no bolt_app) only the probes and the metrics are served.

    /healthz says the process is up and started; /readyz also that the database answers and its
    migrations are current (``readiness_problem`` says why not), so a load balancer sends no traffic
    to a replica that could not record it.
    """

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

    async def ready(_request: web.Request) -> web.Response:
        if not is_ready():
            return web.json_response({"status": "starting"}, status=503)
        problem = await readiness_problem() if readiness_problem is not None else None
        if problem is not None:
            return web.json_response({"status": "unavailable", "problem": problem}, status=503)
        return web.json_response({"status": "ok"})

    async def metrics_page(_request: web.Request) -> web.Response:
        assert metrics is not None
        return web.Response(body=await metrics.exposition(), headers={"Content-Type": metrics.content_type})

    async def install(request: web.Request) -> web.Response:
        # OAuth mode: the page with the "Add to Slack" link, and the state cookie the redirect is checked with.
        assert oauth_flow is not None
        return await to_aiohttp_response(await oauth_flow.handle_installation(await to_bolt_request(request)))

    async def oauth_redirect(request: web.Request) -> web.Response:
        assert oauth_flow is not None
        return await to_aiohttp_response(await oauth_flow.handle_callback(await to_bolt_request(request)))

    app = web.Application(client_max_size=8 * 1024 * 1024)
    if oauth_flow is not None:
        app.router.add_get(oauth_flow.install_path, install)
        app.router.add_get(oauth_flow.redirect_uri_path, oauth_redirect)
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get(READY_PATH, ready)
    if metrics is not None:
        app.router.add_get(METRICS_PATH, metrics_page)
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

"""The HTTP front door: Slack's requests to /slack/events and the /healthz probe."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def build_web_app(bolt_app: AsyncApp | None, *, is_ready: Callable[[], bool]) -> web.Application:
    """Routes for HTTP mode; in Socket Mode (no bolt_app) only the health probe is served."""

    async def slack_events(request: web.Request) -> web.Response:
        assert bolt_app is not None
        response = await bolt_app.async_dispatch(await to_bolt_request(request))
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

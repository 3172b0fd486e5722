"""`python -m bot doctor`: checks an install, one row each (the settings, Slack, the API, the database).

Each row says OK or what the problem is and how to fix it. The checks are the start-up checks of
`bot.app` where there is one (auth.test, the backend's routes, /moderations), so that doctor and a start
agree; none costs tokens, and none changes anything (the database is not migrated, no file is created).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.app import (
    check_backend_routes,
    check_moderation_route,
    openai_client,
    slack_auth,
    slack_client,
    socket_url,
    url_host,
)
from bot.errors import APIConnectionError, APIStatusError, ConfigurationError, StoreError
from bot.openai_api.client import OpenAIClient, path_segment
from bot.openai_api.probe import is_unknown_route, serves_image_generation, serves_transcription
from bot.settings import MANIFEST_BOT_SCOPES, Settings, missing_slack_settings
from bot.store.db import async_url, create_engine, current_revisions, migration_heads

EVENTS_PATH = "/slack/events"


class Status(str, enum.Enum):
    OK = "ok"
    PROBLEM = "problem"
    SKIPPED = "skipped"  # does not apply to these settings, or an earlier problem leaves nothing to check


@dataclass(frozen=True)
class Row:
    check: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {**asdict(self), "status": self.status.value}


def ok(check: str, detail: str) -> Row:
    return Row(check, Status.OK, detail)


def problem(check: str, detail: str, fix: str) -> Row:
    return Row(check, Status.PROBLEM, detail, fix)


def skipped(check: str, detail: str) -> Row:
    return Row(check, Status.SKIPPED, detail)


def settings_problem(error: ConfigurationError) -> Row:
    return problem(
        "settings",
        str(error),
        "set or correct it in the environment or in .env (see the Settings table of the README)",
    )


async def diagnose(settings: Settings) -> list[Row]:
    rows = [ok("settings", f"loaded and valid ({settings.openai_backend} backend, {_database_kind(settings)})")]
    rows += await slack_rows(settings)
    rows += await api_rows(settings)
    rows += await database_rows(settings)
    return rows


def has_problem(rows: list[Row]) -> bool:
    return any(row.status is Status.PROBLEM for row in rows)


# Slack -------------------------------------------------------------------------------------------


async def slack_rows(settings: Settings) -> list[Row]:
    if settings.slack_bot_token is None and settings.oauth_mode:
        return [
            skipped("slack auth.test", "OAuth mode: each workspace's token is Slack's answer to its install"),
            skipped("slack scopes", "OAuth mode: a workspace grants the scopes it installs the app with"),
            _events_mode_without_client(settings),
        ]
    if settings.slack_bot_token is None:
        return [
            problem(
                "slack auth.test",
                "SLACK_BOT_TOKEN is not set",
                "copy the Bot User OAuth Token (xoxb-...) from OAuth & Permissions into SLACK_BOT_TOKEN "
                "(`python -m bot shell` works without it)",
            ),
            skipped("slack scopes", "no token to ask Slack about"),
            _events_mode_without_client(settings),
        ]
    client = slack_client(settings)
    try:
        auth = await slack_auth(client, settings)
    except ConfigurationError as exc:
        return [
            problem("slack auth.test", str(exc), "correct the setting it names"),
            skipped("slack scopes", "auth.test failed"),
            _events_mode_without_client(settings),
        ]
    identity = f"the bot @{auth.get('user')} ({auth.get('user_id')}) of {auth.get('team')} ({auth.get('team_id')})"
    rows = [ok("slack auth.test", f"the token is {identity}"), _scopes_row(auth.headers)]
    if settings.slack_app_token is not None:
        try:
            await socket_url(client, settings.slack_app_token.get_secret_value())
        except ConfigurationError as exc:
            rows.append(problem("slack events", f"Socket Mode: {exc}", "generate a new app-level token"))
        else:
            rows.append(ok("slack events", "Socket Mode: Slack accepts SLACK_APP_TOKEN; no public URL is needed"))
    else:
        rows.append(_events_mode_without_client(settings))
    return rows


def _scopes_row(headers: dict[str, object]) -> Row:
    given = next((str(value) for name, value in headers.items() if name.lower() == "x-oauth-scopes"), None)
    if given is None:
        return problem(
            "slack scopes",
            "Slack did not say which scopes the token has (no x-oauth-scopes header)",
            "check SLACK_API_URL: Slack's own Web API names them",
        )
    granted = {scope.strip() for scope in given.split(",") if scope.strip()}
    missing = [scope for scope in MANIFEST_BOT_SCOPES if scope not in granted]
    if missing:
        return problem(
            "slack scopes",
            f"the token lacks {len(missing)} of the scopes manifest.yml asks for: {', '.join(missing)}",
            "add them under OAuth & Permissions -> Bot Token Scopes (or update the app from manifest.yml), "
            "reinstall the app, and copy the new token into SLACK_BOT_TOKEN",
        )
    return ok("slack scopes", f"the token has every scope manifest.yml asks for ({len(MANIFEST_BOT_SCOPES)})")


def _events_mode_without_client(settings: Settings) -> Row:
    """The events URL mode as the settings choose it; Socket Mode's token is only checked with Slack."""
    if settings.socket_mode:
        return skipped("slack events", "Socket Mode (SLACK_APP_TOKEN set): checked once the bot token works")
    missing = [name for name in missing_slack_settings(settings) if "SLACK_SIGNING_SECRET" in name]
    if missing:
        return problem(
            "slack events",
            "HTTP mode (SLACK_APP_TOKEN unset) without SLACK_SIGNING_SECRET, so Slack's requests cannot be verified",
            "copy the Signing Secret (Basic Information -> App Credentials) into SLACK_SIGNING_SECRET, or set "
            "SLACK_APP_TOKEN for Socket Mode",
        )
    return ok(
        "slack events",
        f"HTTP mode: Slack must send events, commands and interactivity to https://YOUR-HOST{EVENTS_PATH}, "
        f"served on port {settings.port}",
    )


# The API -----------------------------------------------------------------------------------------


async def api_rows(settings: Settings) -> list[Row]:
    async with openai_client(settings) as client:
        key = await _key_row(client, settings)
        if key.status is Status.PROBLEM:
            return [key, skipped("api backend", "the API did not accept the bot")]
        rows = [key]
        rows.append(
            await _start_check(
                "api backend", check_backend_routes, client, settings, f"{settings.openai_backend} routes"
            )
        )
        if settings.moderation == "off":
            rows.append(skipped("api moderation", "MODERATION=off"))
        else:
            rows.append(await _start_check("api moderation", check_moderation_route, client, settings, "/moderations"))
        for check, setting, model in _configured_models(settings):
            rows.append(await _model_row(client, check, setting, model))
        for route in OPTIONAL_ROUTES:
            rows += await _optional_route_rows(client, settings, route)
        return rows


async def _key_row(client: OpenAIClient, settings: Settings) -> Row:
    host = url_host(settings.openai_base_url)
    try:
        await client.request("GET", "/models")
    except APIConnectionError:
        return problem("api key", f"could not reach the API at {host}", "check OPENAI_BASE_URL")
    except APIStatusError as exc:
        if exc.status_code in (401, 403):
            return problem(
                "api key",
                f"the API at {host} refused the bot's credentials (HTTP {exc.status_code})",
                "check OPENAI_API_KEY",
            )
        if not is_unknown_route(exc):
            return problem(
                "api key",
                f"the API at {host} answered GET /models with HTTP {exc.status_code}",
                "check OPENAI_BASE_URL",
            )
    how = "the key is accepted" if settings.openai_api_key is not None else "no key is needed"
    return ok("api key", f"the API at {host} answers; {how}")


async def _start_check(
    check: str,
    start_check: Callable[[OpenAIClient, Settings], Awaitable[None]],
    client: OpenAIClient,
    settings: Settings,
    what: str,
) -> Row:
    try:
        await start_check(client, settings)
    except ConfigurationError as exc:
        return problem(check, str(exc), "as the problem says: until then the bot refuses to start")
    return ok(check, f"the API serves {what}")


def _configured_models(settings: Settings) -> list[tuple[str, str, str]]:
    """(check, setting, model) for each model the settings have the bot use."""
    models = [("api model", "ASSISTANT_MODEL", settings.assistant_model)]
    if settings.moderation != "off":
        models.append(("api moderation model", "MODERATION_MODEL", settings.moderation_model))
    if settings.openai_backend.strip().lower() == "chat":
        models.append(("api embeddings", "EMBEDDING_MODEL", settings.embedding_model))
    return models


@dataclass(frozen=True)
class OptionalRoute:
    """A route a feature needs but a start does not (the bot runs without it): checked by a free probe."""

    check: str
    path: str
    feature: str  # what goes without it, for the problem's detail
    setting: str  # the model setting of the feature
    model: Callable[[Settings], str]
    serves: Callable[..., Awaitable[bool]]  # (client, *, model) -> whether the route is served


OPTIONAL_ROUTES = (
    OptionalRoute(
        "api transcription",
        "/audio/transcriptions",
        "voice and video clips people share are not transcribed",
        "TRANSCRIPTION_MODEL",
        lambda settings: settings.transcription_model,
        serves_transcription,
    ),
    OptionalRoute(
        "api images",
        "/images/generations",
        "/imagine makes no images",
        "IMAGE_MODEL",
        lambda settings: settings.image_model,
        serves_image_generation,
    ),
)


async def _optional_route_rows(client: OpenAIClient, settings: Settings, route: OptionalRoute) -> list[Row]:
    """The route is served (probed at no cost), then the API has the feature's model."""
    model = route.model(settings)
    model_check = f"{route.check} model"
    try:
        served = await route.serves(client, model=model)
    except APIStatusError as exc:
        return [
            problem(route.check, f"POST {route.path} answered HTTP {exc.status_code}", "check OPENAI_API_KEY"),
            skipped(model_check, f"POST {route.path} failed"),
        ]
    except APIConnectionError:
        return [
            problem(route.check, "the API could not be reached", "check OPENAI_BASE_URL"),
            skipped(model_check, "the API could not be reached"),
        ]
    if not served:
        return [
            problem(
                route.check,
                f"the API at {url_host(settings.openai_base_url)} does not serve {route.path}, so {route.feature}",
                f"point OPENAI_BASE_URL at a server that serves {route.path} (the bot runs without it)",
            ),
            skipped(model_check, f"{route.path} is not served"),
        ]
    return [
        ok(route.check, f"the API serves {route.path}"),
        await _model_row(client, model_check, route.setting, model),
    ]


async def _model_row(client: OpenAIClient, check: str, setting: str, model: str) -> Row:
    """GET /models/{model}; a server without that route (vLLM and others) is asked for its list instead."""
    try:
        await client.request("GET", f"/models/{path_segment(model)}")
    except APIStatusError as exc:
        if not is_unknown_route(exc):
            if exc.status_code == 404:
                return problem(
                    check, f"the API has no model {model} ({setting})", f"set {setting} to a model GET /models lists"
                )
            return problem(check, f"GET /models/{model} answered HTTP {exc.status_code}", "check the API's status")
        try:
            listed = await client.model_ids()
        except (APIStatusError, APIConnectionError):
            return skipped(check, f"the API does not say which models it has, so {model} ({setting}) is unchecked")
        if model not in listed:
            return problem(
                check, f"the API has no model {model} ({setting})", f"set {setting} to a model GET /models lists"
            )
    except APIConnectionError:
        return problem(check, "the API could not be reached", "check OPENAI_BASE_URL")
    return ok(check, f"the API has the model {model} ({setting})")


# The database ------------------------------------------------------------------------------------


async def database_rows(settings: Settings) -> list[Row]:
    try:
        url = make_url(async_url(settings.database_url))
    except ConfigurationError as exc:
        return [problem("database", str(exc), "correct DATABASE_URL")]
    sqlite_file = (
        Path(url.database)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        else None
    )
    rows = []
    if sqlite_file is not None:
        if not sqlite_file.exists():
            return [
                problem(
                    "database",
                    f"there is no database at {sqlite_file} yet",
                    "`python -m bot migrate` creates it (so does the first `run` or `shell`)",
                ),
                skipped("database migrations", "no database"),
            ]
        rows.append(_writable_row(sqlite_file))
    try:
        current = await _current_revisions(settings.database_url)
    except StoreError as exc:
        return [
            problem("database", str(exc), "start the database, or correct DATABASE_URL"),
            *rows,
            skipped("database migrations", "the database could not be reached"),
        ]
    where = (
        str(sqlite_file) if sqlite_file is not None else f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"
    )
    rows.insert(0, ok("database", f"reachable at {where}"))
    heads = migration_heads()
    if current == heads:
        rows.append(ok("database migrations", f"current (at {', '.join(sorted(heads))})"))
    else:
        at = ", ".join(sorted(current)) or "none applied"
        rows.append(
            problem(
                "database migrations",
                f"not current: at {at}, the code's are at {', '.join(sorted(heads))}",
                "`python -m bot migrate` applies them (a `run` does too, at start)",
            )
        )
    return rows


def _writable_row(database: Path) -> Row:
    """SQLite writes the file and, beside it, its journal (-wal, -shm): both the file and its folder."""
    unwritable = [str(path) for path in (database, database.parent) if not os.access(path, os.W_OK)]
    if unwritable:
        return problem(
            "database file",
            f"this user cannot write {' nor '.join(unwritable)}",
            "give the bot's user write access to the database file and its folder, or move DATABASE_URL",
        )
    return ok("database file", f"{database} and its folder are writable")


async def _current_revisions(database_url: str) -> frozenset[str]:
    """The migrations the database is at, read without applying any."""
    engine = create_engine(database_url)
    try:
        return await current_revisions(engine)
    finally:
        await engine.dispose()


def _database_kind(settings: Settings) -> str:
    try:
        return f"{make_url(async_url(settings.database_url)).get_backend_name()} database"
    except ConfigurationError:
        return "an unreadable DATABASE_URL"


# Output ------------------------------------------------------------------------------------------


def render(rows: list[Row], *, as_json: bool) -> str:
    if as_json:
        return json.dumps([row.to_json() for row in rows], indent=2)
    width = max(len(row.check) for row in rows)
    lines = []
    for row in rows:
        lines.append(f"{row.status.value.upper():<8} {row.check:<{width}}  {row.detail}")
        if row.fix:
            lines.append(f"{'':<8} {'':<{width}}  how to fix: {row.fix}")
    problems = sum(row.status is Status.PROBLEM for row in rows)
    lines.append("")
    lines.append(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "everything checked is OK")
    return "\n".join(lines)

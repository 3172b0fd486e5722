"""Shared fixtures: databases (SQLite and PostgreSQL), the Slack and OpenAI doubles, a running bot."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

SPECS_DIR = Path(__file__).resolve().parents[2] / "shared" / "specs"
T = TypeVar("T")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require_specs() -> Path:
    """The shared specs folder; missing it skips locally but fails in CI, never passes silently."""
    if not SPECS_DIR.is_dir():
        message = f"the shared specs folder {SPECS_DIR} is missing"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SPECS_DIR


def run_outside_loop(function: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on its own loop, even when a test's loop is running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, function()).result()


async def _admin_connection() -> asyncpg.Connection:
    url = make_url(POSTGRES_URL)
    try:
        return await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
        )
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {url.host}:{url.port} is not reachable ({exc})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throwaway database on the PostgreSQL server, dropped at the end of the session."""
    name = f"bot_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        admin = await _admin_connection()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    async def drop() -> None:
        admin = await _admin_connection()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run_outside_loop(create)
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    run_outside_loop(drop)


async def _reset_postgres(url: str) -> None:
    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind the bot supports, as a plain URL (as an operator writes it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        return
    url = request.getfixturevalue("postgres_database")
    await _reset_postgres(url)
    yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bot.sqlite3'}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head once per test process, copied for each bot that starts on a new one:
    a bot migrates a fresh database at every start, the same work each time (the migration tests run their own)."""
    from bot.store.db import create_engine, migrate

    path = tmp_path_factory.mktemp("migrated") / "bot.sqlite3"

    async def migrated() -> None:
        engine = create_engine(f"sqlite:///{path}")
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    run_outside_loop(migrated)
    return path


# Doubles and a running bot ------------------------------------------------------------------

SIGNING_SECRET = "test-signing-secret-5f1d"
OPENAI_KEY = "sk-test-openai-key-8c2e"
BOT_TOKEN = "xoxb-test-bot-token-41a7"

# Fixtures kept beside the helpers they serve. Every test is audited for leaked secrets (logs at DEBUG,
# Slack, OpenAI bodies): see secret_audit.py.
pytest_plugins = ["secret_audit", "support.store", "support.contract", "support.bot_processes", "support.oauth"]


@pytest.fixture(scope="session")
def openai_server() -> Iterator[Any]:
    require_specs()
    from doubles.openai import OpenAIDouble

    server = OpenAIDouble(api_key=OPENAI_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def openai_double(openai_server: Any) -> Iterator[Any]:
    """The OpenAI double, emptied; every request and response it saw must match the spec."""
    openai_server.reset()
    yield openai_server
    openai_server.assert_no_violations()


@pytest.fixture(scope="session")
def slack_server() -> Iterator[Any]:
    require_specs()
    from doubles.slack import SlackDouble

    server = SlackDouble(bot_token=BOT_TOKEN)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def slack_double(slack_server: Any) -> Iterator[Any]:
    slack_server.reset()
    slack_server.add_user("U0ADA", name="ada", display_name="Ada", tz="Europe/London")
    slack_server.add_user("U0BOB", name="bob", display_name="Bob", tz="America/New_York")
    slack_server.add_channel("C0GENERAL", name="general")
    slack_server.add_channel("D0ADA", name="ada-dm", is_im=True, user="U0ADA")
    yield slack_server
    assert slack_server.violations == [], "\n".join(slack_server.violations)


class RunningBot:
    """A bot started in-process in HTTP mode, and the means to talk to it as Slack does."""

    def __init__(self, bot: Any, slack: Any) -> None:
        self.bot = bot
        self.slack = slack
        self.url = f"http://127.0.0.1:{bot.port}"

    async def deliver(self, envelope: dict[str, Any], **options: Any):
        from doubles.slack_events import deliver

        return await deliver(self.url, envelope, SIGNING_SECRET, **options)

    async def settle(self) -> None:
        """Wait until every command's background work and then every answer in progress is finished."""
        await self.bot.background.idle()
        await self.bot.service.idle()

    async def say(self, channel: str, user: str, text: str, *, thread_ts: str | None = None, **options: Any) -> str:
        """A person posts in Slack; Slack delivers the events; the bot answers. Returns the message ts."""
        post = self.slack.human_posts(channel, user, text, thread_ts=thread_ts, **options)
        for envelope in post.envelopes:
            response = await self.deliver(envelope)
            assert response.status_code == 200, response.text
        await self.settle()
        return post.ts

    async def stop(self) -> None:
        await self.bot.stop()


# Each backend runs against the server shape it is meant for.
BACKEND_SHAPES = {"responses": "openai", "assistants": "full", "chat": "chat_only"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names, reason): the test applies only to these backends; the others skip with the reason"
    )


@pytest.fixture(params=list(BACKEND_SHAPES))
def backend(request: pytest.FixtureRequest, openai_double: Any) -> str:
    """Every end-to-end test runs once per backend, with the OpenAI double shaped like its server."""
    marker = request.node.get_closest_marker("backends")
    if marker is not None and request.param not in marker.args:
        pytest.skip(f"{request.param}: {marker.kwargs.get('reason', 'does not apply to this backend')}")
    openai_double.shape = BACKEND_SHAPES[request.param]
    return str(request.param)


@pytest.fixture
async def start_bot(
    openai_double: Any, slack_double: Any, tmp_path: Path, backend: str, migrated_sqlite: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start the bot against the doubles, on each backend; keyword arguments override settings."""
    from bot.app import start_bot as start
    from bot.settings import Settings

    running: list[RunningBot] = []

    async def factory(**overrides: Any) -> RunningBot:
        values: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": slack_double.api_url,
            "openai_api_key": OPENAI_KEY,
            "openai_base_url": openai_double.base_url,
            "openai_backend": backend,
            "database_url": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
            "host": "127.0.0.1",
            "port": 0,
            "stream_update_seconds": 0.0,
            "openai_max_retries": 2,
        }
        values.update(overrides)
        database = tmp_path / "bot.sqlite3"
        if "database_url" not in overrides and not database.exists():
            shutil.copyfile(migrated_sqlite, database)
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        bot = RunningBot(await start(settings), slack_double)
        openai_double.forget_requests()  # the start-up check's probes; tests look at what their turns cause
        running.append(bot)
        return bot

    yield factory
    for bot in running:
        await bot.stop()

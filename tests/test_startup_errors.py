"""Start-up with an unreachable Slack, API or database: `python -m bot run` exits non-zero with one line
naming the host and the setting to fix, never a traceback or a secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET
from sqlalchemy.engine import make_url
from test_settings_cli import run_cli

# Nothing listens here: port 1 on loopback refuses at once.
REFUSING = "127.0.0.1:1"
# The .invalid top-level domain never resolves (RFC 2606), so this is a DNS failure without a network.
UNRESOLVABLE = "slack.example.invalid"
DATABASE_PASSWORD = "db-pass-6e1f"
# bot.logs' format: "2026-12-01 22:28:26,486 INFO alembic.runtime.migration: ..."
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


def _env(openai_double: Any, slack_double: Any, tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_double.api_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_double.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        "OPENAI_MAX_RETRIES": "1",
        "PORT": "0",
        **overrides,
    }


def _the_one_line(result: Any) -> str:
    """The process failed with exactly one line on stderr besides its log records, with no traceback
    and no secret; that line is the last."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    said = [line for line in lines if not LOG_RECORD.match(line)]
    assert said == lines[-1:], result.stderr
    for secret in (BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET, DATABASE_PASSWORD):
        assert secret not in result.stderr
    return said[0]


@pytest.mark.parametrize(
    "slack_api_url",
    [f"http://{REFUSING}/api/", f"http://{UNRESOLVABLE}/api/"],
    ids=["connection-refused", "dns-failure"],
)
def test_an_unreachable_slack_is_named_in_one_line(
    openai_double: Any, slack_double: Any, tmp_path: Path, slack_api_url: str
) -> None:
    host = slack_api_url.split("/")[2]
    env = _env(openai_double, slack_double, tmp_path, SLACK_API_URL=slack_api_url)
    line = _the_one_line(run_cli("run", env=env, cwd=tmp_path))
    assert f"could not reach Slack at {host}" in line and "SLACK_API_URL" in line


def test_a_slack_proxy_that_is_down_is_named_in_one_line(openai_double: Any, slack_double: Any, tmp_path: Path) -> None:
    # aiohttp, under slack_sdk, goes through HTTPS_PROXY when it is set; a proxy that is down fails the same way.
    env = _env(
        openai_double, slack_double, tmp_path, SLACK_API_URL="https://slack.com/api/", HTTPS_PROXY=f"http://{REFUSING}"
    )
    line = _the_one_line(run_cli("run", env=env, cwd=tmp_path))
    assert f"could not reach Slack at slack.com through the proxy at {REFUSING}" in line and "HTTPS_PROXY" in line


def test_a_slack_api_url_that_is_not_slack_is_named_in_one_line(
    openai_double: Any, slack_double: Any, tmp_path: Path
) -> None:
    # A mistake an operator makes: SLACK_API_URL pointing at another server, which answers 404.
    wrong = openai_double.base_url.rstrip("/") + "/"
    env = _env(openai_double, slack_double, tmp_path, SLACK_API_URL=wrong)
    line = _the_one_line(run_cli("run", env=env, cwd=tmp_path))
    host = wrong.split("/")[2]
    assert f"the server at {host} does not answer as Slack's Web API does" in line and "SLACK_API_URL" in line
    assert "SLACK_BOT_TOKEN" not in line  # the token was never the problem


def test_an_unreachable_api_is_named_in_one_line(openai_double: Any, slack_double: Any, tmp_path: Path) -> None:
    env = _env(openai_double, slack_double, tmp_path, OPENAI_BASE_URL=f"http://{REFUSING}/v1")
    line = _the_one_line(run_cli("run", env=env, cwd=tmp_path))
    assert f"could not reach the API at {REFUSING}" in line and "OPENAI_BASE_URL" in line


def test_an_unreachable_postgresql_is_named_in_one_line(openai_double: Any, slack_double: Any, tmp_path: Path) -> None:
    url = f"postgresql://bot:{DATABASE_PASSWORD}@{REFUSING}/bot"
    line = _the_one_line(
        run_cli("run", env=_env(openai_double, slack_double, tmp_path, DATABASE_URL=url), cwd=tmp_path)
    )
    assert f"could not reach the database at {REFUSING}" in line and "DATABASE_URL" in line


def test_an_unresolvable_postgresql_host_is_named_in_one_line(
    openai_double: Any, slack_double: Any, tmp_path: Path
) -> None:
    url = f"postgresql://bot:{DATABASE_PASSWORD}@db.example.invalid:5432/bot"
    line = _the_one_line(
        run_cli("run", env=_env(openai_double, slack_double, tmp_path, DATABASE_URL=url), cwd=tmp_path)
    )
    assert "could not reach the database at db.example.invalid:5432" in line and "DATABASE_URL" in line


@pytest.mark.postgres
def test_a_database_the_server_does_not_have_is_named_in_one_line(
    openai_double: Any, slack_double: Any, tmp_path: Path, postgres_database: str
) -> None:
    server = make_url(postgres_database)
    url = server.set(database="bot_missing_database").render_as_string(hide_password=False)
    line = _the_one_line(
        run_cli("run", env=_env(openai_double, slack_double, tmp_path, DATABASE_URL=url), cwd=tmp_path)
    )
    assert f"could not open the database at {server.host}:{server.port or 5432}" in line
    assert 'database "bot_missing_database" does not exist' in line and "DATABASE_URL" in line


def test_a_sqlite_file_that_cannot_be_opened_is_named_in_one_line(
    openai_double: Any, slack_double: Any, tmp_path: Path
) -> None:
    # The path names a folder, which SQLite cannot open as a database file.
    (tmp_path / "a-folder").mkdir()
    url = f"sqlite:///{tmp_path / 'a-folder'}"
    line = _the_one_line(
        run_cli("run", env=_env(openai_double, slack_double, tmp_path, DATABASE_URL=url), cwd=tmp_path)
    )
    assert "could not open the database" in line and "DATABASE_URL" in line


def test_the_migrate_command_names_an_unreachable_database_in_one_line(
    openai_double: Any, slack_double: Any, tmp_path: Path
) -> None:
    url = f"postgresql://bot:{DATABASE_PASSWORD}@{REFUSING}/bot"
    line = _the_one_line(
        run_cli("migrate", env=_env(openai_double, slack_double, tmp_path, DATABASE_URL=url), cwd=tmp_path)
    )
    assert f"could not reach the database at {REFUSING}" in line and "DATABASE_URL" in line


def test_a_refused_slack_app_token_is_named_in_one_line(openai_double: Any, slack_double: Any, tmp_path: Path) -> None:
    # Socket Mode: the bot token passes auth.test, but apps.connections.open refuses the app-level token.
    env = _env(openai_double, slack_double, tmp_path, SLACK_APP_TOKEN="xapp-not-the-app-token")
    result = run_cli("run", env=env, cwd=tmp_path)
    line = _the_one_line(result)
    assert "SLACK_APP_TOKEN" in line and "invalid_auth" in line
    assert "xapp-not-the-app-token" not in result.stderr

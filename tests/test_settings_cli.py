"""Settings and the command line: clear one-line errors, no secrets echoed, migrations applied."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import ConfigurationError
from bot.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
BASE_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-cli-test-token-123",
    "SLACK_SIGNING_SECRET": "cli-signing-secret-456",
    "OPENAI_API_KEY": "sk-cli-test-key-789",
}


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for key in list(os.environ):
        if key.startswith(("SLACK_", "OPENAI_", "DATABASE_", "ASSISTANT_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_a_missing_setting_is_named_in_one_line(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("SLACK_SIGNING_SECRET", "s3cret-value")
    environment.setenv("OPENAI_API_KEY", "sk-abcdef")
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    assert str(caught.value) == "SLACK_BOT_TOKEN is required but not set"


def test_invalid_values_are_explained_without_echoing_them(environment: pytest.MonkeyPatch) -> None:
    for key, value in BASE_ENV.items():
        environment.setenv(key, value)
    environment.setenv("OPENAI_EXTRA_QUERY", "api_token=sk-leaky-gateway-token")
    environment.setenv("PORT", "seventy")
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    message = str(caught.value)
    assert "OPENAI_EXTRA_QUERY must be a JSON object" in message
    assert "PORT" in message
    assert "sk-leaky-gateway-token" not in message and "\n" not in message


def test_extra_headers_and_query_are_json_objects(environment: pytest.MonkeyPatch) -> None:
    for key, value in BASE_ENV.items():
        environment.setenv(key, value)
    environment.setenv("OPENAI_EXTRA_QUERY", '{"api_token": "tok-1"}')
    environment.setenv("OPENAI_EXTRA_HEADERS", '{"X-Gateway": "team-a"}')
    environment.setenv("SLACK_API_URL", "http://127.0.0.1:9/api")
    settings = get_settings()
    assert settings.openai_extra_query == {"api_token": "tok-1"}
    assert settings.openai_extra_headers == {"X-Gateway": "team-a"}
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert "tok-1" in settings.secrets()  # a query token is scrubbed from logs like a key


def test_http_mode_needs_the_signing_secret(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    environment.setenv("OPENAI_API_KEY", "sk-1")
    with pytest.raises(ConfigurationError, match="SLACK_SIGNING_SECRET is required"):
        get_settings()
    environment.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert get_settings.cache_clear() is None and get_settings().socket_mode is True


def test_a_key_is_optional_only_off_openai(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    environment.setenv("SLACK_SIGNING_SECRET", "secret-1")
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY is required"):
        get_settings()
    get_settings.cache_clear()
    environment.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    assert get_settings().openai_api_key is None


def test_settings_come_from_a_dotenv_file(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("".join(f"{key}={value}\n" for key, value in BASE_ENV.items()) + "LOG_LEVEL=debug\n")
    settings = get_settings()
    assert isinstance(settings, Settings) and settings.log_level == "DEBUG"


def test_cli_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = run_cli("run", env={**BASE_ENV, "OPENAI_API_KEY": "", "OPENAI_EXTRA_HEADERS": "[1]"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "OPENAI_EXTRA_HEADERS must be a JSON object" in result.stderr
    assert BASE_ENV["SLACK_BOT_TOKEN"] not in result.stderr


def test_cli_migrate_creates_the_schema(tmp_path: Path) -> None:
    database = tmp_path / "nested" / "bot.sqlite3"
    result = run_cli("migrate", env={**BASE_ENV, "DATABASE_URL": f"sqlite:///{database}"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tables = {row[0] for row in sqlite3.connect(database).execute("select name from sqlite_master where type='table'")}
    assert {"conversations", "channel_settings", "turns", "app_state", "alembic_version"} <= tables


def test_the_default_database_is_a_sqlite_file_under_data(tmp_path: Path) -> None:
    result = run_cli("migrate", env=BASE_ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "bot.sqlite3").is_file()

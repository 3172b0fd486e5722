"""Settings and the command line: clear one-line errors, no secrets echoed, migrations applied."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET
from support.slack_view import bot_texts
from support.workspace import BOT, CHANNEL

from bot.errors import ConfigurationError
from bot.settings import Settings, get_settings, require_slack_settings

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


def test_a_missing_slack_setting_is_named_in_one_line_when_serving_slack(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("SLACK_SIGNING_SECRET", "s3cret-value")
    environment.setenv("OPENAI_API_KEY", "sk-abcdef")
    settings = get_settings()  # `shell` and `doctor` need no Slack settings; `run` checks them
    with pytest.raises(ConfigurationError) as caught:
        require_slack_settings(settings)
    message = str(caught.value)
    assert message.startswith("SLACK_BOT_TOKEN ") and " is required to serve Slack but not set; " in message
    assert message.endswith("`python -m bot shell` talks to the assistant in a terminal without them")


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
    with pytest.raises(ConfigurationError, match=r"^SLACK_SIGNING_SECRET \(HTTP mode\) or SLACK_APP_TOKEN \(Socket"):
        require_slack_settings(get_settings())
    environment.setenv("SLACK_APP_TOKEN", "xapp-1")
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.socket_mode is True
    require_slack_settings(settings)  # Socket Mode needs no signing secret


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


# Secrets as operators really provide them ----------------------------------------------------------


def test_secrets_lose_the_whitespace_secret_files_add(environment: pytest.MonkeyPatch) -> None:
    # `kubectl create secret --from-file` and `echo key > file` keep the trailing newline.
    environment.setenv("SLACK_BOT_TOKEN", BASE_ENV["SLACK_BOT_TOKEN"] + "\n")
    environment.setenv("SLACK_SIGNING_SECRET", "  " + BASE_ENV["SLACK_SIGNING_SECRET"] + "\r\n")
    environment.setenv("OPENAI_API_KEY", BASE_ENV["OPENAI_API_KEY"] + "\n")
    environment.setenv("OPENAI_EXTRA_HEADERS", '{"X-Gateway-Key": "gw-key-1234\\n"}')
    environment.setenv("OPENAI_EXTRA_QUERY", '{"api_token": " tok-5678 "}')
    settings = get_settings()
    assert settings.slack_bot_token.get_secret_value() == BASE_ENV["SLACK_BOT_TOKEN"]
    assert settings.slack_signing_secret is not None
    assert settings.slack_signing_secret.get_secret_value() == BASE_ENV["SLACK_SIGNING_SECRET"]
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == BASE_ENV["OPENAI_API_KEY"]
    assert settings.openai_extra_headers == {"X-Gateway-Key": "gw-key-1234"}
    assert settings.openai_extra_query == {"api_token": "tok-5678"}


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("OPENAI_API_KEY", "sk-first-half sk-second", "OPENAI_API_KEY must be one line of printable ASCII"),
        ("OPENAI_API_KEY", "sk-line-one\nsk-line-two", "OPENAI_API_KEY must be one line of printable ASCII"),
        ("SLACK_BOT_TOKEN", "xoxb-tok\ten-123", "SLACK_BOT_TOKEN must be one line of printable ASCII"),
        ("SLACK_SIGNING_SECRET", "sécret-signing-1", "SLACK_SIGNING_SECRET must be one line of printable ASCII"),
        ("SLACK_APP_TOKEN", " \n ", "SLACK_APP_TOKEN is empty"),
        ("OPENAI_EXTRA_HEADERS", '{"X-Key": "line\\nbreak-value"}', "OPENAI_EXTRA_HEADERS must have header values"),
        ("OPENAI_EXTRA_HEADERS", '{"X Key": "header-value-1"}', "OPENAI_EXTRA_HEADERS must name each header"),
    ],
)
def test_a_secret_no_header_can_carry_is_refused_without_echoing_it(
    environment: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    for key, base in BASE_ENV.items():
        environment.setenv(key, base)
    environment.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    message = str(caught.value)
    assert problem in message and "\n" not in message
    for piece in ("first-half", "line-one", "line-two", "tok", "cret-signing", "break-value", "header-value"):
        assert piece not in message


def test_repr_of_the_settings_hides_header_and_query_values_and_the_database_password(
    environment: pytest.MonkeyPatch,
) -> None:
    for key, value in BASE_ENV.items():
        environment.setenv(key, value)
    environment.setenv("OPENAI_EXTRA_HEADERS", '{"Ocp-Apim-Subscription-Key": "gw-subscription-4242"}')
    environment.setenv("OPENAI_EXTRA_QUERY", '{"api-version": "q-token-31337"}')
    environment.setenv("DATABASE_URL", "postgresql+asyncpg://bot:hunter2-db-pass@db.internal:5432/bot")
    settings = get_settings()
    for shown in (repr(settings), str(settings)):
        for secret in (*BASE_ENV.values(), "gw-subscription-4242", "q-token-31337", "hunter2-db-pass"):
            assert secret not in shown
        assert "Ocp-Apim-Subscription-Key" in shown and "db.internal:5432/bot" in shown  # still useful to read
    assert {"gw-subscription-4242", "q-token-31337", "hunter2-db-pass"} <= set(settings.secrets())


def test_logs_are_scrubbed_of_the_database_password_and_escaped_secrets(tmp_path: Path) -> None:
    """The process's own logging, configured from the environment as `python -m bot` does."""
    password = "p@ss/w0rd-db-secret"
    env = {**BASE_ENV, "LOG_LEVEL": "DEBUG", "DATABASE_URL": f"postgresql://bot:{quote(password, safe='')}@db/bot"}
    script = (
        "import logging\n"
        "from bot.logs import configure_logging\n"
        "from bot.settings import get_settings\n"
        "settings = get_settings()\n"
        "configure_logging(settings.log_level, settings.secrets())\n"
        "log = logging.getLogger('bot.store')\n"
        "log.error('cannot connect to %s', settings.database_url)\n"
        "log.error('password %r refused', settings.database_url.split(':')[2].split('@')[0])\n"
        "log.error('illegal header value %r', 'Bearer ' + settings.openai_api_key.get_secret_value() + '\\n')\n"
        "log.error('body %s', __import__('json').dumps({'key': settings.slack_bot_token.get_secret_value() + '\"'}))\n"
    )
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))}
    result = subprocess.run(
        [sys.executable, "-c", script], env={**clean, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("[redacted]") == 4, result.stderr
    for secret in (password, quote(password, safe=""), *BASE_ENV.values()):
        assert secret not in result.stderr, result.stderr


async def test_a_bot_given_secrets_with_trailing_newlines_answers(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(
        slack_bot_token=BOT_TOKEN + "\n", slack_signing_secret=SIGNING_SECRET + "\r\n", openai_api_key=OPENAI_KEY + "\n"
    )
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: hello"]

"""`python -m bot doctor`: every row against the doubles, with a healthy and a broken configuration.

Doctor runs as a real process (as an operator runs it) against the Slack and OpenAI doubles and a real
SQLite or PostgreSQL database; its `--json` rows are read back. It changes nothing: no migration, no file.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET

from bot.settings import MANIFEST_BOT_SCOPES
from bot.store.db import create_engine, migrate

REFUSING = "127.0.0.1:1"  # nothing listens there: refused at once
# The models the bot's settings name besides the assistant's and moderation's, which the double lacks.
OTHER_MODELS = ("whisper-1", "gpt-image-1", "text-embedding-3-small")
SECRETS = (BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET)


@pytest.fixture
def healthy(openai_double: Any, slack_double: Any, tmp_path: Path) -> dict[str, str]:
    """The environment of an install where everything is right: a migrated database, every model served."""
    with openai_double.core.lock:
        openai_double.core.family("models").models.update(dict.fromkeys(OTHER_MODELS, "system"))
    database = tmp_path / "data" / "bot.sqlite3"
    _migrate(f"sqlite:///{database}")
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_double.api_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_double.base_url,
        "OPENAI_MAX_RETRIES": "0",
        "DATABASE_URL": f"sqlite:///{database}",
    }


def _migrate(url: str, revision: str = "head") -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(run())


def doctor(
    environment: dict[str, str], cwd: Path, *, as_unprivileged: bool = False
) -> tuple[int, dict[str, dict[str, str]]]:
    """Run `python -m bot doctor --json`; its exit code and its rows by check name.

    ``as_unprivileged``: root writes any file, so as root the process runs without the capability to
    override file permissions, as a bot's own user would run.
    """
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))}
    prefix: list[str] = []
    if as_unprivileged and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux), no file is unwritable to this process")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "bot", "doctor", "--json"],
        env={**clean, **environment},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    rows = json.loads(result.stdout)
    assert all(set(row) == {"check", "status", "detail", "fix"} for row in rows)
    assert all(bool(row["fix"]) == (row["status"] == "problem") for row in rows)  # every problem says how to fix it
    return result.returncode, {row["check"]: row for row in rows}


def statuses(rows: dict[str, dict[str, str]]) -> dict[str, str]:
    return {check: row["status"] for check, row in rows.items()}


# Healthy -------------------------------------------------------------------------------------------


def test_a_healthy_install_is_ok_on_every_row(healthy, backend, tmp_path, openai_double) -> None:
    code, rows = doctor({**healthy, "OPENAI_BACKEND": backend}, tmp_path)
    expected = {
        "settings": "ok",
        "slack auth.test": "ok",
        "slack scopes": "ok",
        "slack events": "ok",
        "api key": "ok",
        "api backend": "ok",
        "api moderation": "ok",
        "api model": "ok",
        "api moderation model": "ok",
        "api transcription": "ok",
        "api transcription model": "ok",
        "api images": "ok",
        "api images model": "ok",
        "database": "ok",
        "database file": "ok",
        "database migrations": "ok",
    }
    if backend == "chat":
        expected["api embeddings"] = "ok"
    assert statuses(rows) == expected
    assert code == 0
    assert rows["slack auth.test"]["detail"] == "the token is the bot @assistant (U0BOT) of Team T0TEAM (T0TEAM)"
    assert rows["api backend"]["detail"] == f"the API serves {backend} routes"
    assert rows["api transcription"]["detail"] == "the API serves /audio/transcriptions"
    assert rows["api images"]["detail"] == "the API serves /images/generations"
    # Each route is probed with a request refused before any work: nothing transcribed, no image made.
    [transcription] = openai_double.requests_to("POST", r"^/v1/audio/transcriptions$")
    assert transcription.body["model"] == "whisper-1" and transcription.body["file"].filename == "doctor-probe.txt"
    [image] = openai_double.requests_to("POST", r"^/v1/images/generations$")
    assert image.body == {"model": "gpt-image-1", "prompt": "", "size": "0x0"}
    assert rows["slack events"]["detail"].startswith("HTTP mode: Slack must send events")
    assert not (tmp_path / "shell-files").exists()


def test_the_text_report_has_one_row_each_and_says_how_to_fix(healthy, tmp_path, slack_double) -> None:
    slack_double.grant_scopes([scope for scope in MANIFEST_BOT_SCOPES if scope != "users:read"])
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "doctor"],
        env={**clean, **healthy},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    [scopes] = [index for index, line in enumerate(lines) if line.split()[1:2] == ["slack"] and "scopes" in line]
    assert lines[scopes].startswith("PROBLEM  slack scopes")
    assert "users:read" in lines[scopes]
    assert lines[scopes + 1].strip().startswith("how to fix: add them under OAuth & Permissions")
    assert lines[0].startswith("OK       settings")
    assert lines[-1] == "1 problem found"


# Settings ------------------------------------------------------------------------------------------


def test_invalid_settings_are_one_problem_row(healthy, tmp_path) -> None:
    code, rows = doctor({**healthy, "OPENAI_API_KEY": "sk-...", "PORT": "seventy"}, tmp_path)
    assert code == 1
    assert list(rows) == ["settings"]
    assert "OPENAI_API_KEY is still the placeholder value" in rows["settings"]["detail"]
    assert "PORT" in rows["settings"]["detail"]


# Slack ---------------------------------------------------------------------------------------------


def test_a_refused_or_missing_slack_token_is_a_problem(healthy, tmp_path) -> None:
    code, rows = doctor({**healthy, "SLACK_BOT_TOKEN": "xoxb-not-the-token-1"}, tmp_path)
    assert code == 1
    assert rows["slack auth.test"]["status"] == "problem"
    assert rows["slack auth.test"]["detail"] == "SLACK_BOT_TOKEN was refused by Slack (invalid_auth)"
    assert rows["slack scopes"]["status"] == "skipped"

    unset = {key: value for key, value in healthy.items() if key != "SLACK_BOT_TOKEN"}
    code, rows = doctor(unset, tmp_path)
    assert code == 1
    assert rows["slack auth.test"]["detail"] == "SLACK_BOT_TOKEN is not set"
    assert "python -m bot shell" in rows["slack auth.test"]["fix"]


def test_missing_scopes_are_named(healthy, tmp_path, slack_double) -> None:
    slack_double.grant_scopes([s for s in MANIFEST_BOT_SCOPES if s not in ("files:read", "reactions:write")])
    code, rows = doctor(healthy, tmp_path)
    assert code == 1
    assert rows["slack scopes"]["status"] == "problem"
    assert rows["slack scopes"]["detail"] == (
        "the token lacks 2 of the scopes manifest.yml asks for: files:read, reactions:write"
    )


def test_the_events_mode_follows_the_settings(healthy, tmp_path, slack_double) -> None:
    http_without_secret = {key: value for key, value in healthy.items() if key != "SLACK_SIGNING_SECRET"}
    code, rows = doctor(http_without_secret, tmp_path)
    assert code == 1
    assert rows["slack events"]["status"] == "problem"
    assert "HTTP mode (SLACK_APP_TOKEN unset) without SLACK_SIGNING_SECRET" in rows["slack events"]["detail"]

    code, rows = doctor({**http_without_secret, "SLACK_APP_TOKEN": slack_double.app_token}, tmp_path)
    assert rows["slack events"] == {
        "check": "slack events",
        "status": "ok",
        "detail": "Socket Mode: Slack accepts SLACK_APP_TOKEN; no public URL is needed",
        "fix": "",
    }
    assert code == 0

    code, rows = doctor({**http_without_secret, "SLACK_APP_TOKEN": "xapp-not-the-app-token"}, tmp_path)
    assert code == 1
    assert rows["slack events"]["status"] == "problem"
    assert "SLACK_APP_TOKEN was refused by Slack (invalid_auth)" in rows["slack events"]["detail"]


# The API -------------------------------------------------------------------------------------------


def test_a_refused_key_or_an_unreachable_api_is_a_problem(healthy, tmp_path) -> None:
    code, rows = doctor({**healthy, "OPENAI_API_KEY": "sk-not-the-key-123"}, tmp_path)
    assert code == 1
    assert rows["api key"]["status"] == "problem"
    assert "refused the bot's credentials (HTTP 401)" in rows["api key"]["detail"]
    assert rows["api key"]["fix"] == "check OPENAI_API_KEY"
    assert rows["api backend"]["status"] == "skipped"

    code, rows = doctor({**healthy, "OPENAI_BASE_URL": f"http://{REFUSING}/v1"}, tmp_path)
    assert code == 1
    assert rows["api key"]["detail"] == f"could not reach the API at {REFUSING}"


def test_a_backend_the_server_does_not_serve_is_a_problem_naming_what_it_offers(
    healthy, tmp_path, openai_double
) -> None:
    openai_double.shape = "openai"  # api.openai.com since the Assistants API was shut down
    code, rows = doctor({**healthy, "OPENAI_BACKEND": "assistants"}, tmp_path)
    assert code == 1
    assert rows["api backend"]["status"] == "problem"
    assert "does not serve the assistants backend" in rows["api backend"]["detail"]
    assert "it offers: responses, chat" in rows["api backend"]["detail"]
    assert rows["api model"]["status"] == "ok"


def test_moderation_is_checked_only_when_enabled(healthy, tmp_path, openai_double) -> None:
    openai_double.shape = "bare_chat"  # a local model server: chat and embeddings, no moderation
    code, rows = doctor({**healthy, "OPENAI_BACKEND": "chat"}, tmp_path)
    assert code == 1
    assert rows["api moderation"]["status"] == "problem"
    assert "does not serve /moderations" in rows["api moderation"]["detail"]

    code, rows = doctor({**healthy, "OPENAI_BACKEND": "chat", "MODERATION": "off"}, tmp_path)
    assert rows["api moderation"] == {
        "check": "api moderation",
        "status": "skipped",
        "detail": "MODERATION=off",
        "fix": "",
    }
    assert "api moderation model" not in rows


def test_a_configured_model_the_server_lacks_is_named(healthy, tmp_path, openai_double) -> None:
    with openai_double.core.lock:
        del openai_double.core.family("models").models["whisper-1"]
    code, rows = doctor({**healthy, "ASSISTANT_MODEL": "gpt-9-imaginary"}, tmp_path)
    assert code == 1
    assert rows["api model"]["detail"] == "the API has no model gpt-9-imaginary (ASSISTANT_MODEL)"
    assert rows["api model"]["fix"] == "set ASSISTANT_MODEL to a model GET /models lists"
    assert rows["api transcription"]["status"] == "ok"  # the route is served, without the model
    assert rows["api transcription model"]["detail"] == "the API has no model whisper-1 (TRANSCRIPTION_MODEL)"
    assert rows["api images model"]["status"] == "ok"


def test_transcription_and_image_routes_the_server_lacks_are_problems(healthy, tmp_path, openai_double) -> None:
    openai_double.shape = "bare_chat"  # a local model server: chat and embeddings, no audio, no images
    code, rows = doctor({**healthy, "OPENAI_BACKEND": "chat", "MODERATION": "off"}, tmp_path)
    assert code == 1
    assert rows["api backend"]["status"] == "ok"
    assert rows["api transcription"]["status"] == "problem"
    assert rows["api transcription"]["detail"] == (
        f"the API at {openai_double.base_url.split('//')[1].removesuffix('/v1')} does not serve "
        "/audio/transcriptions, so voice and video clips people share are not transcribed"
    )
    assert rows["api images"]["status"] == "problem"
    assert rows["api images"]["detail"].endswith("does not serve /images/generations, so /imagine makes no images")
    assert "point OPENAI_BASE_URL at a server that serves /images/generations" in rows["api images"]["fix"]
    # The models of a route not served are not looked up.
    assert rows["api transcription model"] == {
        "check": "api transcription model",
        "status": "skipped",
        "detail": "/audio/transcriptions is not served",
        "fix": "",
    }
    assert rows["api images model"]["status"] == "skipped"


# The database --------------------------------------------------------------------------------------


def test_a_missing_sqlite_database_is_a_problem_and_is_not_created(healthy, tmp_path) -> None:
    database = tmp_path / "elsewhere" / "bot.sqlite3"
    code, rows = doctor({**healthy, "DATABASE_URL": f"sqlite:///{database}"}, tmp_path)
    assert code == 1
    assert rows["database"]["detail"] == f"there is no database at {database} yet"
    assert "python -m bot migrate" in rows["database"]["fix"]
    assert not database.parent.exists()


def test_migrations_behind_are_a_problem(healthy, tmp_path) -> None:
    database = tmp_path / "old.sqlite3"
    _migrate(f"sqlite:///{database}", "0005")
    code, rows = doctor({**healthy, "DATABASE_URL": f"sqlite:///{database}"}, tmp_path)
    assert code == 1
    assert rows["database"]["status"] == "ok"
    assert rows["database migrations"]["status"] == "problem"
    assert rows["database migrations"]["detail"].startswith("not current: at 0005, the code's are at ")


def test_an_unreachable_postgresql_is_a_problem(healthy, tmp_path) -> None:
    code, rows = doctor({**healthy, "DATABASE_URL": f"postgresql://bot:db-pass-1@{REFUSING}/bot"}, tmp_path)
    assert code == 1
    assert rows["database"]["detail"] == f"could not reach the database at {REFUSING}; check DATABASE_URL"
    assert rows["database migrations"]["status"] == "skipped"
    assert "db-pass-1" not in json.dumps(rows)


@pytest.mark.postgres
def test_a_migrated_postgresql_is_ok(healthy, tmp_path, postgres_database) -> None:
    _migrate(postgres_database)
    code, rows = doctor({**healthy, "DATABASE_URL": postgres_database}, tmp_path)
    assert code == 0, rows
    assert rows["database"]["status"] == "ok" and rows["database migrations"]["status"] == "ok"
    assert "database file" not in rows  # only a SQLite database is a file of the bot's


def test_a_sqlite_file_the_bot_cannot_write_is_a_problem(healthy, tmp_path) -> None:
    database = Path(healthy["DATABASE_URL"].removeprefix("sqlite:///"))
    database.chmod(0o444)
    database.parent.chmod(0o555)
    try:
        code, rows = doctor(healthy, tmp_path, as_unprivileged=True)
    finally:
        database.parent.chmod(0o755)
    assert code == 1
    assert rows["database file"]["status"] == "problem"
    assert rows["database file"]["detail"] == f"this user cannot write {database} nor {database.parent}"

"""The start-up check: a server that lacks the chosen backend's API (or /moderations) stops the bot in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET
from processes import start_bot_process
from test_settings_cli import run_cli


def _env(openai_double: Any, slack_double: Any, tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_double.api_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_double.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        **overrides,
    }


@pytest.mark.parametrize(
    ("shape", "backend", "offered"),
    [
        ("openai", "assistants", "it offers: responses, chat"),
        ("chat_only", "responses", "it offers: chat"),
        ("chat_only", "assistants", "it offers: chat"),
    ],
)
def test_a_backend_the_server_lacks_is_refused_naming_what_it_offers(
    openai_double: Any, slack_double: Any, tmp_path: Path, shape: str, backend: str, offered: str
) -> None:
    openai_double.shape = shape
    result = run_cli("run", env=_env(openai_double, slack_double, tmp_path, OPENAI_BACKEND=backend), cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"does not serve the {backend} backend" in lines[0] and offered in lines[0]
    assert "OPENAI_BACKEND" in lines[0]
    assert OPENAI_KEY not in result.stderr and "Traceback" not in result.stderr
    # The probes cost no tokens: nothing was asked of a model.
    assert openai_double.model_calls == 0
    assert not openai_double.requests_to("POST", r"^/v1/(responses|chat/completions|threads)")


async def test_moderation_needs_its_route(openai_double: Any, slack_double: Any, tmp_path: Path) -> None:
    openai_double.shape = "bare_chat"  # a local model server: chat and embeddings, no /moderations
    env = _env(openai_double, slack_double, tmp_path, OPENAI_BACKEND="chat")
    refused = run_cli("run", env=env, cwd=tmp_path)
    assert refused.returncode != 0
    assert "does not serve /moderations" in refused.stderr and "MODERATION=off" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    without_moderation = start_bot_process({**env, "MODERATION": "off"}, log_path=tmp_path / "bot.log")
    try:
        await without_moderation.wait_ready()
    finally:
        without_moderation.stop()


def test_an_unknown_backend_name_is_refused(openai_double: Any, slack_double: Any, tmp_path: Path) -> None:
    result = run_cli("run", env=_env(openai_double, slack_double, tmp_path, OPENAI_BACKEND="bard"), cwd=tmp_path)
    assert result.returncode != 0
    assert "OPENAI_BACKEND must be one of responses, assistants, chat" in result.stderr

"""A real bot process with LOG_FORMAT=json: one JSON object per line, with the work's ids, and no content unless asked."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET
from support.bot_processes import turn_statuses
from support.slack_view import bot_texts, post
from support.waiting import eventually
from support.workspace import BOT, CHANNEL

from bot.logs import REDACTED, JsonFormatter
from bot.store.db import create_engine

SECRET_PHRASE = "the plum tastes of marzipan"


def api_ids(openai_double: Any, backend: str) -> dict[str, str]:
    """The id of the API's object that answered, as the log names it (chat completions have none to follow)."""
    if backend == "responses":
        [response] = openai_double.core.family("responses").response_objects()
        return {"response": response["id"]}
    if backend == "assistants":
        [thread] = openai_double.threads()
        [run] = openai_double.runs_of(thread["id"])
        return {"run": run["id"]}
    return {}


async def recorded_ids(database_url: str) -> tuple[str, str]:
    """The conversation's and the turn's ids, as the database holds them."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            row = (await connection.exec_driver_sql("SELECT conversation_id, id FROM turns")).one()
    finally:
        await engine.dispose()
    return str(row[0]), str(row[1])


@pytest.mark.parametrize("log_content", [False, True], ids=["content-off", "content-on"])
async def test_json_logs_carry_the_ids_and_content_only_when_asked(
    bot_processes, backend, openai_double, slack_double, tmp_path, log_content: bool
) -> None:
    database_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    bot = bot_processes(database_url, LOG_FORMAT="json", LOG_LEVEL="DEBUG", LOG_CONTENT=str(log_content).lower())
    await bot.wait_ready()
    ts = (await post(bot, slack_double, f"<@{BOT}> {SECRET_PHRASE}")).ts
    await eventually(lambda: bot_texts(slack_double, CHANNEL, ts) == [f"Echo: Ada: {SECRET_PHRASE}"], what="answer")
    await eventually(lambda: _finished(database_url), what="turn finished")
    bot.terminate()
    assert await bot.exited() == 0

    text = bot.log()
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert any(record["level"] == "DEBUG" for record in records)  # DEBUG was on: the gate, not the level, hid content

    conversation_id, turn_id = await recorded_ids(database_url)
    [answered] = [record for record in records if record["message"].startswith("answered in ")]
    expected = {"team": "T0TEAM", "channel": CHANNEL, "conversation": conversation_id, "turn": turn_id}
    assert {key: answered.get(key) for key in expected} == expected
    ids = api_ids(openai_double, backend)
    assert {key: answered[key] for key in ("response", "run") if key in answered} == ids

    if log_content:
        [message] = [record for record in records if record["message"].startswith("message of turn")]
        assert message["message"] == f"message of turn {turn_id} from U0ADA: {SECRET_PHRASE}"
        assert any(record["message"] == f"answer: Echo: Ada: {SECRET_PHRASE}" for record in records)
    else:
        assert SECRET_PHRASE not in text
        assert "marzipan" not in text
    for secret in (BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET):
        assert secret not in text


async def _finished(database_url: str) -> bool:
    return await turn_statuses(database_url) == ["answered"]


def test_a_json_line_hides_secrets_in_every_escaped_form_and_stays_json() -> None:
    secret = 'sk-"quoted"\\key-123'
    formatter = JsonFormatter([secret])
    try:
        raise ValueError(f"refused {secret!r}")
    except ValueError:
        record = logging.LogRecord("bot.test", logging.ERROR, __file__, 1, "key %s, json %s", None, sys.exc_info())
    record.args = (secret, json.dumps(secret))
    line = formatter.format(record)
    entry = json.loads(line)
    assert "sk-" not in line and "quoted" not in line
    assert entry["message"] == f'key {REDACTED}, json "{REDACTED}"'
    assert "ValueError: refused '[redacted]'" in entry["exception"]
    assert (entry["level"], entry["logger"]) == ("ERROR", "bot.test")

"""The `bot_processes` fixture: real `python -m bot run` processes against the doubles, with the default timings.

Like `start_bot` it depends on the `backend` fixture: each test runs once per backend, the double shaped for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET
from processes import BotProcess, start_bot_process

from bot.store.db import create_engine


@pytest.fixture
def bot_processes(
    openai_double: Any, slack_double: Any, tmp_path: Path, backend: str
) -> Iterator[Callable[..., BotProcess]]:
    """Start processes (keyword arguments are environment settings); every one is killed at the end."""
    started: list[BotProcess] = []
    names = itertools.count(1)

    def start(database_url: str, **settings: str) -> BotProcess:
        environment = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_double.api_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": openai_double.base_url,
            "OPENAI_BACKEND": backend,
            "OPENAI_MAX_RETRIES": "2",
            "DATABASE_URL": database_url,
            "STREAM_UPDATE_SECONDS": "0",
            "USER_RATE_LIMIT": "1000",
            **settings,
        }
        process = start_bot_process(environment, log_path=tmp_path / f"bot-{next(names)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


async def turn_statuses(database_url: str) -> list[str]:
    """Every turn's status, oldest first, read straight from the database."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.exec_driver_sql("SELECT status FROM turns ORDER BY id")).scalars())
    finally:
        await engine.dispose()

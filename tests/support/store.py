"""The `store` fixture: a migrated store on each database the bot supports, for tests of the store's users."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.store.db import create_engine, migrate, session_factory
from bot.store.repositories import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield Store(session_factory(engine))
    await engine.dispose()

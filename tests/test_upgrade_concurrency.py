"""Upgrading: replicas that start together on one fresh PostgreSQL database all migrate it, one at a time, once."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from conftest import POSTGRES_URL
from sqlalchemy.engine import make_url
from support.waiting import eventually

from bot.store.db import MIGRATION_LOCK_KEY, migration_heads

pytestmark = pytest.mark.postgres

REPLICAS = 2
MIGRATE_SECONDS = 120


async def _connect(database: str) -> asyncpg.Connection:
    url = make_url(POSTGRES_URL)
    try:
        return await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=database
        )
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {url.host}:{url.port} is not reachable ({exc})")
        pytest.skip(f"PostgreSQL at {url.host}:{url.port} is not reachable ({exc})")


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """A database of its own on the local server, created empty for this test and dropped after it."""
    name = f"bot_upgrade_{uuid.uuid4().hex[:10]}"
    admin_database = make_url(POSTGRES_URL).database or "postgres"
    admin = await _connect(admin_database)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield name
    admin = await _connect(admin_database)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _start_migration(database_url: str, cwd: Path) -> asyncio.subprocess.Process:
    """`python -m bot migrate`, as each replica runs it on start."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))
    }
    environment |= {
        "SLACK_BOT_TOKEN": "xoxb-upgrade-test-token-1",
        "SLACK_SIGNING_SECRET": "upgrade-test-signing-secret",
        "OPENAI_API_KEY": "sk-upgrade-test-key-2",
        "DATABASE_URL": database_url,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "migrate",
        cwd=cwd,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _waiting_for_the_lock(observer: asyncpg.Connection) -> int:
    """How many sessions of this database wait for the migration lock."""
    count: int = await observer.fetchval(
        """
        SELECT count(*) FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((classid::bigint << 32) | objid::bigint) = $1
        """,
        MIGRATION_LOCK_KEY,
    )
    return count


async def test_replicas_starting_at_once_migrate_a_fresh_database_once(fresh_database: str, tmp_path: Path) -> None:
    database_url = make_url(POSTGRES_URL).set(database=fresh_database).render_as_string(hide_password=False)
    holder = await _connect(fresh_database)
    observer = await _connect(fresh_database)
    try:
        # The test holds the lock first, so that both replicas are surely at the same point, waiting for it,
        # before either migrates: then they are let go at the same moment.
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        replicas = [await _start_migration(database_url, tmp_path) for _ in range(REPLICAS)]
        await eventually(
            lambda: _all_waiting(observer, replicas), timeout=MIGRATE_SECONDS, what="both replicas waiting for the lock"
        )
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)

        outputs = await asyncio.wait_for(
            asyncio.gather(*(replica.communicate() for replica in replicas)), timeout=MIGRATE_SECONDS
        )
        for replica, (output, _) in zip(replicas, outputs, strict=True):
            assert replica.returncode == 0, output.decode(errors="replace")
            assert b"database is up to date" in output

        versions = [row["version_num"] for row in await observer.fetch("SELECT version_num FROM alembic_version")]
        assert sorted(versions) == sorted(migration_heads())
        tables = {row["tablename"] for row in await observer.fetch("SELECT tablename FROM pg_tables")}
        assert {"conversations", "turns", "moderation_events", "alembic_version"} <= tables
    finally:
        await holder.close()
        await observer.close()


async def _all_waiting(observer: asyncpg.Connection, replicas: list[asyncio.subprocess.Process]) -> bool:
    for replica in replicas:
        if replica.returncode is not None:
            output, _ = await replica.communicate()
            raise AssertionError(f"a replica ended before migrating:\n{output.decode(errors='replace')}")
    return await _waiting_for_the_lock(observer) == REPLICAS

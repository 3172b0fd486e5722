"""Engine and session factories, and applying migrations."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

import migrations
from bot.errors import ConfigurationError, StoreError

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
# A constant key for PostgreSQL's advisory lock, so replicas starting together migrate one at a time.
MIGRATION_LOCK_KEY = 7_311_042_026
# A readiness probe gives up on a database that does not answer within this (a hung one counts as down).
READINESS_SECONDS = 5.0


def async_url(url: str) -> str:
    """The URL with an async driver: plain postgresql:// and sqlite:// URLs work as given."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError and ValueError alike here
        raise ConfigurationError("DATABASE_URL is not a valid database URL") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        raise ConfigurationError("DATABASE_URL must be a sqlite:// or postgresql:// URL")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, connections: int | None = None) -> AsyncEngine:
    """An engine that survives dropped connections and, on SQLite, waits for writers.

    ``connections`` caps the pool at exactly that many (for a pool kept apart for a few urgent writes).
    """
    url = async_url(url)
    pool: dict[str, Any] = {} if connections is None else {"pool_size": connections, "max_overflow": 0}
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            _open_sqlite_file(database)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **({"pool_size": 5, "max_overflow": 5} | pool))


def _open_sqlite_file(database: str) -> None:
    """Make the file's folder and open it once, so that a path no database can live at is reported in one line.

    Left to aiosqlite (0.22), a failed open also prints a traceback from its worker thread when that
    finishes after the event loop has closed.
    """
    try:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(database).close()
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"could not open the database at {database} ({exc}); check DATABASE_URL") from exc


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers work during a write; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply pending migrations over the engine's own connection.

    On SQLite, foreign keys are off meanwhile: altering a table there means copying it and dropping
    the original, and with foreign keys on, dropping a parent table deletes its children's rows.
    """
    async with connected(engine) as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # outside a transaction, or it is ignored
            await connection.commit()
        try:
            async with connection.begin():
                if connection.dialect.name == "postgresql":
                    await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
                await connection.run_sync(_upgrade, revision)
        finally:
            if sqlite:
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()


@functools.cache
def migration_heads() -> frozenset[str]:
    """The revisions a database at head is at (read from migrations/ once)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


async def current_revisions(engine: AsyncEngine) -> frozenset[str]:
    """The migrations the database is at, read without applying any."""
    async with connected(engine) as connection:
        heads = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())
    return frozenset(heads)


async def readiness_problem(engine: AsyncEngine) -> str | None:
    """Why the database cannot serve this bot now (unreachable, or its migrations not current), or None."""
    try:
        async with asyncio.timeout(READINESS_SECONDS):
            current = await current_revisions(engine)
    except (StoreError, SQLAlchemyError, OSError, TimeoutError):
        return "the database cannot be reached"
    if current != migration_heads():
        return "the database's migrations are not current"
    return None


@contextlib.asynccontextmanager
async def connected(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection to the database; StoreError names where and the setting when none can be made.

    Only connecting is translated here. asyncpg raises OSError unwrapped (refused, no such host, timed
    out); SQLAlchemy wraps the server's refusals (credentials, no such database) and SQLite's.
    """
    try:
        connection = await engine.connect().start()
    except OSError as exc:
        raise StoreError(
            f"could not reach the database at {_database_location(engine.url)}; check DATABASE_URL"
        ) from exc
    except SQLAlchemyError as exc:
        raise StoreError(
            f"could not open the database at {_database_location(engine.url)} ({_first_line(exc, engine.url)}); "
            "check DATABASE_URL"
        ) from exc
    try:
        yield connection
    finally:
        await connection.close()


def _database_location(url: URL) -> str:
    """host:port of a server database, or the file of a SQLite one; never the credentials."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def _first_line(error: BaseException, url: URL) -> str:
    """The driver's own reason (e.g. 'database "bot" does not exist'), without the password."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    text = reason[0] if reason else type(error).__name__
    return text.replace(url.password, "**********") if url.password else text


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)

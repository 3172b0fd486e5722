"""The command line: `python -m bot run` starts the bot; `migrate` applies migrations; `purge` applies retention."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.errors import BotError, ConfigurationError
from bot.logs import configure_logging
from bot.moderation_report import positive_count
from bot.settings import Settings, get_settings


async def _migrate_only(database_url: str) -> None:
    from bot.store.db import create_engine, migrate

    engine = create_engine(database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def _purge_once(settings: Settings) -> int:
    from bot.app import build_backend, openai_client
    from bot.conversations.retention import RetentionPurger
    from bot.store.db import create_engine, migrate, session_factory
    from bot.store.repositories import Store

    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        store = Store(session_factory(engine))
        async with openai_client(settings) as client:
            backend = build_backend(settings, client=client, store=store)
            purger = RetentionPurger(store=store, backend=backend, retention_days=settings.retention_days)
            return await purger.purge_once()
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Slack assistant bot")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the bot (Socket Mode with SLACK_APP_TOKEN, else HTTP on $PORT)")
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    moderation_log = commands.add_parser("moderation-log", help="print recent moderation flags, newest first")
    moderation_log.add_argument("--limit", type=positive_count, default=50, help="how many flags to show (default 50)")
    moderation_log.add_argument("--team", help="only this Slack team (T...)")
    commands.add_parser("purge", help="delete conversations idle longer than RETENTION_DAYS once, and exit")
    arguments = parser.parse_args(argv)

    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secrets())
    try:
        if arguments.command == "migrate":
            asyncio.run(_migrate_only(settings.database_url))
            print("database is up to date")
        elif arguments.command == "moderation-log":
            from bot.moderation_report import format_flags, recent_flags

            flags = recent_flags(settings.database_url, limit=arguments.limit, team_id=arguments.team)
            print(format_flags(asyncio.run(flags)))
        elif arguments.command == "purge":
            if not settings.retention_days:
                print("configuration error: RETENTION_DAYS is 0 (keep forever); set it to purge", file=sys.stderr)
                return 2
            purged = asyncio.run(_purge_once(settings))
            print(f"purged {purged} conversations idle for more than {settings.retention_days} days")
        else:
            from bot.app import run_until_signalled

            asyncio.run(run_until_signalled(settings))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except BotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

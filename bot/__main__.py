"""The command line: `python -m bot run` starts the bot, `python -m bot migrate` applies migrations."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.errors import BotError, ConfigurationError
from bot.logs import configure_logging
from bot.settings import get_settings


async def _migrate_only(database_url: str) -> None:
    from bot.store.db import create_engine, migrate

    engine = create_engine(database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Slack assistant bot")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the bot (Socket Mode with SLACK_APP_TOKEN, else HTTP on $PORT)")
    commands.add_parser("migrate", help="apply pending database migrations and exit")
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

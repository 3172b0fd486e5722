"""The command line: `python -m bot run` starts the bot; `shell` talks to it in a terminal; `doctor` checks an
install; `migrate` applies migrations; `purge` applies retention."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.errors import BotError, ConfigurationError
from bot.feedback_report import positive_days
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
    feedback = commands.add_parser("feedback", help="print each channel's ratings of answers and latest comments")
    feedback.add_argument("--team", help="only this Slack team (T...)")
    feedback.add_argument("--since", type=positive_days, metavar="DAYS", help="only ratings of the last DAYS days")
    shell = commands.add_parser("shell", help="talk to the assistant in this terminal (needs no Slack settings)")
    shell.add_argument("--new", action="store_true", help="start the conversation afresh")
    shell.add_argument(
        "--files-dir", type=Path, default=Path("shell-files"), help="where files the assistant makes are saved"
    )
    doctor = commands.add_parser("doctor", help="check the settings, Slack, the API and the database, and exit")
    doctor.add_argument("--json", action="store_true", help="print the checks as a JSON list")
    arguments = parser.parse_args(argv)

    try:
        settings = get_settings()
    except ConfigurationError as exc:
        if arguments.command == "doctor":
            from bot.doctor import render, settings_problem

            print(render([settings_problem(exc)], as_json=arguments.json))
            return 1
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    quiet = arguments.command in ("shell", "doctor") and "log_level" not in settings.model_fields_set
    configure_logging(
        "WARNING" if quiet else settings.log_level,  # their output is the terminal's; logs only say what went wrong
        settings.secrets(),
        json_lines=settings.log_format == "json",
        content=settings.log_content,
    )
    try:
        if arguments.command == "migrate":
            asyncio.run(_migrate_only(settings.database_url))
            print("database is up to date")
        elif arguments.command == "moderation-log":
            from bot.moderation_report import format_flags, recent_flags

            flags = recent_flags(settings.database_url, limit=arguments.limit, team_id=arguments.team)
            print(format_flags(asyncio.run(flags)))
        elif arguments.command == "feedback":
            from bot.feedback_report import channel_feedback, format_feedback

            found = channel_feedback(settings.database_url, team_id=arguments.team, since_days=arguments.since)
            print(format_feedback(asyncio.run(found)))
        elif arguments.command == "purge":
            if not settings.retention_days:
                print("configuration error: RETENTION_DAYS is 0 (keep forever); set it to purge", file=sys.stderr)
                return 2
            purged = asyncio.run(_purge_once(settings))
            print(f"purged {purged} conversations idle for more than {settings.retention_days} days")
        elif arguments.command == "shell":
            from bot.shell.repl import run_shell

            asyncio.run(run_shell(settings, new=arguments.new, files_dir=arguments.files_dir))
        elif arguments.command == "doctor":
            from bot.doctor import diagnose, has_problem, render

            rows = asyncio.run(diagnose(settings))
            print(render(rows, as_json=arguments.json))
            return 1 if has_problem(rows) else 0
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

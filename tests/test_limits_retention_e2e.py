"""Limits and retention end to end: refused messages cost no API call; idle conversations are purged."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET
from sqlalchemy import func, select, update
from support.file_view import KEEPS_FILES_ON_SERVER
from support.model_view import server_memories
from support.samples import pdf_with_text
from support.slack_view import bot_texts
from support.waiting import eventually
from support.workspace import BOT, CHANNEL, DM

from bot.conversations.retention import RetentionPurger
from bot.store.channels import ChannelStore
from bot.store.models import ApiFile, AppState, ChatMessage, Conversation, DocumentChunk, RetiredState, TurnRecord
from bot.store.repositories import utcnow
from bot.store.retention import RetentionRepository

REPO = Path(__file__).resolve().parents[1]


def newest_user_texts(openai) -> list[str]:
    """The newest user text of each model call: what each answer was asked, on any backend."""
    return [[text for role, text in call if role == "user"][-1] for call in openai.model_inputs()]


# Limits ---------------------------------------------------------------------------------------


async def test_a_message_over_the_length_limit_is_refused_without_an_api_call(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(max_input_chars=40)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> " + "a very long question " * 3)
    assert bot_texts(slack_double, CHANNEL, ts) == [
        "Your message is 62 characters long; I can read at most 40. Please shorten it or send it in parts."
    ]
    assert openai_double.model_calls == 0
    await bot.say(CHANNEL, "U0ADA", "short one", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Echo: Ada: short one"
    assert newest_user_texts(openai_double) == ["Ada: short one"]


async def test_too_many_files_are_refused_before_any_download(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(max_files_per_message=1)
    files = [
        slack_double.add_file(name, b"some text", user="U0ADA", mimetype="text/plain") for name in ("a.txt", "b.txt")
    ]
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> read both", files=files)
    assert bot_texts(slack_double, CHANNEL, ts) == [
        "You shared 2 files in one message; I can take at most 1. Please send fewer at a time."
    ]
    assert openai_double.requests == []
    assert [call.method for call in slack_double.calls if call.method.startswith("files.")] == []


TOO_FAST_FOR_TWO = (
    "You've sent me more than 2 messages in the last minute, so I'm skipping your messages until you slow down. "
    "Please wait a moment, then try again."
)


async def test_a_person_over_the_rate_limit_is_told_once_privately_and_others_are_not(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(user_rate_limit=2)
    for text in ("one", "two", "three", "four", "five"):
        await bot.say(DM, "U0ADA", text)
    first = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> six, in the channel")
    assert bot_texts(slack_double, DM) == ["Echo: one", "Echo: two"]  # nothing public for the refused
    assert bot_texts(slack_double, CHANNEL, first) == []
    assert [notice["text"] for notice in slack_double.ephemeral(DM) + slack_double.ephemeral(CHANNEL)] == [
        TOO_FAST_FOR_TWO
    ]
    assert slack_double.ephemeral(DM, "U0ADA")  # only Ada sees it
    ts = await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> my first")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Bob: my first"]
    assert newest_user_texts(openai_double) == ["one", "two", "Bob: my first"]
    async with bot.bot.store.transaction() as session:
        statuses = list(await session.scalars(select(TurnRecord.status).order_by(TurnRecord.id)))
    assert statuses == ["answered"] * 7  # refused turns are closed, never left pending for recovery


async def test_a_person_still_too_fast_a_window_later_is_told_again_once(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(user_rate_limit=2)
    for text in ("one", "two", "three", "four"):
        await bot.say(DM, "U0ADA", text)
    assert len(slack_double.ephemeral(DM, "U0ADA")) == 1
    # A window later (every record of it aged by two minutes), Ada floods again.
    async with bot.bot.store.transaction() as session:
        await session.execute(update(TurnRecord).values(created_at=TurnRecord.created_at - timedelta(minutes=2)))
        told = await session.scalar(select(AppState).where(AppState.key.like("rate-notice:%")))
        told.value = (datetime.fromisoformat(told.value) - timedelta(minutes=2)).isoformat()
    for text in ("five", "six", "seven", "eight"):
        await bot.say(DM, "U0ADA", text)
    assert bot_texts(slack_double, DM) == ["Echo: one", "Echo: two", "Echo: five", "Echo: six"]
    assert [notice["text"] for notice in slack_double.ephemeral(DM, "U0ADA")] == [TOO_FAST_FOR_TWO] * 2


# Retention ------------------------------------------------------------------------------------

OLD_NOTES = pdf_with_text("Notes from long ago.")


async def _age(store, conversation_id: int, days: int) -> None:
    async with store.transaction() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(last_message_at=utcnow() - timedelta(days=days))
        )


async def _conversation_id(store, thread_key: str) -> int:
    conversation = await store.find_conversation(team_id="T0TEAM", channel_id=CHANNEL, thread_key=thread_key)
    assert conversation is not None
    return conversation.id


async def kept_memories(bot, openai_double, backend: str) -> set[str]:
    """What is kept of conversations' memories, wherever the backend keeps it: threads or conversations,
    files and vector stores on the server; chat histories and their passages in the bot's database."""
    objects = [*openai_double.files(), *openai_double.vector_stores()]
    on_server = {*server_memories(openai_double, backend), *(item["id"] for item in objects)}
    async with bot.bot.store.transaction() as session:
        histories = {
            *await session.scalars(select(ChatMessage.history_id)),
            *await session.scalars(select(DocumentChunk.history_id)),
        }
    return on_server | {f"chat history {history_id}" for history_id in histories}


async def _old_conversation_with_everything(bot, slack_double) -> tuple[str, int]:
    """A mention answered long ago, with a document shared in it, whose first memory was retired (as
    `/assistant new` does) and a second one begun."""
    notes = slack_double.add_file("old-notes.pdf", OLD_NOTES, user="U0ADA")
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> an old question", files=[notes])
    store = bot.bot.store
    conversation_id = await _conversation_id(store, ts)
    await ChannelStore(store).retire_state(conversation_id, since_ts=ts)
    await bot.say(CHANNEL, "U0ADA", "and a second memory", thread_ts=ts)
    await _age(store, conversation_id, days=40)
    return ts, conversation_id


async def _rows_of(store, conversation_id: int) -> dict[str, int]:
    counts = {}
    async with store.transaction() as session:
        for name, column in (
            ("conversations", Conversation.id),
            ("turns", TurnRecord.conversation_id),
            ("retired_states", RetiredState.conversation_id),
            ("api_files", ApiFile.conversation_id),
            ("chat_messages", ChatMessage.conversation_id),
        ):
            counts[name] = await session.scalar(select(func.count()).where(column == conversation_id))
    return counts


async def test_retention_purges_idle_conversations_with_their_memories(
    start_bot, slack_double, openai_double, backend, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    old_ts, old_id = await _old_conversation_with_everything(bot, slack_double)
    old_memories = await kept_memories(bot, openai_double, backend)
    # Its two memories (retired and current) and, where files live on the server, the document's file and store.
    assert len(old_memories) == (4 if KEEPS_FILES_ON_SERVER[backend] else 2)
    assert (await _rows_of(bot.bot.store, old_id))["retired_states"] == 1
    recent_ts = await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> a recent question")
    recent_id = await _conversation_id(bot.bot.store, recent_ts)
    recent_memories = await kept_memories(bot, openai_double, backend) - old_memories
    assert len(recent_memories) == 1

    purger = RetentionPurger(store=bot.bot.store, backend=bot.bot.backend, retention_days=30)
    assert await purger.purge_once() == 1

    assert await kept_memories(bot, openai_double, backend) == recent_memories
    assert await _rows_of(bot.bot.store, old_id) == {
        "conversations": 0,
        "turns": 0,
        "retired_states": 0,
        "api_files": 0,
        "chat_messages": 0,
    }
    assert (await _rows_of(bot.bot.store, recent_id))["turns"] == 1
    await bot.say(CHANNEL, "U0BOB", "still here?", thread_ts=recent_ts)
    assert bot_texts(slack_double, CHANNEL, recent_ts)[-1] == "Echo: Bob: still here?"
    assert await kept_memories(bot, openai_double, backend) == recent_memories  # it went on in the same memory
    old_answers = bot_texts(slack_double, CHANNEL, old_ts)  # Slack keeps what it showed
    assert len(old_answers) == 2 and old_answers[0].startswith("Echo: Ada: an old question")


@pytest.mark.backends(
    "assistants", "responses", reason="chat keeps its memories in the bot's own database: no API deletion to refuse"
)
async def test_a_refused_api_deletion_keeps_the_conversation_for_the_next_purge(
    start_bot, slack_double, openai_double, backend, database_url
) -> None:
    bot = await start_bot(database_url=database_url, openai_max_retries=0)
    _, old_id = await _old_conversation_with_everything(bot, slack_double)
    assert await kept_memories(bot, openai_double, backend)
    purger = RetentionPurger(store=bot.bot.store, backend=bot.bot.backend, retention_days=30)
    openai_double.fail_next("DELETE", r"^/v1/files/", status=500)
    assert await purger.purge_once() == 0
    assert (await _rows_of(bot.bot.store, old_id))["conversations"] == 1
    assert await purger.purge_once() == 1  # what the first purge deleted already counts as gone (404)
    assert await kept_memories(bot, openai_double, backend) == set()
    assert (await _rows_of(bot.bot.store, old_id))["conversations"] == 0


async def test_a_conversation_that_wakes_up_during_the_purge_keeps_its_messages(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> old")
    conversation_id = await _conversation_id(bot.bot.store, ts)
    await _age(bot.bot.store, conversation_id, days=40)
    cutoff = utcnow() - timedelta(days=30)
    repository = RetentionRepository(bot.bot.store)
    assert [found.id for found in await repository.idle_conversations(cutoff, limit=10)] == [conversation_id]
    await bot.say(CHANNEL, "U0ADA", "a new message meanwhile", thread_ts=ts)
    assert await repository.delete_if_idle(conversation_id, cutoff) is False
    assert (await _rows_of(bot.bot.store, conversation_id))["turns"] == 2
    assert (
        await bot.bot.store.get_conversation(conversation_id)
    ).backend_state is None  # the next answer starts afresh


def test_the_purge_command_runs_once_and_refuses_without_retention(tmp_path: Path, openai_server, slack_server) -> None:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_server.api_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_server.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
    }
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_", "RETENTION_"))
    }

    def purge(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "purge"],
            env={**clean, **env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = purge()
    assert refused.returncode == 2 and "RETENTION_DAYS is 0" in refused.stderr
    done = purge(RETENTION_DAYS="30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "purged 0 conversations idle for more than 30 days"
    for secret in (BOT_TOKEN, SIGNING_SECRET, OPENAI_KEY):
        assert secret not in done.stdout + done.stderr + refused.stdout + refused.stderr


async def test_a_bot_with_retention_days_purges_on_its_own(start_bot, slack_double, openai_double, backend) -> None:
    first = await start_bot()
    ts = await first.say(CHANNEL, "U0ADA", f"<@{BOT}> from long ago")
    conversation_id = await _conversation_id(first.bot.store, ts)
    assert len(await kept_memories(first, openai_double, backend)) == 1
    await _age(first.bot.store, conversation_id, days=40)
    await first.stop()

    again = await start_bot(retention_days=30)

    async def purged() -> bool:
        return (await _rows_of(again.bot.store, conversation_id))["conversations"] == 0

    await eventually(purged, what="the purge at start")
    assert await kept_memories(again, openai_double, backend) == set()

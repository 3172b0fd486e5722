"""Limits and retention end to end: refused messages cost no API call; idle conversations are purged."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from bot.conversations.retention import OpenAIObjects, RetentionPurger
from bot.openai_api.client import OpenAIClient
from bot.openai_api.files import FilesAPI
from bot.store.models import ApiFile, Conversation, RetiredThread, TurnRecord
from bot.store.repositories import utcnow
from bot.store.retention import RetentionRepository
from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET
from support.slack_view import bot_texts
from support.waiting import eventually
from support.workspace import BOT, CHANNEL, DM

REPO = Path(__file__).resolve().parents[1]


def added_messages(openai) -> list:
    return openai.requests_to("POST", r"^/v1/threads/[^/]+/messages$")


# Limits ---------------------------------------------------------------------------------------


async def test_a_message_over_the_length_limit_is_refused_without_an_api_call(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(max_input_chars=40)
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> " + "a very long question " * 3)
    assert bot_texts(slack_double, CHANNEL, ts) == [
        "Your message is 62 characters long; I can read at most 40. Please shorten it or send it in parts."
    ]
    assert openai_double.requests == []
    await bot.say(CHANNEL, "U0ADA", "short one", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Echo: Ada: short one"
    assert [request.body["content"] for request in added_messages(openai_double)] == ["Ada: short one"]


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


async def test_a_person_over_the_rate_limit_is_refused_and_others_are_not(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(user_rate_limit=2)
    for text in ("one", "two", "three"):
        await bot.say(DM, "U0ADA", text)
    assert bot_texts(slack_double, DM) == [
        "Echo: one",
        "Echo: two",
        "You've sent me more than 2 messages in the last minute. Please wait a moment, then try again.",
    ]
    ts = await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> my first")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Bob: my first"]
    assert [request.body["content"] for request in added_messages(openai_double)] == ["one", "two", "Bob: my first"]
    async with bot.bot.store.transaction() as session:
        statuses = list(await session.scalars(select(TurnRecord.status).order_by(TurnRecord.id)))
    assert statuses == ["answered"] * 4  # refused turns are closed, never left pending for recovery


# Retention ------------------------------------------------------------------------------------


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


async def _old_conversation_with_everything(bot, openai_double, client: OpenAIClient) -> tuple[str, int, set[str]]:
    """A mention answered long ago, which also has a retired thread, an uploaded file and a vector store."""
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> an old question")
    store = bot.bot.store
    conversation_id = await _conversation_id(store, ts)
    retired = await client.create_thread()
    uploaded = await FilesAPI(client).upload(name="notes.txt", data=b"old notes", mimetype="text/plain", purpose="assistants")
    vector_store = await FilesAPI(client).create_vector_store(name="old documents", metadata={})
    async with store.transaction() as session:
        session.add(RetiredThread(conversation_id=conversation_id, team_id="T0TEAM", api_thread_id=retired.id))
        session.add(
            ApiFile(
                team_id="T0TEAM", channel_id=CHANNEL, slack_file_id="F0OLD", conversation_id=conversation_id,
                api_file_id=uploaded.id, purpose="assistants", filename="notes.txt",
            )
        )
        await session.execute(
            update(Conversation).where(Conversation.id == conversation_id).values(vector_store_id=vector_store.id)
        )
    await _age(store, conversation_id, days=40)
    current = (await store.get_conversation(conversation_id)).api_thread_id
    return ts, conversation_id, {current, retired.id, uploaded.id, vector_store.id}


async def _rows_of(store, conversation_id: int) -> dict[str, int]:
    counts = {}
    async with store.transaction() as session:
        for name, column in (
            ("conversations", Conversation.id), ("turns", TurnRecord.conversation_id),
            ("retired_threads", RetiredThread.conversation_id), ("api_files", ApiFile.conversation_id),
        ):
            counts[name] = await session.scalar(select(func.count()).where(column == conversation_id))
    return counts


def _api_object_ids(openai_double) -> set[str]:
    objects = [*openai_double.threads(), *openai_double.files(), *openai_double.vector_stores()]
    return {item["id"] for item in objects}


async def test_retention_purges_idle_conversations_with_their_api_objects(
    start_bot, slack_double, openai_double, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    async with OpenAIClient(api_key=OPENAI_KEY, base_url=openai_double.base_url) as client:
        old_ts, old_id, old_objects = await _old_conversation_with_everything(bot, openai_double, client)
        recent_ts = await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> a recent question")
        recent_id = await _conversation_id(bot.bot.store, recent_ts)
        recent_thread = (await bot.bot.store.get_conversation(recent_id)).api_thread_id
        assert old_objects <= _api_object_ids(openai_double)

        purger = RetentionPurger(store=bot.bot.store, api=OpenAIObjects(client), retention_days=30)
        assert await purger.purge_once() == 1

    assert not old_objects & _api_object_ids(openai_double)
    assert recent_thread in _api_object_ids(openai_double)
    assert await _rows_of(bot.bot.store, old_id) == {"conversations": 0, "turns": 0, "retired_threads": 0, "api_files": 0}
    assert (await _rows_of(bot.bot.store, recent_id))["turns"] == 1
    await bot.say(CHANNEL, "U0BOB", "still here?", thread_ts=recent_ts)
    assert bot_texts(slack_double, CHANNEL, recent_ts)[-1] == "Echo: Bob: still here?"
    assert bot_texts(slack_double, CHANNEL, old_ts) == ["Echo: Ada: an old question"]  # Slack keeps what it showed


async def test_a_refused_api_deletion_keeps_the_conversation_for_the_next_purge(
    start_bot, slack_double, openai_double, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    async with OpenAIClient(api_key=OPENAI_KEY, base_url=openai_double.base_url, max_retries=0) as client:
        _, old_id, old_objects = await _old_conversation_with_everything(bot, openai_double, client)
        purger = RetentionPurger(store=bot.bot.store, api=OpenAIObjects(client), retention_days=30)
        openai_double.fail_next("DELETE", r"^/v1/files/", status=500)
        assert await purger.purge_once() == 0
        assert (await _rows_of(bot.bot.store, old_id))["conversations"] == 1
        assert await purger.purge_once() == 1  # the threads already deleted count as gone (404)
    assert not old_objects & _api_object_ids(openai_double)
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
    assert (await bot.bot.store.get_conversation(conversation_id)).api_thread_id is None  # the next answer starts afresh


def test_the_purge_command_runs_once_and_refuses_without_retention(tmp_path: Path, openai_server, slack_server) -> None:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_server.api_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_server.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
    }
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_", "RETENTION_"))}

    def purge(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "purge"], env={**clean, **env, **extra}, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )

    refused = purge()
    assert refused.returncode == 2 and "RETENTION_DAYS is 0" in refused.stderr
    done = purge(RETENTION_DAYS="30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "purged 0 conversations idle for more than 30 days"
    for secret in (BOT_TOKEN, SIGNING_SECRET, OPENAI_KEY):
        assert secret not in done.stdout + done.stderr + refused.stdout + refused.stderr


async def test_a_bot_with_retention_days_purges_on_its_own(start_bot, slack_double, openai_double) -> None:
    first = await start_bot()
    ts = await first.say(CHANNEL, "U0ADA", f"<@{BOT}> from long ago")
    conversation_id = await _conversation_id(first.bot.store, ts)
    thread_id = (await first.bot.store.get_conversation(conversation_id)).api_thread_id
    await _age(first.bot.store, conversation_id, days=40)
    await first.stop()

    again = await start_bot(retention_days=30)

    async def purged() -> bool:
        return (await _rows_of(again.bot.store, conversation_id))["conversations"] == 0

    await eventually(purged, what="the purge at start")
    assert thread_id not in _api_object_ids(openai_double)

"""End to end: files are safe to share. A file another conversation reuses survives forgetting and purging;
the text inside documents and data files is moderated; the bytes a message or an answer holds are bounded.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from conftest import SIGNING_SECRET
from doubles.openai import ScriptedRun
from doubles.slack_events import block_action_body, deliver_form, slash_command_body
from sqlalchemy import select, update
from support.file_view import images_seen, searched_file_ids, uploads
from support.samples import PNG, pdf_with_text
from support.slack_view import bot_texts
from support.workspace import ADA, BOB, BOT, CHANNEL

from bot.conversations.moderation import DOCUMENT_CHARS_PER_MESSAGE, DOCUMENT_PIECE_CHARS, TOO_LONG_TO_CHECK
from bot.conversations.retention import RetentionPurger
from bot.store.models import ApiFile, ApiFileUse, Conversation
from bot.store.moderation_log import ModerationLog
from bot.store.repositories import utcnow

TEAM = "T0TEAM"
NO_FILES_ON_SERVER = "the chat backend keeps no files on the server: there is nothing another conversation shares"
REPORT = pdf_with_text("Q3 revenue grew 5%.", "Costs were flat.")
MODERATIONS = r"^/v1/moderations$"
_triggers = itertools.count(1)


async def share(bot, slack, name: str, content: bytes, *, text: str = "have a look") -> str:
    file = slack.add_file(name, content, user=ADA)
    return await bot.say(CHANNEL, ADA, f"<@{BOT}> {text}", files=[file])


def bot_files(slack, thread_ts: str) -> list[dict]:
    return [f for m in slack.messages(CHANNEL, thread_ts=thread_ts) if m.get("bot_id") for f in m.get("files", [])]


async def forget_most_recent(bot, slack, *, user: str = ADA) -> str:
    """`/assistant forget` in the channel (its most recently active conversation), then the confirm click."""
    command = slash_command_body(
        "/assistant",
        "forget",
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=user,
        response_url=slack.new_response_url(channel=CHANNEL, user=user),
        trigger_id=f"trigger-{next(_triggers)}",
    )
    assert (await deliver_form(bot.url, command, SIGNING_SECRET)).status_code == 200
    await bot.settle()
    question = slack.ephemeral(CHANNEL, user)[-1]
    confirm = next(e for e in question["blocks"][1]["elements"] if e["action_id"] == "forget_confirm")
    click = block_action_body(
        action_id="forget_confirm",
        value=confirm["value"],
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=user,
        message=question,
        response_url=slack.new_response_url(channel=CHANNEL, user=user),
        trigger_id=f"trigger-{next(_triggers)}",
    )
    assert (await deliver_form(bot.url, click, SIGNING_SECRET)).status_code == 200
    await bot.settle()
    return slack.ephemeral(CHANNEL, user)[-1]["text"]


async def conversation_id(bot, thread_key: str) -> int:
    conversation = await bot.bot.store.find_conversation(team_id=TEAM, channel_id=CHANNEL, thread_key=thread_key)
    assert conversation is not None
    return conversation.id


async def file_users(bot) -> dict[str, set[int]]:
    """API file id -> the conversations the bot counts as using it, as recorded."""
    async with bot.bot.store.transaction() as session:
        records = list(await session.scalars(select(ApiFile)))
        uses = list(await session.scalars(select(ApiFileUse)))
    return {
        record.api_file_id: {use.conversation_id for use in uses if use.record_id == record.id} for record in records
    }


# Shared files: deleted only with their last user ---------------------------------------------------------


@pytest.mark.backends("assistants", "responses", reason=NO_FILES_ON_SERVER)
async def test_forgetting_a_conversation_keeps_the_file_another_conversation_reuses(
    start_bot, slack_double, openai_double, backend, database_url
) -> None:
    bot = await start_bot(database_url=database_url, admin_user_ids=[ADA])
    report = slack_double.add_file("report.pdf", REPORT, user=ADA)
    first = await bot.say(CHANNEL, ADA, f"<@{BOT}> summarise it", files=[report])
    second = await bot.say(CHANNEL, BOB, f"<@{BOT}> what about costs?", files=[report["id"]])
    [api_file] = openai_double.files()
    assert len(uploads(openai_double)) == 1  # the second conversation reuses the first one's upload
    second_id = await conversation_id(bot, second)
    assert await file_users(bot) == {api_file["id"]: {await conversation_id(bot, first), second_id}}
    await bot.say(CHANNEL, ADA, "thanks", thread_ts=first)  # the first is the channel's most recent again

    assert (await forget_most_recent(bot, slack_double)).startswith("Forgotten:")
    assert [file["id"] for file in openai_double.files()] == [api_file["id"]]
    assert await file_users(bot) == {api_file["id"]: {second_id}}
    await bot.say(CHANNEL, BOB, "and the revenue?", thread_ts=second)
    assert bot_texts(slack_double, CHANNEL, second)[-1] == "Echo: Bob: and the revenue?"
    assert searched_file_ids(openai_double, backend) == [api_file["id"]]
    # Shared once more, in a new thread, it is still reused: the record outlived its uploader.
    third = await bot.say(CHANNEL, ADA, f"<@{BOT}> once more", files=[report["id"]])
    assert len(uploads(openai_double)) == 1
    assert searched_file_ids(openai_double, backend) == [api_file["id"]]
    assert await file_users(bot) == {api_file["id"]: {second_id, await conversation_id(bot, third)}}

    await forget_most_recent(bot, slack_double)  # the third conversation
    assert [file["id"] for file in openai_double.files()] == [api_file["id"]]
    assert await file_users(bot) == {api_file["id"]: {second_id}}
    await forget_most_recent(bot, slack_double)  # the second, its last user
    assert openai_double.files() == [] and openai_double.vector_stores() == []
    assert await file_users(bot) == {}


@pytest.mark.backends("assistants", "responses", reason=NO_FILES_ON_SERVER)
async def test_purging_an_idle_conversation_keeps_the_file_a_recent_one_reuses(
    start_bot, slack_double, openai_double, backend, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    report = slack_double.add_file("report.pdf", REPORT, user=ADA)
    old = await bot.say(CHANNEL, ADA, f"<@{BOT}> long ago", files=[report])
    recent = await bot.say(CHANNEL, BOB, f"<@{BOT}> today", files=[report["id"]])
    [api_file] = openai_double.files()
    async with bot.bot.store.transaction() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == await conversation_id(bot, old))
            .values(last_message_at=utcnow() - timedelta(days=40))
        )

    purger = RetentionPurger(store=bot.bot.store, backend=bot.bot.backend, retention_days=30)
    assert await purger.purge_once() == 1
    assert [file["id"] for file in openai_double.files()] == [api_file["id"]]
    await bot.say(CHANNEL, BOB, "still readable?", thread_ts=recent)
    assert bot_texts(slack_double, CHANNEL, recent)[-1] == "Echo: Bob: still readable?"
    assert searched_file_ids(openai_double, backend) == [api_file["id"]]

    async with bot.bot.store.transaction() as session:
        await session.execute(update(Conversation).values(last_message_at=utcnow() - timedelta(days=40)))
    assert await purger.purge_once() == 1
    assert openai_double.files() == [] and await file_users(bot) == {}


# The text inside documents and data files is moderated before any backend sees it ---------------------

THREAT = "the plan to hurt someone"


def ephemeral_texts(slack, user: str = ADA) -> list[str]:
    return [message["text"] for message in slack.ephemeral(CHANNEL, user)]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("minutes.txt", f"Minutes of Monday.\n\nItem 4: {THREAT}.\n".encode()),
        ("report.pdf", pdf_with_text("Q3 revenue grew 5%.", f"Appendix: {THREAT}.")),
        ("sales.csv", f"month,note\nJan,fine\nFeb,{THREAT}\n".encode()),
    ],
)
async def test_a_document_with_flagged_text_blocks_the_message_like_flagged_text(
    start_bot, slack_double, openai_double, backend, name, content
) -> None:
    openai_double.moderation_flags = {"hurt someone": ["violence"]}
    bot = await start_bot()
    file = slack_double.add_file(name, content, user=ADA)
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> please summarise this", files=[file])

    assert openai_double.model_calls == 0 and uploads(openai_double) == []
    assert bot_texts(slack_double, CHANNEL, ts) == []
    [notice] = ephemeral_texts(slack_double)
    assert "didn't pass a file you shared to the assistant" in notice and "violence" in notice
    [flag] = await ModerationLog(bot.bot.store).recent(limit=5)
    assert (flag.direction, flag.source, flag.categories) == ("input", "document", ["violence"])
    assert flag.flagged_text is None  # MODERATION_KEEP_TEXT is off
    checked = [request.body["input"] for request in openai_double.requests_to("POST", MODERATIONS)]
    assert any(isinstance(pieces, list) and any(THREAT in piece for piece in pieces) for pieces in checked)

    await bot.say(CHANNEL, ADA, "fine, just tell me the date", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: fine, just tell me the date"]
    assert not any(THREAT in text for seen in openai_double.model_inputs() for _, text in seen)


async def test_a_flag_split_between_two_pieces_of_a_long_document_is_still_caught(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.moderation_flags = {"hurt someone": ["violence"]}
    bot = await start_bot()
    # The phrase straddles the end of the first piece that moderation reads.
    padding = "a" * (DOCUMENT_PIECE_CHARS - len("the plan to hurt"))
    ts = await share(bot, slack_double, "long.txt", f"{padding}{THREAT} and more".encode())
    assert openai_double.model_calls == 0 and bot_texts(slack_double, CHANNEL, ts) == []
    assert "a file you shared" in ephemeral_texts(slack_double)[-1]


async def test_a_document_too_long_to_moderate_is_refused_and_the_message_still_answered(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    ts = await share(bot, slack_double, "dump.txt", b"word " * (DOCUMENT_CHARS_PER_MESSAGE // 5 + 1))
    texts = bot_texts(slack_double, CHANNEL, ts)
    assert f":warning: I couldn't use *dump.txt*: {TOO_LONG_TO_CHECK}." in texts, texts
    assert texts[-1] == "Echo: Ada: have a look"  # streamed under the notice about the file
    assert uploads(openai_double) == []
    assert "dump.txt" not in openai_double.user_texts_seen()[-1]


# Memory is bounded: a message's downloads, and the files the assistant makes ---------------------------

MB = 1024 * 1024


def image_of(size: int, tag: bytes) -> bytes:
    return PNG + tag + b"\0" * (size - len(PNG) - len(tag))


async def test_a_message_s_files_past_its_byte_budget_are_refused_with_a_note(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(max_file_mb=1, max_message_files_mb=2)
    first, second, third = (image_of(MB * 9 // 10, tag) for tag in (b"one", b"two", b"three"))
    files = [
        slack_double.add_file(f"{name}.png", data, user=ADA)
        for name, data in (("one", first), ("two", second), ("three", third))
    ]
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> compare these", files=files)

    texts = bot_texts(slack_double, CHANNEL, ts)
    assert texts[-1].startswith("Echo: Ada: compare these"), texts  # streamed under the note
    assert (
        ":warning: I couldn't use *three.png*: the files of one message may take 2 MB together; "
        "share it in another message."
    ) in texts
    assert images_seen(openai_double, backend) == [first, second]


@pytest.mark.backends("assistants", "responses", reason="chat completions run no code interpreter: no files are made")
async def test_a_file_the_assistant_made_past_the_size_limit_is_not_fetched_and_the_person_is_told(
    start_bot, slack_double, openai_double, backend
) -> None:
    big = openai_double.add_output_file("/mnt/data/big.csv", b"x" * (MB + 1))
    small = openai_double.add_output_file("/mnt/data/small.csv", b"month,total\nJan,10\n")
    links = ("sandbox:/mnt/data/big.csv", "sandbox:/mnt/data/small.csv")
    openai_double.script(
        ScriptedRun(
            text=f"Here: [the big one]({links[0]}) and [the small one]({links[1]})",
            annotations=[("file_path", links[0], big), ("file_path", links[1], small)],
        )
    )
    bot = await start_bot(max_file_mb=1)
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> make two tables")

    assert [shared["name"] for shared in bot_files(slack_double, ts)] == ["small.csv"]
    texts = bot_texts(slack_double, CHANNEL, ts)
    assert ":warning: I couldn't share *big.csv*, a file the assistant made: it is larger than the 1 MB limit." in texts
    assert any(text.startswith("Here: ") for text in texts), texts

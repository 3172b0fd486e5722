"""End to end: files shared in Slack reach the assistant; files the assistant makes come back to Slack.

Each backend has its own file strategy (see support/file_view.py); the tests say what Slack shows and
what the model got, and name a backend only where a behaviour cannot exist on it.
"""

from __future__ import annotations

from typing import Any

import pytest
from doubles.openai import ScriptedRun
from sqlalchemy import select
from support.file_view import (
    KEEPS_FILES_ON_SERVER,
    code_interpreter_files,
    documents_seen,
    images_seen,
    searched_file_ids,
    uploads,
)
from support.samples import DAMAGED_PDF, PNG, pdf_with_text
from support.slack_view import bot_texts
from support.workspace import ADA, BOB, BOT, CHANNEL, DM

from bot.store.models import ApiFile

REPORT = pdf_with_text("Q3 revenue grew 5%.", "Costs were flat.")
NO_CODE_INTERPRETER = "chat completions run no code interpreter, so the model makes no files"
NO_FILES_ON_SERVER = "the chat backend keeps no files on the server: it uploads nothing to /files"


def bot_files(slack, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
    return [f for m in slack.messages(channel, thread_ts=thread_ts) if m.get("bot_id") for f in m.get("files", [])]


async def share(
    bot,
    slack,
    name: str,
    content: bytes,
    *,
    text: str = "have a look",
    channel: str = CHANNEL,
    thread_ts: str | None = None,
    mimetype: str | None = None,
) -> str:
    """Ada shares one file with a message (mentioning the bot in a channel); returns the message ts."""
    file = slack.add_file(name, content, user=ADA, mimetype=mimetype)
    said = f"<@{BOT}> {text}" if channel == CHANNEL and thread_ts is None else text
    return await bot.say(channel, ADA, said, thread_ts=thread_ts, files=[file])


async def deliver_altered(bot, slack, name: str, content: bytes, alter) -> str:
    """Ada shares a file, but the event Slack delivers is altered first (a forged or odd payload)."""
    file = slack.add_file(name, content, user=ADA)
    post = slack.human_posts(CHANNEL, ADA, f"<@{BOT}> read this", files=[file])
    for envelope in post.envelopes:
        for shared in envelope["event"].get("files", []):
            alter(shared)
        assert (await bot.deliver(envelope)).status_code == 200
    await bot.settle()
    return post.ts


async def stored_api_files(bot) -> list[ApiFile]:
    async with bot.bot.store.transaction() as session:
        return list(await session.scalars(select(ApiFile)))


# Files in ------------------------------------------------------------------------------------------


async def test_an_image_is_shown_to_the_model(start_bot, slack_double, openai_double, backend) -> None:
    bot = await start_bot()
    ts = await share(bot, slack_double, "chart.png", PNG, text="what does this show?")
    assert images_seen(openai_double, backend) == [PNG]
    assert openai_double.user_texts_seen()[-1].startswith("Ada: what does this show?")
    # Uploaded for vision where files live on the server; chat sends the image itself, as a data URL.
    uploaded = [("chart.png", "vision")] if KEEPS_FILES_ON_SERVER[backend] else []
    assert [(file["filename"], file["purpose"]) for file in openai_double.files()] == uploaded
    assert len(uploads(openai_double)) == len(uploaded)
    assert bot_texts(slack_double, CHANNEL, ts)[-1].startswith("Echo: Ada: what does this show?")


async def test_documents_shared_in_a_thread_stay_readable_to_the_model(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    ts = await share(bot, slack_double, "report.pdf", REPORT, text="summarise it")
    await share(bot, slack_double, "notes.md", b"# Notes\nShip on Monday.", text="and these", thread_ts=ts)
    assert documents_seen(openai_double, backend) == {"report.pdf", "notes.md"}
    assert "[Shared files: notes.md]" in openai_double.user_texts_seen()[-1]
    # Where files live on the server, the conversation has one vector store: created once, then reused.
    stores = 1 if KEEPS_FILES_ON_SERVER[backend] else 0
    assert len(openai_double.vector_stores()) == stores
    assert len(openai_double.requests_to("POST", r"^/v1/vector_stores$")) == stores
    assert {file["purpose"] for file in openai_double.files()} == ({"assistants"} if stores else set())
    assert len(bot_texts(slack_double, CHANNEL, ts)) == 2


@pytest.mark.backends("assistants", "responses", reason="chat has no code interpreter: text data goes inline")
@pytest.mark.parametrize(
    ("name", "content", "searchable"),
    [
        ("sales.csv", b"month,revenue\nJan,10\nFeb,12\n", False),
        ("budget.xlsx", b"PK\x03\x04 spreadsheet", False),
        ("config.json", b'{"limit": 3}', True),
    ],
)
async def test_data_files_go_to_the_code_interpreter(
    start_bot, slack_double, openai_double, backend, name, content, searchable
) -> None:
    bot = await start_bot()
    await share(bot, slack_double, name, content, text="plot it")
    [api_file] = openai_double.files()
    assert api_file["purpose"] == "assistants" and api_file["filename"] == name
    assert code_interpreter_files(openai_double, backend) == {name}
    # Only types file search reads are searched too (and so go into a vector store).
    assert documents_seen(openai_double, backend) == ({name} if searchable else set())
    assert len(openai_double.vector_stores()) == (1 if searchable else 0)


@pytest.mark.backends("chat", reason="the other backends hand data files to the code interpreter")
async def test_on_chat_text_data_is_read_inline_and_a_spreadsheet_is_refused(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    sales = slack_double.add_file("sales.csv", b"month,revenue\nJan,10\nFeb,12\n", user=ADA)
    budget = slack_double.add_file("budget.xlsx", b"PK\x03\x04 spreadsheet", user=ADA)
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> plot it", files=[sales, budget])
    assert documents_seen(openai_double, backend) == {"sales.csv"}
    assert "month,revenue\nJan,10\nFeb,12" in openai_double.user_texts_seen()[-1]
    assert_answered_with_notice(
        slack_double,
        ts,
        ":warning: I couldn't use *budget.xlsx*: the assistant can't read this kind of data file here; "
        "share it as CSV or JSON.",
    )
    assert uploads(openai_double) == []


@pytest.mark.parametrize(("name", "mimetype"), [("voice.m4a", "audio/mp4"), ("clip.webm", "video/webm")])
async def test_a_voice_clip_is_transcribed_and_the_person_sees_what_was_heard(
    start_bot, slack_double, openai_double, name, mimetype
) -> None:
    openai_double.transcripts[name] = "Please summarise the launch meeting."
    bot = await start_bot(transcription_model="gpt-4o-mini-transcribe")
    ts = await share(bot, slack_double, name, b"\x00\x00\x00 ftyp audio bytes", text="", mimetype=mimetype)
    [request] = openai_double.requests_to("POST", r"^/v1/audio/transcriptions$")
    assert request.body["model"] == "gpt-4o-mini-transcribe"
    assert uploads(openai_double) == []  # the clip itself does not go to the assistant
    texts = bot_texts(slack_double, CHANNEL, ts)
    assert f":studio_microphone: *{name}*: Please summarise the launch meeting." in texts
    assert openai_double.user_texts_seen()[-1] == f"Ada: [Transcript of {name}] Please summarise the launch meeting."
    # What was heard shows first; the answer streams in its own message under it.
    assert texts[-1].startswith("Echo: Ada: [Transcript of")


async def test_a_file_shared_again_in_the_same_channel_is_not_uploaded_again(
    start_bot, slack_double, openai_double, backend, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    file = slack_double.add_file("logo.png", PNG, user=ADA)
    await bot.say(CHANNEL, ADA, f"<@{BOT}> first look", files=[file])
    await bot.say(CHANNEL, BOB, f"<@{BOT}> second look, new thread", files=[file["id"]])
    assert openai_double.user_texts_seen()[-1].startswith("Bob: second look, new thread")
    assert images_seen(openai_double, backend) == [PNG]
    assert len(uploads(openai_double)) == (1 if KEEPS_FILES_ON_SERVER[backend] else 0)


@pytest.mark.backends("assistants", "responses", reason=NO_FILES_ON_SERVER)
async def test_a_file_from_a_dm_is_never_attached_in_another_channel(
    start_bot, slack_double, openai_double, backend, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    file = slack_double.add_file("private.pdf", REPORT, user=ADA)
    await bot.say(DM, ADA, "keep this between us", files=[file])
    await bot.say(CHANNEL, ADA, f"<@{BOT}> now here", files=[file["id"]])
    dm_file, channel_file = openai_double.files()
    assert dm_file["id"] != channel_file["id"]
    assert searched_file_ids(openai_double, backend) == [channel_file["id"]]
    records = {(r.channel_id, r.api_file_id) for r in await stored_api_files(bot)}
    assert records == {(DM, dm_file["id"]), (CHANNEL, channel_file["id"])}
    dm_store, channel_store = openai_double.vector_stores()
    assert [f["id"] for f in openai_double.vector_store_files(channel_store["id"])] == [channel_file["id"]]


async def test_files_shared_in_the_assistant_pane_are_read(start_bot, slack_double, openai_double, backend) -> None:
    bot = await start_bot()
    envelope = slack_double.assistant_thread_started(DM, ADA)
    assert (await bot.deliver(envelope)).status_code == 200
    thread_ts = envelope["event"]["assistant_thread"]["thread_ts"]
    await share(bot, slack_double, "diagram.png", PNG, text="explain this", channel=DM, thread_ts=thread_ts)
    assert images_seen(openai_double, backend) == [PNG]
    assert bot_texts(slack_double, DM, thread_ts)[-1].startswith("Echo: explain this")


# Bad input: a short line naming the file and why; the text is still answered; nothing orphaned -----


def assert_answered_with_notice(slack, ts: str, notice: str) -> None:
    texts = bot_texts(slack, CHANNEL, ts)
    assert notice in texts, texts
    assert any(text.startswith("Echo: Ada:") for text in texts), texts  # the answer, posted first, comes first


async def test_a_file_over_the_size_limit_is_refused(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(max_file_mb=1)
    ts = await share(bot, slack_double, "huge.pdf", b"x" * (1024 * 1024 + 1))
    assert_answered_with_notice(
        slack_double, ts, ":warning: I couldn't use *huge.pdf*: it is larger than the 1 MB limit."
    )
    assert uploads(openai_double) == []


async def test_the_size_limit_holds_while_streaming_even_if_the_event_says_small(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(max_file_mb=1)
    ts = await deliver_altered(bot, slack_double, "liar.pdf", b"x" * (2 * 1024 * 1024), lambda f: f.update(size=10))
    assert_answered_with_notice(
        slack_double, ts, ":warning: I couldn't use *liar.pdf*: it is larger than the 1 MB limit."
    )
    assert uploads(openai_double) == []


async def test_an_unsupported_file_type_is_refused_without_downloading(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    ts = await share(bot, slack_double, "backup.zip", b"PK\x03\x04")
    assert_answered_with_notice(slack_double, ts, ":warning: I couldn't use *backup.zip*: I can't read zip files.")
    assert uploads(openai_double) == []


async def test_a_message_of_only_an_unusable_file_gets_only_the_note(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    await share(bot, slack_double, "backup.zip", b"PK\x03\x04", text="", channel=DM)
    assert bot_texts(slack_double, DM) == [":warning: I couldn't use *backup.zip*: I can't read zip files."]
    assert openai_double.model_calls == 0


async def test_a_sign_in_page_instead_of_the_file_means_a_missing_scope(start_bot, slack_double, openai_double) -> None:
    slack_double.files_read_granted = False
    bot = await start_bot()
    ts = await share(bot, slack_double, "report.pdf", REPORT)
    assert_answered_with_notice(
        slack_double,
        ts,
        ":warning: I couldn't use *report.pdf*: Slack sent a sign-in page instead of the file "
        "(the app may lack the files:read scope).",
    )
    assert uploads(openai_double) == []


async def test_a_failed_download_is_reported(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    gone = f"{slack_double.base_url}/files-gone/report.pdf"
    ts = await deliver_altered(bot, slack_double, "report.pdf", REPORT, lambda f: f.update(url_private_download=gone))
    assert_answered_with_notice(
        slack_double, ts, ":warning: I couldn't use *report.pdf*: Slack answered the download with HTTP 404."
    )


async def test_a_download_link_outside_slack_is_never_followed(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    foreign = f"{openai_double.base_url}/files/internal-secret/content"
    ts = await deliver_altered(
        bot, slack_double, "report.pdf", REPORT, lambda f: f.update(url_private_download=foreign)
    )
    assert_answered_with_notice(
        slack_double,
        ts,
        ":warning: I couldn't use *report.pdf*: its download link does not point to Slack, so I did not follow it.",
    )
    assert openai_double.requests_to("GET", "internal-secret") == []


@pytest.mark.backends("assistants", "responses", reason=NO_FILES_ON_SERVER)
@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("unsupported_file", "the assistant does not support this file type"),
        ("invalid_file", "the assistant found the file invalid or damaged"),
    ],
)
async def test_an_upload_the_api_rejects_is_reported(
    start_bot, slack_double, openai_double, backend, code, reason
) -> None:
    bot = await start_bot()
    openai_double.fail_next("POST", r"^/v1/files$", status=400, code=code)
    ts = await share(bot, slack_double, "report.pdf", REPORT)
    assert_answered_with_notice(slack_double, ts, f":warning: I couldn't use *report.pdf*: {reason}.")
    assert openai_double.files() == [] and openai_double.vector_stores() == []
    assert await stored_api_files(bot) == []
    assert documents_seen(openai_double, backend) == set()
    assert "[Shared files" not in openai_double.user_texts_seen()[-1]


@pytest.mark.backends("assistants", "responses", reason=NO_FILES_ON_SERVER)
async def test_a_document_that_fails_indexing_leaves_nothing_behind(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.vector_store_file_errors["broken.pdf"] = "invalid_file"
    bot = await start_bot()
    ts = await share(bot, slack_double, "broken.pdf", DAMAGED_PDF)
    assert_answered_with_notice(
        slack_double, ts, ":warning: I couldn't use *broken.pdf*: the assistant found the file invalid or damaged."
    )
    [indexing] = openai_double.requests_to("POST", r"^/v1/vector_stores/[^/]+/files$")
    assert indexing.body["file_id"]
    assert openai_double.files() == [] and openai_double.vector_stores() == []
    assert await stored_api_files(bot) == []
    assert documents_seen(openai_double, backend) == set()
    # The conversation goes on without pointing the model at the store that was deleted.
    await bot.say(CHANNEL, ADA, "and now?", thread_ts=ts)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Echo: Ada: and now?"
    assert documents_seen(openai_double, backend) == set()


async def test_a_failed_file_does_not_spoil_the_others(start_bot, slack_double, openai_double, backend) -> None:
    openai_double.vector_store_file_errors["broken.pdf"] = "invalid_file"
    bot = await start_bot()
    good = slack_double.add_file("good.pdf", REPORT, user=ADA)
    bad = slack_double.add_file("broken.pdf", DAMAGED_PDF, user=ADA)
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> compare", files=[bad, good])
    assert documents_seen(openai_double, backend) == {"good.pdf"}
    texts = bot_texts(slack_double, CHANNEL, ts)
    assert texts[-1].startswith("Echo: Ada: compare")  # streamed under the notice about the file it could not use
    assert any(text.startswith(":warning: I couldn't use *broken.pdf*:") for text in texts), texts
    # Where files live on the server, only the good one is kept there (in a store kept for it).
    kept = ["good.pdf"] if KEEPS_FILES_ON_SERVER[backend] else []
    assert [file["filename"] for file in openai_double.files()] == kept
    assert len(openai_double.vector_stores()) == len(kept)


# Files out -----------------------------------------------------------------------------------------


@pytest.mark.backends("assistants", "responses", reason=NO_CODE_INTERPRETER)
async def test_an_image_the_assistant_made_is_shared_in_the_thread(start_bot, slack_double, openai_double) -> None:
    plot = openai_double.add_output_file("/mnt/data/plot", PNG)
    openai_double.script(ScriptedRun(text="Here is the plot.", image_file_ids=[plot]))
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> plot the sales")
    [shared] = bot_files(slack_double, CHANNEL, ts)
    # Named so that Slack previews it (each backend's naming is in its contract tests).
    assert shared["name"].endswith(".png") and shared["size"] == len(PNG)
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Here is the plot."
    assert slack_double.calls_to("files.completeUploadExternal")


@pytest.mark.backends("assistants", "responses", reason=NO_CODE_INTERPRETER)
async def test_a_sandbox_link_points_at_the_file_shared_in_slack(start_bot, slack_double, openai_double) -> None:
    table = openai_double.add_output_file("/mnt/data/sales.csv", b"month,total\nJan,10\n")
    link = "sandbox:/mnt/data/sales.csv"
    openai_double.script(
        ScriptedRun(text=f"Done: [download the table]({link})", annotations=[("file_path", link, table)])
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> make a table")
    [shared] = bot_files(slack_double, CHANNEL, ts)
    assert shared["name"] == "sales.csv"
    answer = bot_texts(slack_double, CHANNEL, ts)[-1]
    assert answer == f"Done: <{shared['permalink']}|download the table>"


@pytest.mark.backends("assistants", "responses", reason="chat has no file search: documents go inline, uncited")
async def test_citations_become_numbered_footnotes_with_the_slack_file_name(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    ts = await share(bot, slack_double, "Q3 report.pdf", REPORT, text="keep this")
    [api_file] = openai_double.files()
    marker = "【4:0†source】"
    openai_double.script(
        ScriptedRun(text=f"Revenue grew 5%{marker}.", annotations=[("file_citation", marker, api_file["id"])])
    )
    await bot.say(CHANNEL, ADA, "how did revenue do?", thread_ts=ts)
    assert documents_seen(openai_double, backend) == {"Q3 report.pdf"}
    assert bot_texts(slack_double, CHANNEL, ts)[-1] == "Revenue grew 5%[1].\n\n[1] Q3 report.pdf"

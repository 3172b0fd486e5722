"""Sent once, not twice: an error answer that may follow work the API already did is not re-sent blindly.

A gateway's 5xx, a 408 or a 409 can come after the API carried the request out (message stored, run
or response started, file uploaded, vector store created, image generated). The double does the
work first and then answers the error (`fail_next(..., after_processing=True)`); the bot must look
up what exists before sending again. Each test checks what the model saw and what the person got.
"""

from __future__ import annotations

import pytest
from conftest import SIGNING_SECRET
from doubles.slack_events import deliver_form, slash_command_body
from support.file_view import documents_seen, images_seen, uploads
from support.model_view import (
    ANSWER_REQUESTS,
    ASKED_AGAIN_AFTER_A_LOST_ANSWER,
    MESSAGE_REQUESTS,
    conversations_seen,
    first_answer_requests,
)
from support.samples import PNG
from support.slack_view import bot_texts
from support.workspace import ADA, BOT, CHANNEL

AMBIGUOUS_STATUSES = (502, 408, 409)
NO_FILES_ON_SERVER = "the chat backend keeps no files on the server: it uploads nothing to /files"
NOTHING_LEFT_RUNNING = "a chat completion leaves nothing on the server to follow: a lost one is asked again"


async def imagine(bot, slack, prompt: str) -> None:
    """Ada runs /imagine; the bot acks, then its background work settles."""
    body = slash_command_body(
        "/imagine",
        prompt,
        team_id="T0TEAM",
        channel_id=CHANNEL,
        user_id=ADA,
        response_url=slack.new_response_url(channel=CHANNEL, user=ADA),
        trigger_id="trigger-imagine",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()


async def share(bot, slack, name: str, content: bytes, *, text: str) -> str:
    file = slack.add_file(name, content, user=ADA)
    return await bot.say(CHANNEL, ADA, f"<@{BOT}> {text}", files=[file])


@pytest.mark.parametrize("status", AMBIGUOUS_STATUSES)
async def test_a_message_stored_before_an_error_answer_reaches_the_model_once(
    start_bot, slack_double, openai_double, backend, status
) -> None:
    openai_double.fail_next("POST", MESSAGE_REQUESTS[backend], status=status, after_processing=True)
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> only once")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: only once"]
    assert all(seen.count(("user", "Ada: only once")) == 1 for seen in conversations_seen(openai_double))
    await bot.say(CHANNEL, ADA, "and then?", thread_ts=ts)
    assert conversations_seen(openai_double)[-1] == [  # the conversation holds the message once, answered once
        ("user", "Ada: only once"),
        ("assistant", "Echo: Ada: only once"),
        ("user", "Ada: and then?"),
    ]
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: only once", "Echo: Ada: and then?"]


async def test_an_answer_started_before_a_gateway_error_is_followed_not_started_again(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.fail_next("POST", ANSWER_REQUESTS[backend], status=502, after_processing=True)
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> one answer please")
    expected_calls = 2 if ASKED_AGAIN_AFTER_A_LOST_ANSWER[backend] else 1
    assert openai_double.model_calls == expected_calls
    assert len(first_answer_requests(openai_double, backend)) == expected_calls
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: one answer please"]


@pytest.mark.backends("responses", reason="only a Responses conversation is seeded from Slack in several requests")
async def test_a_long_thread_seeded_before_a_gateway_error_is_in_the_conversation_once(
    start_bot, slack_double, openai_double, backend
) -> None:
    root = slack_double.human_posts(CHANNEL, ADA, "note 0").ts
    for number in range(1, 25):  # more than one request's worth of items (20), never shown to the bot
        slack_double.human_posts(CHANNEL, ADA, f"note {number}", thread_ts=root)
    openai_double.fail_next("POST", MESSAGE_REQUESTS[backend], status=502, after_processing=True)
    bot = await start_bot()
    await bot.say(CHANNEL, ADA, f"<@{BOT}> what were the notes?", thread_ts=root)
    seen = [text for role, text in conversations_seen(openai_double)[-1] if role == "user"]
    assert sorted(seen) == sorted({*seen})  # no message of the thread twice
    assert len(seen) == 26 and seen[-1] == "Ada: what were the notes?"
    assert bot_texts(slack_double, CHANNEL, root) == ["Echo: Ada: what were the notes?"]


@pytest.mark.backends("assistants", "responses", reason=NOTHING_LEFT_RUNNING)
async def test_an_answer_refused_by_a_gateway_before_the_api_saw_it_is_sent_again(
    start_bot, slack_double, openai_double, backend
) -> None:
    # The same error answer, but the API never got the request: nothing is found, so it is sent once more.
    openai_double.fail_next("POST", ANSWER_REQUESTS[backend], status=502)
    bot = await start_bot(run_queued_deadline_seconds=2.0)  # how long the responses backend looks for a trace
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> are you there?")
    assert openai_double.model_calls == 1
    assert len(first_answer_requests(openai_double, backend)) == 2
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: are you there?"]


@pytest.mark.backends("assistants", "responses", reason=NOTHING_LEFT_RUNNING)
async def test_an_answer_stream_that_ends_before_its_first_event_is_followed(
    start_bot, slack_double, openai_double, backend
) -> None:
    # A proxy answered 200 and closed the stream cleanly before any event: the run was started all the same.
    openai_double.end_streams_after = 0
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> still there?")
    assert openai_double.model_calls == 1
    assert len(first_answer_requests(openai_double, backend)) == 1
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: still there?"]


@pytest.mark.backends("assistants", "responses", reason=NO_FILES_ON_SERVER)
async def test_a_file_uploaded_before_a_gateway_error_is_on_the_api_once(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.fail_next("POST", r"^/v1/files$", status=502, after_processing=True)
    bot = await start_bot()
    ts = await share(bot, slack_double, "chart.png", PNG, text="what does this show?")
    assert images_seen(openai_double, backend) == [PNG]
    assert [file["filename"] for file in openai_double.files()] == ["chart.png"]  # no duplicate left behind
    assert len(uploads(openai_double)) == 1  # found, not uploaded again
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: what does this show?\n\n[Shared files: chart.png]"]


@pytest.mark.backends("assistants", "responses", reason=NO_FILES_ON_SERVER)
async def test_a_vector_store_created_before_a_gateway_error_is_on_the_api_once(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.fail_next("POST", r"^/v1/vector_stores$", status=502, after_processing=True)
    bot = await start_bot()
    ts = await share(bot, slack_double, "notes.txt", b"The launch is on Tuesday.", text="when is the launch?")
    assert documents_seen(openai_double, backend) == {"notes.txt"}
    assert len(openai_double.vector_stores()) == 1  # found, not created again
    assert len(bot_texts(slack_double, CHANNEL, ts)) == 1


@pytest.mark.backends("responses", reason="/imagine does not depend on the conversation backend")
async def test_imagine_makes_one_image_when_the_answer_is_lost_after_generating(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(image_model="gpt-image-1")
    openai_double.fail_next("POST", r"^/v1/images/generations$", status=502, after_processing=True)
    await imagine(bot, slack_double, "a lighthouse in a storm")
    assert len(openai_double.requests_to("POST", r"^/v1/images/generations$")) == 1  # paid for once, not twice
    assert slack_double.bot_messages(CHANNEL) == []
    assert [message["text"] for message in slack_double.ephemeral(CHANNEL, ADA)] == [
        "Making your image…",
        "I couldn't reach the assistant just now. Please try again in a moment.",
    ]

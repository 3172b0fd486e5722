"""The reply stream on its own, against the Slack double: a stopped answer, a withdrawn stream, the double's rules."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import BOT_TOKEN
from slack_sdk.web.async_client import AsyncWebClient
from support.workspace import ADA, CHANNEL

from bot.conversations.turn import ReplyStopped, ReplyWithdrawn, TextDelta, ToolActivity, ToolStatus
from bot.slack.progress import Refusals, loading_lines, task_title
from bot.slack.render import feedback_block, message_blocks, render_reply
from bot.slack.replies import SlackReplyStream, pane_title
from bot.slack.streaming import NativeStream

TEAM = "T0TEAM"


@pytest.fixture
def client(slack_double: Any) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack_double.api_url)


def streamed_reply(client: AsyncWebClient, thread_ts: str, **options: Any) -> SlackReplyStream:
    native = NativeStream(
        client,
        channel=CHANNEL,
        thread_ts=thread_ts,
        recipient_user_id=ADA,
        recipient_team_id=TEAM,
        update_seconds=0.0,
    )
    return SlackReplyStream(
        client,
        channel=CHANNEL,
        thread_ts=thread_ts,
        in_assistant_pane=False,
        message_chars=3900,
        update_seconds=0.0,
        native=native,
        stop_key=thread_ts,
        **options,
    )


async def test_a_stopped_answer_keeps_its_text_ends_with_a_note_and_takes_nothing_more(slack_double, client) -> None:
    root = slack_double.human_posts(CHANNEL, ADA, "tell me").ts
    reply = streamed_reply(client, root, feedback=True)
    await reply.open()
    await reply.send(TextDelta("Half an **answer**"))
    await reply.send(ReplyStopped())
    await reply.send(TextDelta(" and more"))
    await reply.close()

    (message,) = slack_double.bot_messages(CHANNEL, root)
    assert message["text"] == "Half an *answer*\n\n_Stopped._"
    assert [b["type"] for b in message["blocks"]] == ["section"]  # no Stop, and no feedback on a stopped answer
    assert len(slack_double.calls_to("chat.stopStream")) == 1
    assert all(" and more" not in text for text in slack_double.update_history(CHANNEL, message["ts"]))


async def test_a_withdrawn_streamed_answer_is_stopped_then_replaced_by_the_notice(slack_double, client) -> None:
    root = slack_double.human_posts(CHANNEL, ADA, "say something bad").ts
    reply = streamed_reply(client, root, feedback=True)
    await reply.open()
    await reply.send(TextDelta("Something that was checked"))
    await reply.send(ReplyWithdrawn("That answer was withdrawn."))
    await reply.close()

    (message,) = slack_double.bot_messages(CHANNEL, root)
    assert message["text"] == "That answer was withdrawn." and [b["type"] for b in message["blocks"]] == ["section"]
    assert [c.method for c in slack_double.calls if c.method.startswith("chat.")][-2:] == [
        "chat.stopStream",
        "chat.update",
    ]


async def test_an_interrupted_stream_is_stopped_and_marked_in_its_own_message(slack_double, client) -> None:
    root = slack_double.human_posts(CHANNEL, ADA, "go on").ts
    reply = streamed_reply(client, root)
    await reply.open()
    await reply.send(TextDelta("The first half"))
    await reply.close()  # an unexpected error ended the answer here

    (message,) = slack_double.bot_messages(CHANNEL, root)
    assert message["text"].startswith("The first half\n\n:warning: Something went wrong")
    assert len(slack_double.calls_to("chat.stopStream")) == 1


async def test_task_titles_and_loading_lines_say_what_the_backend_does() -> None:
    assert task_title(ToolActivity("c1", "function", "lookup_order", ToolStatus.STARTED)) == "Calling lookup_order"
    assert task_title(ToolActivity("c2", "file_search", "file_search", ToolStatus.STARTED)) == "Searching your files"
    assert loading_lines(ToolActivity("c3", "code_interpreter", "", ToolStatus.STARTED)) == ("Running code…",)
    assert pane_title("  What   is\nthe plan? ") == "What is the plan?"
    long = pane_title("word " * 40)
    assert len(long) <= 61 and long.endswith("…")


async def test_a_refusal_is_remembered_for_a_while_then_forgotten() -> None:
    now = [0.0]
    refusals: Refusals[str] = Refusals(seconds=10, clock=lambda: now[0])
    refusals.refuse(TEAM)
    assert refusals.refused(TEAM) and not refusals.refused("T0OTHER")
    now[0] = 10.0
    assert not refusals.refused(TEAM)


async def test_a_long_message_is_laid_out_in_sections_slack_accepts_with_its_buttons_last() -> None:
    text = render_reply("\n\n".join(f"Paragraph {index} " + "word " * 80 for index in range(9)), limit=3900)[0]
    blocks = message_blocks(text, extra=[feedback_block("1.000001")])
    sections = [block["text"]["text"] for block in blocks if block["type"] == "section"]
    assert len(sections) >= 2 and all(len(section) <= 3000 for section in sections)
    assert "".join(sections).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    assert blocks[-1]["block_id"] == "feedback:1.000001" and blocks[-1]["type"] == "context_actions"
    (buttons,) = blocks[-1]["elements"]
    assert (buttons["positive_button"]["value"], buttons["negative_button"]["value"]) == ("good", "bad")

"""Requests whose answer is lost after the API carried them out: nothing is created twice, on any backend."""

from __future__ import annotations

import json

import pytest
from doubles.openai import ScriptedAnswer
from support.model_view import (
    ANSWER_REQUESTS,
    ASKED_AGAIN_AFTER_A_LOST_ANSWER,
    MESSAGE_REQUESTS,
    answer_requests,
    conversations_seen,
    first_answer_requests,
)
from support.slack_view import bot_texts
from support.workspace import BOT, CHANNEL


async def test_a_message_whose_answer_was_lost_is_not_added_twice(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.lose_response_next("POST", MESSAGE_REQUESTS[backend])
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> only once")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: only once"]
    await bot.say(CHANNEL, "U0ADA", "and then?", thread_ts=ts)
    assert conversations_seen(openai_double)[-1] == [  # the conversation holds the message once, answered once
        ("user", "Ada: only once"),
        ("assistant", "Echo: Ada: only once"),
        ("user", "Ada: and then?"),
    ]
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: only once", "Echo: Ada: and then?"]


@pytest.mark.backends(
    "assistants",
    "responses",
    reason="a chat completion leaves nothing on the server to follow: a lost one is asked again",
)
async def test_a_run_whose_answer_was_lost_is_followed_not_started_again(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.lose_response_next("POST", ANSWER_REQUESTS[backend])
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> one run please")
    assert openai_double.model_calls == 1
    assert len(answer_requests(openai_double, backend)) == 1
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: one run please"]


async def test_tool_outputs_whose_answer_was_lost_are_not_submitted_twice(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(ScriptedAnswer(tool_calls=[("get_current_time", {"timezone": "UTC"})]))
    openai_double.lose_response_next("POST", ANSWER_REQUESTS[backend], after=1)  # the request carrying the outputs
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> what time is it?")
    submissions = len(answer_requests(openai_double, backend)) - len(first_answer_requests(openai_double, backend))
    assert submissions == (2 if ASKED_AGAIN_AFTER_A_LOST_ANSWER[backend] else 1)
    outputs = [json.loads(text) for role, text in openai_double.model_inputs()[-1] if role == "tool"]
    assert [output["timezone"] for output in outputs] == ["UTC"]
    shown = bot_texts(slack_double, CHANNEL, ts)
    assert len(shown) == 1 and shown[0].startswith("Tool results:")

"""Requests whose answer is lost after the API carried them out: nothing is created twice."""

from __future__ import annotations

import json

from doubles.openai import ScriptedRun
from support.workspace import BOT, CHANNEL


def thread_of(openai_double) -> str:
    return openai_double.requests_to("POST", r"^/v1/threads/[^/]+/messages$")[0].path.split("/")[3]


def answers(slack_double, ts: str) -> list[str]:
    return [message["text"] for message in slack_double.bot_messages(CHANNEL, thread_ts=ts)]


async def test_a_message_whose_answer_was_lost_is_not_added_twice(start_bot, slack_double, openai_double) -> None:
    openai_double.lose_response_next("POST", r"^/v1/threads/[^/]+/messages$")
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> only once")
    thread_id = thread_of(openai_double)
    assert [m["role"] for m in openai_double.thread_messages(thread_id)] == ["user", "assistant"]
    assert len(openai_double.requests_to("POST", r"^/v1/threads/[^/]+/messages$")) == 1  # looked up, not re-sent
    assert answers(slack_double, ts) == ["Echo: Ada: only once"]


async def test_a_run_whose_answer_was_lost_is_followed_not_started_again(start_bot, slack_double, openai_double) -> None:
    openai_double.lose_response_next("POST", r"^/v1/threads/[^/]+/runs$")
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> one run please")
    assert len(openai_double.runs_of(thread_of(openai_double))) == 1
    assert answers(slack_double, ts) == ["Echo: Ada: one run please"]


async def test_tool_outputs_whose_answer_was_lost_are_not_submitted_twice(start_bot, slack_double, openai_double) -> None:
    openai_double.script(ScriptedRun(tool_calls=[("get_current_time", {"timezone": "UTC"})]))
    openai_double.lose_response_next("POST", r"/submit_tool_outputs$")
    bot = await start_bot()
    ts = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> what time is it?")
    submissions = openai_double.requests_to("POST", r"/submit_tool_outputs$")
    assert len(submissions) == 1
    assert json.loads(submissions[0].body["tool_outputs"][0]["output"])["timezone"] == "UTC"
    shown = answers(slack_double, ts)
    assert len(shown) == 1 and shown[0].startswith("Tool results:")

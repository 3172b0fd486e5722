"""End to end: answers stream natively into Slack threads, with status, task updates, title, Stop and feedback."""

from __future__ import annotations

import json
from typing import Any

from doubles.openai import ScriptedAnswer
from support.slack_view import bot_texts
from support.waiting import eventually
from support.workspace import ADA, BOT, CHANNEL, DM

from bot.slack.render import render_reply
from bot.slack.replies import ANSWER_PART_EVENT

TEAM = "T0TEAM"


def actions_of(message: dict[str, Any]) -> list[str]:
    """The action ids of the buttons a message shows."""
    return [
        element.get("action_id", "")
        for block in message.get("blocks", [])
        if block["type"] in ("actions", "context_actions")
        for element in block["elements"]
    ]


def block_ids(message: dict[str, Any]) -> list[str]:
    return [block.get("block_id", "") for block in message.get("blocks", [])]


async def test_a_channel_thread_answer_streams_natively_to_its_asker(start_bot, slack_double, backend) -> None:
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> hello there")

    (start,) = slack_double.calls_to("chat.startStream")
    assert start.params["channel"] == CHANNEL and start.params["thread_ts"] == ts
    assert start.params["recipient_user_id"] == ADA and start.params["recipient_team_id"] == TEAM
    assert slack_double.calls_to("chat.appendStream") and len(slack_double.calls_to("chat.stopStream")) == 1
    assert slack_double.calls_to("chat.postMessage") == []  # the stream is the answer's one message
    (answer,) = slack_double.bot_messages(CHANNEL, ts)
    assert answer["text"] == "Echo: Ada: hello there"
    history = slack_double.update_history(CHANNEL, answer["ts"])
    assert len(history) > 2 and all("Echo: Ada: hello there".startswith(text) for text in history)
    # Finished: the Stop button it streamed with is gone, Slack's feedback buttons name the answer.
    assert actions_of(answer) == ["answer_feedback"]
    assert block_ids(answer)[-1] == f"feedback:{answer['ts']}"
    assert slack_double.current_status(CHANNEL, ts) == ""


async def test_a_dm_thread_streams_and_the_dm_itself_posts_and_updates(start_bot, slack_double, backend) -> None:
    bot = await start_bot()
    first = await bot.say(DM, ADA, "hi bot")
    assert slack_double.calls_to("chat.startStream") == []  # the top level of a DM has no thread to stream in
    assert bot_texts(slack_double, DM) == ["Echo: hi bot"]
    assert actions_of(slack_double.bot_messages(DM)[0]) == ["answer_feedback"]

    await bot.say(DM, ADA, "a side question", thread_ts=first)
    (start,) = slack_double.calls_to("chat.startStream")
    assert start.params["channel"] == DM and start.params["thread_ts"] == first
    assert bot_texts(slack_double, DM, first) == ["Echo: a side question"]


async def test_where_slack_refuses_streaming_answers_post_and_update_and_it_is_remembered(
    start_bot, slack_double, backend
) -> None:
    slack_double.refuse_streaming("not_allowed")
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> first question")
    await bot.say(CHANNEL, ADA, "and a second", thread_ts=ts)

    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: first question", "Echo: Ada: and a second"]
    assert len(slack_double.calls_to("chat.startStream")) == 1  # the workspace is not asked again for a while
    assert all(actions_of(m) == ["answer_feedback"] for m in slack_double.bot_messages(CHANNEL, ts))


async def test_a_stream_slack_ended_while_idle_is_finished_by_update_without_showing_twice(
    start_bot, slack_double, openai_double, backend
) -> None:
    slack_double.stream_idle_seconds = 0.3
    answer = "one two three four five six"
    openai_double.script(ScriptedAnswer(text=answer, chunks=3, chunk_delay=0.8))
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> slowly please")

    assert any(c.response.get("error") == "message_not_in_streaming_state" for c in slack_double.calls)
    (shown,) = slack_double.bot_messages(CHANNEL, ts)
    assert shown["text"] == answer and shown["ts"] == slack_double.calls_to("chat.startStream")[0].response["ts"]
    # Streaming goes on for the next answer: the stream ended by itself, Slack did not refuse it.
    await bot.say(CHANNEL, ADA, "again", thread_ts=ts)
    assert len(slack_double.calls_to("chat.startStream")) == 2


async def test_an_answer_longer_than_one_stream_continues_in_messages_of_its_own(
    start_bot, slack_double, openai_double, backend
) -> None:
    answer = " ".join(f"Sentence number {index} says a little more." for index in range(420))
    assert len(answer) > 13_000
    openai_double.script(ScriptedAnswer(text=answer, chunks=40))
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> tell me everything")

    streamed = sum(
        len(chunk.get("text", ""))
        for call in slack_double.calls_to("chat.startStream") + slack_double.calls_to("chat.appendStream")
        for chunk in call.params.get("chunks", [])
        if chunk["type"] == "markdown_text"
    )
    assert 0 < streamed <= 12_000
    messages = slack_double.bot_messages(CHANNEL, ts)
    # Nothing cut, laid out as post-and-update lays out a long answer; later messages name the first.
    assert [m["text"] for m in messages] == render_reply(answer, limit=3900)
    first = messages[0]["ts"]
    assert all(
        m["metadata"] == {"event_type": ANSWER_PART_EVENT, "event_payload": {"answer_ts": first}} for m in messages[1:]
    )
    assert [actions_of(m) for m in messages] == [[]] * (len(messages) - 1) + [["answer_feedback"]]
    assert block_ids(messages[-1])[-1] == f"feedback:{first}"


async def test_the_status_shows_loading_lines_and_is_refreshed_during_a_slow_answer(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(ScriptedAnswer(text="Finally done.", first_token_delay=1.5))
    bot = await start_bot(status_refresh_seconds=0.3)
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> think hard")

    updates = [u for u in slack_double.status_updates if u["channel_id"] == CHANNEL and u["thread_ts"] == ts]
    working = [u for u in updates if u["status"]]
    assert len(working) >= 3  # set, then set again before Slack would drop it
    assert all(u["status"] == "is thinking…" and u["loading_messages"] for u in working)
    assert "Reading the thread…" in working[0]["loading_messages"]
    # Gone once the answer showed: Slack drops a thread's status when the app replies, so no call clears it.
    assert slack_double.current_status(CHANNEL, ts) == ""
    assert [u["status"] for u in updates].count("") == 0
    assert bot_texts(slack_double, CHANNEL, ts) == ["Finally done."]


async def test_a_function_call_is_a_task_in_the_stream(start_bot, slack_double, openai_double, backend) -> None:
    openai_double.script(
        ScriptedAnswer(tool_calls=[("get_current_time", {"timezone": "UTC"})], text_after_tools="It is noon in UTC.")
    )
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> what time is it?")

    (answer,) = slack_double.bot_messages(CHANNEL, ts)
    tasks = [c for c in slack_double.streamed_chunks(CHANNEL, answer["ts"]) if c["type"] == "task_update"]
    assert [(t["title"], t["status"]) for t in tasks] == [
        ("Calling get_current_time", "in_progress"),
        ("Calling get_current_time", "complete"),
    ]
    assert tasks[0]["id"] == tasks[1]["id"]
    assert answer["text"] == "It is noon in UTC."


async def test_the_stop_button_shows_while_the_answer_is_written_and_goes_when_it_is_done(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.script(ScriptedAnswer(text="one two three four five", chunks=5, chunk_delay=0.3))
    bot = await start_bot()
    posted = slack_double.human_posts(CHANNEL, ADA, f"<@{BOT}> count slowly")
    for envelope in posted.envelopes:
        assert (await bot.deliver(envelope)).status_code == 200

    def stop_button_shown() -> list[dict[str, Any]]:
        return [
            element
            for message in slack_double.bot_messages(CHANNEL, posted.ts)
            for block in message.get("blocks", [])
            if block["type"] == "actions"
            for element in block["elements"]
        ]

    (button,) = await eventually(stop_button_shown, what="a Stop button under the answer in progress")
    assert (button["action_id"], button["value"], button["text"]["text"]) == ("stop_answer", posted.ts, "Stop")
    await bot.settle()
    assert stop_button_shown() == []
    assert bot_texts(slack_double, CHANNEL, posted.ts) == ["one two three four five"]


async def test_a_pane_thread_is_titled_after_its_first_question_only(start_bot, slack_double, backend) -> None:
    bot = await start_bot()
    envelope = slack_double.assistant_thread_started(DM, ADA)
    assert (await bot.deliver(envelope)).status_code == 200
    thread_ts = envelope["event"]["assistant_thread"]["thread_ts"]
    await bot.say(DM, ADA, "  Summarise   my week\nplease ", thread_ts=thread_ts)
    await bot.say(DM, ADA, "and next week?", thread_ts=thread_ts)

    assert [u["title"] for u in slack_double.title_updates] == ["Summarise my week please"]
    assert bot_texts(slack_double, DM, thread_ts)[-2:] == ["Echo: Summarise   my week\nplease", "Echo: and next week?"]
    assert len(slack_double.calls_to("chat.startStream")) == 2


async def test_agent_sessions_are_skipped_where_slack_refuses_them_and_not_asked_again(
    start_bot, slack_double, backend
) -> None:
    bot = await start_bot()
    first = await bot.say(CHANNEL, ADA, f"<@{BOT}> before")
    await bot.say(CHANNEL, ADA, f"<@{BOT}> and again")
    assert len(slack_double.calls_to("agents.sessions.setStatus")) == 1  # refused once, then not asked
    assert slack_double.agent_session_statuses(CHANNEL, first) == []
    assert bot_texts(slack_double, CHANNEL, first) == ["Echo: Ada: before"]


async def test_an_agent_session_is_processing_then_active_and_slack_shows_its_own_stop(
    start_bot, slack_double, backend
) -> None:
    slack_double.declare_agent()
    bot = await start_bot()
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> now as an agent")
    assert slack_double.agent_session_statuses(CHANNEL, ts) == ["processing", "active"]
    (start,) = slack_double.calls_to("chat.startStream")
    chunks = (
        json.loads(start.params["chunks"]) if isinstance(start.params.get("chunks"), str) else start.params["chunks"]
    )
    # Started with the first words, and no Stop button of the bot's own.
    assert [chunk["type"] for chunk in chunks] == ["markdown_text"]
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: now as an agent"]

"""End to end: stopping an answer while it streams (the Stop button, Slack's own stop, a stop asked of another
replica), on every backend: the API's work is cancelled, what was shown stays, the rest never appears."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import SIGNING_SECRET
from doubles.openai import ScriptedAnswer
from doubles.slack_events import agent_session_stopped_envelope, block_action_body, deliver_form
from sqlalchemy import select
from support.model_view import cancel_requests
from support.slack_view import LONG_ANSWER, bot_texts, partly_shown, post
from support.waiting import eventually
from support.workspace import ADA, BOB, BOT, CHANNEL

from bot.slack.render import STOP_ACTION, STOPPED_NOTE
from bot.slack.stop import ALREADY_DONE, NOT_YOURS_TO_STOP
from bot.store.models import TurnRecord

TEAM = "T0TEAM"
_triggers = itertools.count(1)


def slow_answer() -> ScriptedAnswer:
    """LONG_ANSWER in ten pieces over several seconds: long enough to be stopped halfway."""
    return ScriptedAnswer(text=LONG_ANSWER, chunks=10, chunk_delay=0.4)


@pytest.fixture(autouse=True)
def people_in_the_channel(slack_double: Any) -> None:
    """Ada and Bob are members of the channel, where notes only they see can reach them."""
    slack_double.add_channel(CHANNEL, name="general", members=[BOT, ADA, BOB])


async def statuses(bot: Any, thread_ts: str) -> list[str]:
    """The statuses of the turns asked in the thread, oldest first."""
    async with bot.bot.store.transaction() as session:
        rows = await session.scalars(
            select(TurnRecord.status)
            .where(TurnRecord.team_id == TEAM, TurnRecord.channel_id == CHANNEL)
            .where(TurnRecord.payload["thread_key"].as_string() == thread_ts)
            .order_by(TurnRecord.id)
        )
        return list(rows)


async def press_stop(bot: Any, slack: Any, *, user: str, thread_key: str, message: dict[str, Any]) -> None:
    """A person clicks the Stop button under the answer in progress; the bot must ack at once."""
    body = block_action_body(
        action_id=STOP_ACTION,
        value=thread_key,
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=user,
        message=message,
        response_url=slack.new_response_url(channel=CHANNEL, user=user),
        trigger_id=f"trigger-{next(_triggers)}",
        block_id="stop",
        label="Stop",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text


def stopped_cleanly(text: str) -> bool:
    """What was shown before the stop, then the note; never the whole answer."""
    if not text.endswith(STOPPED_NOTE):
        return False
    shown = text.removesuffix(STOPPED_NOTE).strip()
    return shown != LONG_ANSWER and LONG_ANSWER.startswith(shown)


def api_work_cancelled(openai: Any, backend: str) -> bool:
    """The model's work ended on the API side: the run or the response cancelled, the chat stream closed."""
    if backend == "chat":
        return any(path.endswith("/chat/completions") for path in openai.core.hung_up_streams())
    return bool(cancel_requests(openai, backend))


async def test_the_stop_button_stops_the_answer_on_the_api_and_the_next_message_is_answered(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    openai_double.script(slow_answer())
    posted = await post(bot, slack_double, f"<@{BOT}> count to ten slowly")
    reply_ts = await partly_shown(slack_double, posted.ts)
    [message] = [m for m in slack_double.bot_messages(CHANNEL, thread_ts=posted.ts) if m["ts"] == reply_ts]

    # Bob did not ask: he is told so, privately, and the answer goes on.
    await press_stop(bot, slack_double, user=BOB, thread_key=posted.ts, message=message)
    await eventually(
        lambda: any(m["text"] == NOT_YOURS_TO_STOP for m in slack_double.ephemeral(CHANNEL, BOB)),
        what="Bob told he may not stop Ada's answer",
    )
    assert await statuses(bot, posted.ts) == ["running"]

    await press_stop(bot, slack_double, user=ADA, thread_key=posted.ts, message=message)
    await bot.settle()
    assert await statuses(bot, posted.ts) == ["stopped"]
    [shown] = bot_texts(slack_double, CHANNEL, posted.ts)
    assert stopped_cleanly(shown), shown
    assert api_work_cancelled(openai_double, backend)
    assert slack_double.ephemeral(CHANNEL, ADA) == []

    # Pressing it again once the answer is over changes nothing, and says so.
    await press_stop(bot, slack_double, user=ADA, thread_key=posted.ts, message=message)
    await bot.settle()
    assert [m["text"] for m in slack_double.ephemeral(CHANNEL, ADA)] == [ALREADY_DONE]
    assert bot_texts(slack_double, CHANNEL, posted.ts) == [shown]

    # The stop does not linger: the next message in the thread is answered in full.
    await bot.say(CHANNEL, ADA, "and now just say hi", thread_ts=posted.ts)
    assert bot_texts(slack_double, CHANNEL, posted.ts) == [shown, "Echo: Ada: and now just say hi"]
    assert await statuses(bot, posted.ts) == ["stopped", "answered"]


async def test_slacks_own_stop_button_is_acked_at_once_and_stops_the_answer(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    openai_double.script(slow_answer())
    posted = await post(bot, slack_double, f"<@{BOT}> count to ten slowly")
    reply_ts = await partly_shown(slack_double, posted.ts)
    envelope = agent_session_stopped_envelope(
        team_id=TEAM, channel=CHANNEL, thread_ts=posted.ts, user=ADA, bot_user_id=BOT, streaming_message_ts=[reply_ts]
    )
    response = await bot.deliver(envelope)  # within Slack's 3 s, or the helper times out
    assert response.status_code == 200, response.text
    await bot.settle()
    assert await statuses(bot, posted.ts) == ["stopped"]
    [shown] = bot_texts(slack_double, CHANNEL, posted.ts)
    assert stopped_cleanly(shown), shown
    assert api_work_cancelled(openai_double, backend)

    # Slack's stop with nothing running (the answer is over) is acked and changes nothing.
    again = agent_session_stopped_envelope(
        team_id=TEAM, channel=CHANNEL, thread_ts=posted.ts, user=ADA, bot_user_id=BOT, streaming_message_ts=[]
    )
    assert (await bot.deliver(again)).status_code == 200
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, posted.ts) == [shown]
    assert slack_double.ephemeral(CHANNEL, ADA) == []


async def test_a_stop_asked_of_another_replica_reaches_the_one_answering(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot()
    openai_double.script(slow_answer())
    posted = await post(bot, slack_double, f"<@{BOT}> count to ten slowly")
    await partly_shown(slack_double, posted.ts)
    conversation = await bot.bot.store.find_conversation(team_id=TEAM, channel_id=CHANNEL, thread_key=posted.ts)
    # What a replica that does not answer this conversation records for the one that does.
    assert await bot.bot.store.request_stop(conversation.id)
    await bot.settle()
    assert await statuses(bot, posted.ts) == ["stopped"]
    [shown] = bot_texts(slack_double, CHANNEL, posted.ts)
    assert stopped_cleanly(shown), shown
    assert api_work_cancelled(openai_double, backend)
    # The request was for that answer only.
    assert not await bot.bot.store.request_stop(conversation.id)
    await bot.say(CHANNEL, ADA, "say hi", thread_ts=posted.ts)
    assert bot_texts(slack_double, CHANNEL, posted.ts)[-1] == "Echo: Ada: say hi"

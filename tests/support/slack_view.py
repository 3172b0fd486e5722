"""What a person sees of the bot in Slack, and a person posting there for a bot in-process or in a process."""

from __future__ import annotations

from typing import Any

from support.waiting import eventually
from support.workspace import ADA, CHANNEL

# An answer streamed in many pieces, so that a test can act while it is half-written.
LONG_ANSWER = "one two three four five six seven eight nine ten"
THINKING = "_Thinking…_"


def bot_texts(slack: Any, channel: str, thread_ts: str | None = None, *, team_id: str | None = None) -> list[str]:
    """The texts of the bot's messages in channel (top level, or one thread), oldest first.

    A file shared without a comment shows no text, so it is left out; an empty message is not.
    """
    messages = slack.bot_messages(channel, thread_ts=thread_ts, team_id=team_id)
    return [message["text"] for message in messages if message["text"] or not message.get("files")]


async def post(bot: Any, slack: Any, text: str, *, thread_ts: str | None = None) -> Any:
    """Ada posts in CHANNEL; Slack delivers the events to `bot` (in-process or a process); each gets its 200."""
    posted = slack.human_posts(CHANNEL, ADA, text, thread_ts=thread_ts)
    for envelope in posted.envelopes:
        response = await bot.deliver(envelope)
        assert response.status_code == 200, response.text
    return posted


async def partly_shown(slack: Any, thread_ts: str) -> str:
    """Wait until LONG_ANSWER is visibly half-written in CHANNEL; returns that message's ts."""

    def half_written() -> str | None:
        for message in slack.bot_messages(CHANNEL, thread_ts=thread_ts):
            # Not a stream just started with nothing in it yet, nor 'Thinking…', nor the whole answer.
            if message["text"] not in ("", THINKING, LONG_ANSWER) and LONG_ANSWER.startswith(message["text"]):
                return message["ts"]
        return None

    return await eventually(half_written, what="a half-written answer in Slack")

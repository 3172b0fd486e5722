"""Slash commands and button clicks as Slack sends them to a running bot, and the ephemeral answers it gave."""

from __future__ import annotations

import itertools
from typing import Any

from conftest import SIGNING_SECRET
from doubles.slack_events import block_action_body, deliver_form, slash_command_body

from support.workspace import CHANNEL

TEAM = "T0TEAM"  # the slack_double's workspace
_triggers = itertools.count(1)


async def run_command(
    bot: Any, slack: Any, command: str, text: str, *, user: str, channel: str = CHANNEL, team_id: str = TEAM
) -> None:
    """Slack posts the slash command (in `team_id`'s workspace); the bot acks at once; then its work settles."""
    body = slash_command_body(
        command,
        text,
        team_id=team_id,
        channel_id=channel,
        user_id=user,
        response_url=slack.new_response_url(channel=channel, user=user),
        trigger_id=f"trigger-{next(_triggers)}",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()


async def click(
    bot: Any, slack: Any, *, action_id: str, value: str, message: dict[str, Any], user: str, channel: str = CHANNEL
) -> None:
    """A person clicks a button of ``message``; the bot acks; then its work settles."""
    body = block_action_body(
        action_id=action_id,
        value=value,
        team_id=TEAM,
        channel_id=channel,
        user_id=user,
        message=message,
        response_url=slack.new_response_url(channel=channel, user=user),
        trigger_id=f"trigger-{next(_triggers)}",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()


def ephemeral_texts(slack: Any, *, user: str, channel: str = CHANNEL) -> list[str]:
    return [message["text"] for message in slack.ephemeral(channel, user)]


def last_ephemeral(slack: Any, *, user: str, channel: str = CHANNEL) -> str:
    texts = ephemeral_texts(slack, user=user, channel=channel)
    assert texts, f"nothing was answered ephemerally to {user}"
    return texts[-1]

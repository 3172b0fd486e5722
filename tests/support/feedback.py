"""People rating answers: the feedback buttons under an answer, and a click on them as Slack posts it."""

from __future__ import annotations

import itertools
from typing import Any

from conftest import SIGNING_SECRET
from doubles.slack_events import block_action_body, deliver_form

from support.workspace import CHANNEL

TEAM = "T0TEAM"
_triggers = itertools.count(1)


def feedback_block(message: dict[str, Any]) -> dict[str, Any] | None:
    """The feedback buttons' block under an answer, if it has them."""
    return next((block for block in message.get("blocks") or [] if block.get("type") == "context_actions"), None)


async def rate(bot: Any, slack: Any, answer: dict[str, Any], *, user: str, value: str, team_id: str = TEAM) -> None:
    """The person clicks 👍 or 👎 under the answer (in `team_id`'s workspace), as Slack posts the click: the bot
    must ack at once."""
    block = feedback_block(answer)
    assert block is not None, "the answer carries no feedback buttons"
    [buttons] = block["elements"]
    assert value in (buttons["positive_button"]["value"], buttons["negative_button"]["value"])
    body = block_action_body(
        action_id=buttons["action_id"],
        value=value,
        team_id=team_id,
        channel_id=CHANNEL,
        user_id=user,
        message=answer,
        response_url=slack.new_response_url(channel=CHANNEL, user=user),
        trigger_id=f"trigger-{next(_triggers)}",
        block_id=block["block_id"],
        label="👍" if value == "good" else "👎",
        element_type="feedback_buttons",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()

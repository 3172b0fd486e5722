"""Stopping an answer: Slack's own stop button (the agent_session_stopped event) and the bot's Stop button.

Both are answered at once (Slack wants an answer within 3 s); the stop itself runs as background work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.background import BackgroundWork
from bot.conversations.service import ConversationService, StopOutcome
from bot.slack.interactions import Interaction
from bot.slack.render import STOP_ACTION

log = logging.getLogger(__name__)

NOT_YOURS_TO_STOP = "Only the person who asked, and admins, can stop this answer."
ALREADY_DONE = "That answer is already finished."

IsAdmin = Callable[[str, str], Awaitable[bool]]
"""Whether (team id, user id) is an admin of the bot."""


class StopListeners:
    """agent_session_stopped and clicks on the Stop button, to the conversation service's stop."""

    def __init__(self, *, service: ConversationService, is_admin: IsAdmin, background: BackgroundWork) -> None:
        self._service = service
        self._is_admin = is_admin
        self._background = background

    def register(self, app: AsyncApp) -> None:
        app.event("agent_session_stopped")(self.on_agent_session_stopped)
        app.action(STOP_ACTION)(self.on_stop_clicked)

    async def on_agent_session_stopped(
        self, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient
    ) -> None:
        team_id, channel_id = body.get("team_id"), event.get("channel")
        thread_ts, user_id = event.get("thread_ts"), event.get("user")
        if not all(isinstance(value, str) and value for value in (team_id, channel_id, thread_ts, user_id)):
            log.warning("agent_session_stopped without team, channel, thread or user; ignored")
            return
        work = self._stop(
            client,
            team_id=str(team_id),
            channel_id=str(channel_id),
            thread_key=str(thread_ts),
            user_id=str(user_id),
            thread_ts=str(thread_ts),
            say_when_done=False,  # Slack's own button shows the stop; nothing was running is no news
        )
        self._background.start(work, name="stop-session")

    async def on_stop_clicked(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        clicked = Interaction.of(body)
        team_id, channel_id, user_id = clicked.team_id, clicked.channel_id, clicked.user_id
        thread_key = action.get("value") or ""
        if not (team_id and channel_id and user_id and thread_key):
            log.warning("stop click without team, channel, user or conversation; ignored")
            return
        work = self._stop(
            client,
            team_id=team_id,
            channel_id=channel_id,
            thread_key=thread_key,
            user_id=user_id,
            thread_ts=clicked.thread_ts,
            say_when_done=True,
        )
        self._background.start(work, name="stop-click")

    async def _stop(
        self,
        client: AsyncWebClient,
        *,
        team_id: str,
        channel_id: str,
        thread_key: str,
        user_id: str,
        thread_ts: str | None,
        say_when_done: bool,
    ) -> None:
        async def is_admin() -> bool:
            return await self._is_admin(team_id, user_id)

        outcome = await self._service.stop(
            team_id=team_id, channel_id=channel_id, thread_key=thread_key, user_id=user_id, is_admin=is_admin
        )
        if outcome is StopOutcome.NOT_ALLOWED:
            await tell_privately(client, channel_id, user_id, thread_ts, NOT_YOURS_TO_STOP)
        elif outcome is StopOutcome.NOTHING_RUNNING and say_when_done:
            await tell_privately(client, channel_id, user_id, thread_ts, ALREADY_DONE)


async def tell_privately(
    client: AsyncWebClient, channel_id: str, user_id: str, thread_ts: str | None, text: str
) -> None:
    """A note only the person sees, where they clicked; one Slack refuses is logged, not raised."""
    try:
        await client.chat_postEphemeral(channel=channel_id, user=user_id, text=text, thread_ts=thread_ts)
    except SlackApiError as exc:
        log.warning("could not tell %s in %s: %s", user_id, channel_id, exc.response.get("error"))

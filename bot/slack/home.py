"""The App Home tab: what the bot can do, the default assistant, and the person's own usage."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations.channels import ChannelAssistants
from bot.errors import APIError

log = logging.getLogger(__name__)

CAPABILITIES = (
    "*I'm your team's AI assistant.*\n"
    "• Mention me in a channel and I answer in a thread; reply there and I follow along.\n"
    "• Send me a direct message, or open me in the assistant pane.\n"
    "• I keep each conversation's memory, so follow-up questions just work.\n"
    "• `/ask <question>` posts your question in the channel and I answer in its thread.\n"
    "• `/imagine <prompt>` makes an image and posts it in the channel.\n"
    "• `/assistant help` lists the commands for choosing a channel's assistant, starting over, "
    "forgetting a conversation, models and usage."
)


class AppHome:
    """Publishes the Home tab each time someone opens it."""

    def __init__(self, *, assistants: ChannelAssistants) -> None:
        self._assistants = assistants

    def register(self, app: AsyncApp) -> None:
        app.event("app_home_opened")(self.on_app_home_opened)

    async def on_app_home_opened(self, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") != "home" or not event.get("user"):
            return
        view = await self.view(team_id=body.get("team_id") or "", user_id=event["user"])
        try:
            await client.views_publish(user_id=event["user"], view=view)
        except SlackApiError as exc:
            log.warning("views.publish for %s failed: %s", event["user"], exc.response.get("error"))

    async def view(self, *, team_id: str, user_id: str) -> dict[str, Any]:
        try:
            default = await self._assistants.default()
            assistant = f"*Default assistant:* {default.name or 'Unnamed'} (model `{default.model}`)"
        except APIError as exc:
            log.warning("App Home: the default assistant could not be read: %s", exc)
            assistant = "*Default assistant:* not reachable right now."
        windows = await self._assistants.usage(team_id=team_id, user_id=user_id, channel_id=None)
        usage = "*Your usage:* " + "; ".join(
            f"last {window.days} days {window.by_user.total:,} tokens" for window in windows
        )
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": CAPABILITIES}},
            {"type": "divider"},
            {"type": "section", "text": {"type": "mrkdwn", "text": assistant}},
            {"type": "section", "text": {"type": "mrkdwn", "text": usage}},
        ]
        return {"type": "home", "blocks": blocks}

"""Who people are in Slack (display names, timezones, admin flags), cached briefly."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError

from bot.slack.clients import SlackClients

log = logging.getLogger(__name__)

CACHE_SECONDS = 600.0


@dataclass(frozen=True)
class SlackUser:
    user_id: str
    display_name: str
    timezone: str | None
    is_admin: bool
    is_bot: bool


class UserDirectory:
    """users.info with a small cache; an unknown user keeps their id as name rather than failing."""

    def __init__(self, clients: SlackClients) -> None:
        self._clients = clients
        self._cache: dict[tuple[str, str], tuple[float, SlackUser]] = {}

    async def get(self, user_id: str, *, team_id: str) -> SlackUser:
        key = (team_id, user_id)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            response = await (await self._clients.for_team(team_id)).users_info(user=user_id)
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", user_id, exc.response.get("error"))
            return SlackUser(user_id=user_id, display_name=user_id, timezone=None, is_admin=False, is_bot=False)
        data = response["user"]
        profile = data.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or data.get("real_name") or data.get("name")
        user = SlackUser(
            user_id=user_id,
            display_name=name or user_id,
            timezone=data.get("tz"),
            is_admin=bool(data.get("is_admin") or data.get("is_owner")),
            is_bot=bool(data.get("is_bot")),
        )
        self._cache[key] = (time.monotonic(), user)
        return user

    async def names(self, user_ids: list[str], *, team_id: str) -> dict[str, str]:
        return {user_id: (await self.get(user_id, team_id=team_id)).display_name for user_id in user_ids}

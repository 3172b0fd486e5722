"""Users: the user objects Slack keeps for a workspace, and users.info."""

from __future__ import annotations

import copy
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .methods import Params, SlackError, need, web_api
from .workspace import Workspace

if TYPE_CHECKING:
    from .server import SlackDouble


def user_object(
    ws: Workspace,
    user_id: str,
    *,
    name: str,
    display_name: str | None,
    real_name: str | None,
    tz: str,
    is_admin: bool,
    is_owner: bool,
    is_bot: bool,
) -> dict[str, Any]:
    """A user as users.info returns it; a bot user's profile names the workspace's bot and the app."""
    real_name = real_name if real_name is not None else name
    display_name = display_name if display_name is not None else ""
    now = datetime.now(ZoneInfo(tz))
    profile: dict[str, Any] = {
        "real_name": real_name,
        "real_name_normalized": real_name,
        "display_name": display_name,
        "display_name_normalized": display_name,
        "status_text": "",
        "status_emoji": "",
        "avatar_hash": "",
        "team": ws.team_id,
    }
    if is_bot:
        profile |= {"bot_id": ws.bot_id, "api_app_id": ws.app_id, "always_active": True}
    return {
        "id": user_id,
        "team_id": ws.team_id,
        "name": name,
        "deleted": False,
        "color": "9f69e7",
        "real_name": real_name,
        "tz": tz,
        "tz_label": now.tzname() or tz,
        "tz_offset": int(now.utcoffset().total_seconds()),
        "profile": profile,
        "is_admin": is_admin,
        "is_owner": is_owner,
        "is_primary_owner": False,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "is_bot": is_bot,
        "is_app_user": False,
        "updated": int(time.time()),
    }


@web_api("users.info", need("user", error="user_not_found"))
def users_info(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    user = ws.users.get(params.text("user") or "")
    if user is None:
        raise SlackError("user_not_found")
    return {"user": copy.deepcopy(user)}

"""Views: modals (views.open, views.update) and the app's Home tab (views.publish, app_home_opened)."""

from __future__ import annotations

import copy
import secrets
import time
from typing import TYPE_CHECKING, Any

from .methods import Params, SlackError, need, web_api
from .workspace import Workspace, next_ts, random_id

if TYPE_CHECKING:
    from .server import SlackDouble


def app_home_opened_event(ws: Workspace, user: str) -> dict[str, Any]:
    """The user opens the app's Home tab; the event carries the home view published to them before, if any."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user,
        "channel": ws.im_with(user).id,
        "tab": "home",
        "event_ts": next_ts(),
    }
    view_id = ws.home_views.get(user)
    if view_id:
        event["view"] = copy.deepcopy(ws.views[view_id])
    return event


@web_api("views.open", need("trigger_id"), need("view"))
def views_open(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    return {"view": _save_view(ws, params.json("view"), view_id=random_id("V"))}


@web_api("views.update", need("view_id", "external_id", error="not_found"), need("view"))
def views_update(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    external_id = params.text("external_id")
    current = ws.views.get(params.text("view_id") or "") or next(
        (v for v in ws.views.values() if external_id and v.get("external_id") == external_id), None
    )
    if current is None:
        raise SlackError("not_found")
    if params.present("hash") and params.text("hash") != current["hash"]:
        raise SlackError("hash_conflict")
    return {"view": _save_view(ws, params.json("view"), view_id=current["id"])}


@web_api("views.publish", need("user_id"), need("view"))
def views_publish(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    user = params.text("user_id") or ""
    if user not in ws.users:
        raise SlackError("user_not_found")
    view = _save_view(ws, params.json("view"), view_id=ws.home_views.get(user) or random_id("V"))
    ws.home_views[user] = view["id"]
    return {"view": view}


def _save_view(ws: Workspace, view: Any, *, view_id: str) -> dict[str, Any]:
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        raise SlackError("invalid_arguments")
    saved = {
        "id": view_id,
        "team_id": ws.team_id,
        "type": view["type"],
        "blocks": [],
        "private_metadata": "",
        "callback_id": "",
        "external_id": "",
        "state": {"values": {}},
        "clear_on_close": False,
        "notify_on_close": False,
        "root_view_id": view_id,
        "app_id": ws.app_id,
        "app_installed_team_id": ws.team_id,
        "bot_id": ws.bot_id,
        **view,
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
    }
    ws.views[view_id] = saved
    return copy.deepcopy(saved)

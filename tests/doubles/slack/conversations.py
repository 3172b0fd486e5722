"""Conversations: conversations.history, replies and info, with Slack's cursor pagination."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from .methods import NEED_CHANNEL, Params, SlackError, need, web_api
from .workspace import Channel, StoredMessage, Workspace, ts_key

if TYPE_CHECKING:
    from .server import SlackDouble

# (default, maximum) page sizes.
REPLIES_LIMIT = (1000, 1000)
HISTORY_LIMIT = (100, 999)


@web_api("conversations.replies", NEED_CHANNEL, need("ts", error="thread_not_found"))
def conversations_replies(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.joined_channel(params.text("channel"))
    try:
        root = ws.stored(conversation.id, params.text("ts") or "").thread_root
        ws.stored(conversation.id, root)
    except SlackError:
        raise SlackError("thread_not_found") from None
    thread = [_listed(ws, m, params) for m in ws.visible(conversation.id, root)]
    return _page([m for m in thread if _within(m["ts"], params)], params, REPLIES_LIMIT)


@web_api("conversations.history", NEED_CHANNEL)
def conversations_history(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.joined_channel(params.text("channel"))
    newest_first = [_listed(ws, m, params) for m in reversed(ws.visible(conversation.id, None))]
    page = _page([m for m in newest_first if _within(m["ts"], params)], params, HISTORY_LIMIT)
    return page | {"pin_count": 0}


@web_api("conversations.info", NEED_CHANNEL)
def conversations_info(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    return {"channel": conversation_object(ws, ws.visible_channel(params.text("channel")))}


def conversation_object(ws: Workspace, conversation: Channel) -> dict[str, Any]:
    """A conversation as conversations.info and conversations.list describe it to the bot."""
    info: dict[str, Any] = {
        "id": conversation.id,
        "created": conversation.created,
        "is_archived": False,
        "is_im": conversation.is_im,
        "is_org_shared": False,
        "context_team_id": ws.team_id,
        "updated": conversation.created * 1000,
    }
    if conversation.is_im:
        info |= {"user": conversation.user}
    else:
        info |= {
            "name": conversation.name or conversation.id.lower(),
            "name_normalized": conversation.name or conversation.id.lower(),
            "is_channel": not conversation.is_private,
            "is_group": conversation.is_private and not conversation.is_mpim,
            "is_mpim": conversation.is_mpim,
            "is_private": conversation.is_private,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "is_member": ws.bot_user_id in conversation.members,
            "creator": ws.bot_user_id,
            "num_members": len(conversation.members),
            "topic": {
                "value": conversation.topic,
                "creator": ws.bot_user_id if conversation.topic else "",
                "last_set": conversation.created if conversation.topic else 0,
            },
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }
    return info


def _listed(ws: Workspace, message: StoredMessage, params: Params) -> dict[str, Any]:
    """A message in a history or replies listing: Slack leaves metadata out unless asked for it."""
    view = ws.message_view(message)
    if not params.flag("include_all_metadata"):
        view.pop("metadata", None)
    return view


def _page(items: list[dict[str, Any]], params: Params, limits: tuple[int, int]) -> dict[str, Any]:
    """Cursor pagination as Slack does it: an opaque base64 "next_ts:<ts>" cursor and has_more."""
    default_limit, max_limit = limits
    limit = min(max(params.integer("limit", default_limit), 1), max_limit)
    start = 0
    if params.present("cursor"):
        try:
            next_ts = base64.b64decode(params.text("cursor") or "").decode().removeprefix("next_ts:")
        except ValueError:
            raise SlackError("invalid_cursor") from None
        start = next((i for i, item in enumerate(items) if item["ts"] == next_ts), -1)
        if start < 0:
            raise SlackError("invalid_cursor")
    page, rest = items[start : start + limit], items[start + limit :]
    next_cursor = base64.b64encode(f"next_ts:{rest[0]['ts']}".encode()).decode() if rest else ""
    return {"messages": page, "has_more": bool(rest), "response_metadata": {"next_cursor": next_cursor}}


def _within(ts: str, params: Params) -> bool:
    inclusive = params.flag("inclusive")
    key = ts_key(ts)
    if params.present("oldest"):
        oldest = ts_key(params.text("oldest") or "0")
        if key < oldest or (key == oldest and not inclusive):
            return False
    if params.present("latest"):
        latest = ts_key(params.text("latest") or "0")
        if key > latest or (key == latest and not inclusive):
            return False
    return True

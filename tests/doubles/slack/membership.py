"""Who is in which conversation: conversations.members and conversations.list, with Slack's cursor pagination."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from .conversations import conversation_object
from .methods import NEED_CHANNEL, Params, SlackError, web_api
from .workspace import Workspace

if TYPE_CHECKING:
    from .server import SlackDouble

# (default, maximum) page sizes.
MEMBERS_LIMIT = (100, 1000)
LIST_LIMIT = (100, 1000)
# The conversations.list type of each channel_type.
LIST_TYPES = {"channel": "public_channel", "group": "private_channel", "mpim": "mpim", "im": "im"}


@web_api("conversations.members", NEED_CHANNEL)
def conversations_members(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.visible_channel(params.text("channel"))
    members, next_cursor = _page(sorted(conversation.members), params, MEMBERS_LIMIT, prefix="user_id")
    return {"members": members, "response_metadata": {"next_cursor": next_cursor}}


@web_api("conversations.list")
def conversations_list(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    """Public channels, and the private ones, group DMs and IMs the bot is in, of the requested types."""
    types = set((params.text("types") or "public_channel").split(","))
    if not types <= set(LIST_TYPES.values()):
        raise SlackError("invalid_types")
    listed = [
        conversation
        for conversation in ws.channels.values()
        if LIST_TYPES[conversation.channel_type] in types
        and (not conversation.is_private or ws.bot_user_id in conversation.members)
    ]
    ids, next_cursor = _page(sorted(c.id for c in listed), params, LIST_LIMIT, prefix="channel")
    return {
        "channels": [conversation_object(ws, ws.channels[channel_id]) for channel_id in ids],
        "response_metadata": {"next_cursor": next_cursor},
    }


def _page(ids: list[str], params: Params, limits: tuple[int, int], *, prefix: str) -> tuple[list[str], str]:
    """One page of sorted ids from an opaque base64 "<prefix>:<first id>" cursor, and the next cursor ("" at the end)."""
    default_limit, max_limit = limits
    limit = min(max(params.integer("limit", default_limit), 1), max_limit)
    start = 0
    if params.present("cursor"):
        try:
            first = base64.b64decode(params.text("cursor") or "").decode().removeprefix(f"{prefix}:")
        except ValueError:
            raise SlackError("invalid_cursor") from None
        if first not in ids:
            raise SlackError("invalid_cursor")
        start = ids.index(first)
    page, rest = ids[start : start + limit], ids[start + limit :]
    return page, base64.b64encode(f"{prefix}:{rest[0]}".encode()).decode() if rest else ""

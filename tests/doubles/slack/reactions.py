"""Reactions: reactions.add and reactions.remove on a message, as the bot user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .methods import NEED_CHANNEL, Params, SlackError, need, web_api
from .workspace import StoredMessage, Workspace

if TYPE_CHECKING:
    from .server import SlackDouble

NEED_REACTION = (NEED_CHANNEL, need("timestamp", error="message_not_found"), need("name", error="invalid_name"))


@web_api("reactions.add", *NEED_REACTION)
def reactions_add(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    message, users = _reaction_users(ws, params)
    if ws.bot_user_id in users:
        raise SlackError("already_reacted")
    _set_reaction(message, params.text("name") or "", [*users, ws.bot_user_id])
    return {}


@web_api("reactions.remove", *NEED_REACTION)
def reactions_remove(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    message, users = _reaction_users(ws, params)
    if ws.bot_user_id not in users:
        raise SlackError("no_reaction")
    _set_reaction(message, params.text("name") or "", [u for u in users if u != ws.bot_user_id])
    return {}


def _reaction_users(ws: Workspace, params: Params) -> tuple[StoredMessage, list[str]]:
    conversation = ws.joined_channel(params.text("channel"))
    message = ws.stored(conversation.id, params.text("timestamp") or "")
    reaction = next((r for r in message.fields.get("reactions", []) if r["name"] == params.text("name")), None)
    return message, list(reaction["users"]) if reaction else []


def _set_reaction(message: StoredMessage, name: str, users: list[str]) -> None:
    # Slack lists reactions in the order they were first added and drops the key when none are left.
    by_name = {r["name"]: r["users"] for r in message.fields.pop("reactions", [])} | {name: users}
    listed = [{"name": n, "users": u, "count": len(u)} for n, u in by_name.items() if u]
    if listed:
        message.fields["reactions"] = listed

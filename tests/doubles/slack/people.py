"""What people do to messages (post, edit, delete, join), and the events Slack sends the app for it."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from .files import shared_files
from .workspace import Channel, StoredMessage, Workspace, next_ts


def post(
    ws: Workspace,
    channel: str,
    user: str,
    text: str,
    *,
    thread_ts: str | None,
    files: Iterable[dict[str, Any] | str],
    base_url: Callable[[], str],
) -> tuple[StoredMessage, list[dict[str, Any]]]:
    """A person posts; returns the message and the app_mention/message events an app on message.* receives.

    base_url is asked for only when files are attached: their URLs need the address of a started double.
    """
    conversation = ws.known_channel(channel)
    conversation.members.add(user)
    fields: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": next_ts(), "team": ws.team_id}
    if thread_ts:
        root_ts = ws.existing(channel, thread_ts).thread_root
        fields |= {"thread_ts": root_ts, "parent_user_id": ws.existing(channel, root_ts).author}
    files = list(files)
    if files:
        fields |= {"files": shared_files(ws, conversation, user, files, base_url=base_url()), "upload": True}
    message = ws.store(channel, fields)
    return message, _posted_events(ws, conversation, message)


def edit(ws: Workspace, channel: str, ts: str, text: str) -> list[dict[str, Any]]:
    message = ws.existing(channel, ts)
    previous = ws.message_view(message)
    message.fields |= {"text": text, "edited": {"user": message.author, "ts": next_ts()}}
    message.texts.append(text)
    event = {
        "type": "message",
        "subtype": "message_changed",
        "channel": channel,
        "hidden": True,
        "message": ws.message_view(message),
        "previous_message": previous,
    }
    return _to_members(ws, channel, event, message.fields["edited"]["ts"])


def delete(ws: Workspace, channel: str, ts: str) -> list[dict[str, Any]]:
    message = ws.existing(channel, ts)
    previous = ws.message_view(message)
    message.deleted = True
    event = {
        "type": "message",
        "subtype": "message_deleted",
        "channel": channel,
        "hidden": True,
        "deleted_ts": ts,
        "previous_message": previous,
    }
    return _to_members(ws, channel, event, next_ts())


def join(ws: Workspace, channel: str, user: str, *, inviter: str | None) -> tuple[str, list[dict[str, Any]]]:
    """user joins channel (the bot too); Slack posts a channel_join message that members receive."""
    ws.known_channel(channel).members.add(user)
    fields = {
        "type": "message",
        "subtype": "channel_join",
        "user": user,
        "text": f"<@{user}> has joined the channel",
        "ts": next_ts(),
        "team": ws.team_id,
    }
    if inviter:
        fields["inviter"] = inviter
    message = ws.store(channel, fields)
    event = {k: v for k, v in fields.items() if k != "ts"} | {"channel": channel, "ts": message.ts}
    return message.ts, _to_members(ws, channel, event, message.ts)


def _posted_events(ws: Workspace, conversation: Channel, message: StoredMessage) -> list[dict[str, Any]]:
    if ws.bot_user_id not in conversation.members:
        return []
    fields = message.fields
    client_msg_id = str(uuid.uuid4())
    common = {"user": fields["user"], "text": fields["text"], "ts": message.ts, "channel": conversation.id}
    common |= {key: fields[key] for key in ("thread_ts",) if key in fields}
    attached = {"files": fields["files"], "upload": True} if "files" in fields else {}
    # Field sets follow samples/events: file shares carry no client_msg_id or team, mentions no channel_type.
    if attached:
        message_event = {"type": "message", "subtype": "file_share", **common, **attached, "display_as_bot": False}
    else:
        message_event = {"type": "message", "client_msg_id": client_msg_id, "team": ws.team_id, **common}
    message_event |= {key: fields[key] for key in ("parent_user_id",) if key in fields}
    if _in_assistant_thread(ws, message):
        message_event["assistant_thread"] = {"action_token": secrets.token_hex(16)}
    message_event |= {"event_ts": message.ts, "channel_type": conversation.channel_type}
    events = [message_event]
    mentioned = re.search(rf"<@{re.escape(ws.bot_user_id)}(\|[^>]*)?>", fields["text"])
    # Slack sends app_mention for conversations with several people, never for the app's own IM.
    if mentioned and not conversation.is_im:
        app_mention = {"type": "app_mention", "client_msg_id": client_msg_id, "team": ws.team_id, **common, **attached}
        events.insert(0, app_mention | {"event_ts": message.ts})
    return events


def _in_assistant_thread(ws: Workspace, message: StoredMessage) -> bool:
    if not message.is_reply:
        return False
    root = ws.find(message.channel, message.thread_root, include_deleted=True)
    return root is not None and root.fields.get("subtype") == "assistant_app_thread"


def _to_members(ws: Workspace, channel: str, event: dict[str, Any], event_ts: str) -> list[dict[str, Any]]:
    """The event as the app receives it, if the bot is in the channel; otherwise Slack sends it nothing."""
    conversation = ws.known_channel(channel)
    if ws.bot_user_id not in conversation.members:
        return []
    return [event | {"event_ts": event_ts, "ts": event.get("ts", event_ts), "channel_type": conversation.channel_type}]

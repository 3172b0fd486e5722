"""Chat messages the app posts: chat.postMessage, update, delete, postEphemeral and getPermalink."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .methods import NEED_CHANNEL, NEED_MESSAGE_CONTENT, NEED_TS, Params, SlackError, need, web_api
from .workspace import StoredMessage, Workspace, next_ts

if TYPE_CHECKING:
    from .server import SlackDouble

MAX_TEXT_LENGTH = 40_000
MAX_BLOCKS = 50


def message_content(params: Params) -> dict[str, Any]:
    """The message content fields of a chat.* request, with Slack's size limits."""
    content: dict[str, Any] = {}
    text = params.text("markdown_text") if params.present("markdown_text") else params.text("text")
    if text is not None:
        if len(text) > MAX_TEXT_LENGTH:
            raise SlackError("msg_too_long")
        content["text"] = text
    if params.present("blocks"):
        blocks = params.json("blocks", error="invalid_blocks_format")
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        if len(blocks) > MAX_BLOCKS:
            raise SlackError("invalid_blocks")
        content["blocks"] = blocks
    if params.present("attachments"):
        content["attachments"] = params.json("attachments")
    if params.present("metadata"):
        metadata = params.json("metadata")
        # Slack keeps an empty payload as an object (bolt's assistant `say` sends null
        # when the thread has no context yet).
        if isinstance(metadata, dict) and metadata.get("event_payload") is None:
            metadata = {**metadata, "event_payload": {}}
        content["metadata"] = metadata
    return content


def bot_message(ws: Workspace, params: Params) -> StoredMessage:
    """The app's own message that a call names by channel and ts; others' messages it may not change."""
    conversation = ws.joined_channel(params.text("channel"))
    message = ws.stored(conversation.id, params.text("ts") or "")
    if message.fields.get("bot_id") != ws.bot_id:
        raise SlackError("cant_update_message")
    return message


@web_api("chat.postMessage", NEED_CHANNEL, NEED_MESSAGE_CONTENT)
def chat_post_message(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.joined_channel(params.text("channel"))
    content = message_content(params)
    if params.flag("reply_broadcast") and params.present("thread_ts"):
        content["subtype"] = "thread_broadcast"
    message = ws.post_as_bot(conversation.id, content, params.text("thread_ts"))
    return {"channel": conversation.id, "ts": message.ts, "message": ws.message_view(message)}


@web_api("chat.update", NEED_CHANNEL, NEED_TS, NEED_MESSAGE_CONTENT)
def chat_update(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    message = bot_message(ws, params)
    message.fields |= message_content(params) | {"edited": {"user": ws.bot_user_id, "ts": next_ts()}}
    message.texts.append(message.fields["text"])
    view = {k: v for k, v in ws.message_view(message).items() if k != "ts"}
    return {"channel": message.channel, "ts": message.ts, "text": message.fields["text"], "message": view}


@web_api("chat.delete", NEED_CHANNEL, NEED_TS)
def chat_delete(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    try:
        message = bot_message(ws, params)
    except SlackError as error:
        raise SlackError("cant_delete_message" if error.code == "cant_update_message" else error.code) from None
    message.deleted = True
    return {"channel": message.channel, "ts": message.ts}


@web_api("chat.postEphemeral", NEED_CHANNEL, need("user", error="user_not_in_channel"), NEED_MESSAGE_CONTENT)
def chat_post_ephemeral(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.joined_channel(params.text("channel"))
    user = params.text("user") or ""
    if user not in conversation.members:
        raise SlackError("user_not_in_channel")
    ts = next_ts()
    record = {"channel": conversation.id, "user": user, "ts": ts, **message_content(params)}
    if params.present("thread_ts"):
        record["thread_ts"] = params.text("thread_ts")
    ws.ephemeral.append(record)
    return {"message_ts": ts}


@web_api("chat.getPermalink", NEED_CHANNEL, need("message_ts", error="message_not_found"))
def chat_get_permalink(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.visible_channel(params.text("channel"))
    message = ws.stored(conversation.id, params.text("message_ts") or "")
    permalink = f"https://{ws.domain}.slack.com/archives/{conversation.id}/p{message.ts.replace('.', '')}"
    if message.is_reply:
        permalink += f"?thread_ts={message.thread_root}&cid={conversation.id}"
    return {"channel": conversation.id, "permalink": permalink}

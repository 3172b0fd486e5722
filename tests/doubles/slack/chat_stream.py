"""Streamed messages: chat.startStream, appendStream and stopStream, an answer written as it is generated."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .chat import bot_message, message_content
from .methods import NEED_CHANNEL, NEED_THREAD_TS, NEED_TS, Params, SlackError, need, web_api
from .workspace import StoredMessage, Workspace

if TYPE_CHECKING:
    from .server import SlackDouble


@web_api("chat.startStream", NEED_CHANNEL, NEED_THREAD_TS)
def chat_start_stream(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    conversation = ws.joined_channel(params.text("channel"))
    message = ws.post_as_bot(conversation.id, {"text": _streamed_text(params)}, params.text("thread_ts"))
    message.streaming = True
    return {"channel": conversation.id, "ts": message.ts}


@web_api("chat.appendStream", NEED_CHANNEL, NEED_TS, need("markdown_text", "chunks"))
def chat_append_stream(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    message = _streaming_message(ws, params)
    _append(message, _streamed_text(params))
    return {"channel": message.channel, "ts": message.ts}


@web_api("chat.stopStream", NEED_CHANNEL, NEED_TS)
def chat_stop_stream(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    message = _streaming_message(ws, params)
    _append(message, _streamed_text(params))
    message.fields |= {k: v for k, v in message_content(params).items() if k in ("blocks", "metadata")}
    message.streaming = False
    return {}


def _streaming_message(ws: Workspace, params: Params) -> StoredMessage:
    message = bot_message(ws, params)
    if not message.streaming:
        raise SlackError("message_not_in_streaming_state")
    return message


def _streamed_text(params: Params) -> str:
    chunks = params.json("chunks")
    chunks = chunks if isinstance(chunks, list) else []
    pieces = [params.text("markdown_text") or ""]
    pieces += [c.get("text", "") for c in chunks if isinstance(c, dict) and c.get("type") == "markdown_text"]
    return "".join(pieces)


def _append(message: StoredMessage, text: str) -> None:
    if text:
        message.fields["text"] += text
        message.texts.append(message.fields["text"])

"""Streamed messages: chat.startStream, appendStream and stopStream, an answer written as it is generated.

What Slack enforces is enforced here: the recipient of a stream outside a DM, 12,000 characters of Markdown per
call, nothing after the stop, and a stream that ends by itself when left idle. A workspace can refuse streaming
the way Slack does for a plan or an app that may not stream (Workspace.streaming_refusal).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .chat import bot_message, message_content
from .methods import NEED_CHANNEL, NEED_THREAD_TS, NEED_TS, Params, SlackError, need, web_api
from .workspace import StoredMessage, Workspace

if TYPE_CHECKING:
    from .server import SlackDouble

# docs.slack.dev/reference/methods/chat.startStream: "Limit this field to 12,000 characters."
MAX_MARKDOWN_TEXT = 12_000
CHUNK_TYPES = frozenset({"markdown_text", "task_update", "plan_update", "blocks"})
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})


@web_api("chat.startStream", NEED_CHANNEL, NEED_THREAD_TS)
def chat_start_stream(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    if ws.streaming_refusal:
        raise SlackError(ws.streaming_refusal)
    conversation = ws.joined_channel(params.text("channel"))
    if not conversation.is_im:
        # Outside a DM Slack must know whom the stream is for.
        if not params.present("recipient_user_id"):
            raise SlackError("missing_recipient_user_id")
        if not params.present("recipient_team_id"):
            raise SlackError("missing_recipient_team_id")
    chunks = _chunks(params)
    message = ws.post_as_bot(conversation.id, {"text": ""}, params.text("thread_ts"))
    message.streaming = True
    message.texts.clear()  # it shows what is streamed into it, from the first piece
    _append(message, _streamed_text(params, chunks), chunks)
    return {"channel": conversation.id, "ts": message.ts}


@web_api("chat.appendStream", NEED_CHANNEL, NEED_TS, need("markdown_text", "chunks"))
def chat_append_stream(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    message = _streaming_message(slack, ws, params)
    chunks = _chunks(params)
    _append(message, _streamed_text(params, chunks), chunks)
    return {"channel": message.channel, "ts": message.ts}


@web_api("chat.stopStream", NEED_CHANNEL, NEED_TS)
def chat_stop_stream(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    message = _streaming_message(slack, ws, params)
    chunks = _chunks(params)
    _append(message, _streamed_text(params, chunks), chunks)
    content = message_content(params)
    if "blocks" in content:
        # "A list of blocks that will be rendered at the bottom of the finalized message."
        message.fields["blocks"] = [*message.fields.get("blocks", []), *content["blocks"]]
    if "metadata" in content:
        message.fields["metadata"] = content["metadata"]
    message.streaming = False
    return {}


def _streaming_message(slack: SlackDouble, ws: Workspace, params: Params) -> StoredMessage:
    message = bot_message(ws, params)
    if message.streaming and time.monotonic() - message.streamed_at > slack.stream_idle_seconds:
        message.streaming = False  # Slack ends a stream left idle
    if not message.streaming:
        raise SlackError("message_not_in_streaming_state")
    return message


def _chunks(params: Params) -> list[dict[str, Any]]:
    chunks = params.json("chunks") if params.present("chunks") else []
    if not isinstance(chunks, list) or not all(isinstance(c, dict) and c.get("type") in CHUNK_TYPES for c in chunks):
        raise SlackError("invalid_chunks")
    for chunk in chunks:
        if chunk["type"] == "task_update" and not (
            chunk.get("id") and chunk.get("title") and chunk.get("status") in TASK_STATUSES
        ):
            raise SlackError("invalid_chunks")
        if chunk["type"] == "blocks" and not isinstance(chunk.get("blocks"), list):
            raise SlackError("invalid_chunks")
    return chunks


def _streamed_text(params: Params, chunks: list[dict[str, Any]]) -> str:
    pieces = [params.text("markdown_text") or ""]
    pieces += [str(c.get("text", "")) for c in chunks if c["type"] == "markdown_text"]
    text = "".join(pieces)
    if len(text) > MAX_MARKDOWN_TEXT:
        raise SlackError("msg_too_long")
    return text


def _append(message: StoredMessage, text: str, chunks: list[dict[str, Any]]) -> None:
    """The message shows the Markdown streamed so far as its text, and the blocks streamed into it."""
    message.streamed_at = time.monotonic()
    blocks = [block for chunk in chunks if chunk["type"] == "blocks" for block in chunk["blocks"]]
    if blocks:
        message.fields["blocks"] = [*message.fields.get("blocks", []), *blocks]
    message.chunks += chunks
    if text:
        message.fields["text"] += text
        message.texts.append(message.fields["text"])

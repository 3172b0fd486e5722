"""The chat family of the OpenAI double: POST /chat/completions (streamed or not) and the stored-completions list."""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Literal

from .script import ScriptedAnswer
from .server import ApiCall, ApiError, JsonReply, Reply, Route, ServerCore, StreamEvent, StreamReply

DONE = StreamEvent(None, "[DONE]")
# Error codes a failed answer reports with their own HTTP status; any other failure is a 500.
_ERROR_STATUSES = {"rate_limit_exceeded": 429, "invalid_prompt": 400}
# Arguments of a streamed tool call arrive in this many pieces, as the API splits them.
_ARGUMENT_PIECES = 2


class _Chunks:
    """A completion's chunks as a StreamSource; a stalled one says nothing until its listener hangs up."""

    def __init__(self, chunks: list[dict[str, Any]], script: ScriptedAnswer) -> None:
        self._chunks = deque(StreamEvent(None, chunk) for chunk in chunks)
        self._stalled = script.stall
        self.chunk_delay = script.chunk_delay
        self.first_token_delay = script.first_token_delay

    def next_event(self) -> StreamEvent | None | Literal["wait"]:
        if self._stalled:
            return "wait"
        return self._chunks.popleft() if self._chunks else None

    def release(self) -> None:
        """A completion is no job on the server: once nobody listens there is nothing left to do."""
        self._stalled = False
        self._chunks.clear()


class ChatFamily:
    """Completions answered by the scripted model; a script's tool calls wait for their outputs in a later request."""

    name = "chat"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/chat/completions", self._create_completion),
            Route.of("GET", "/chat/completions", self._list_completions),
        ]

    def reset(self) -> None:
        # Tool call id -> the script that made the call, for each request that brings its output (the same
        # completion asked again gets the same answer, as a model given the same messages would give).
        self._waiting_scripts: dict[str, ScriptedAnswer] = {}
        # The usage each completion reported (streamed or not), oldest first, for tests.
        self.usages: list[dict[str, int]] = []

    def _list_completions(self, call: ApiCall) -> JsonReply:
        """Nothing is ever stored (`store` is not honoured), so the list is empty."""
        return JsonReply({"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False})

    def _create_completion(self, call: ApiCall) -> Reply:
        body = call.body
        messages = body["messages"]
        self._core.record_model_input("chat", [(message["role"], _message_text(message)) for message in messages])
        script, outputs = self._script_for(messages)
        if outputs is None and script.tool_calls:
            calls = [(self._core.new_id("call"), name, arguments) for name, arguments in script.tool_calls]
            for call_id, _, _ in calls:
                self._waiting_scripts[call_id] = script
            text, finish_reason = None, "tool_calls"
        else:
            _raise_if_failed(script)
            calls = []
            text = (
                script.after_tools_text(outputs)
                if outputs is not None
                else script.default_text(_newest_user_text(messages))
            )
            finish_reason = _finish_reason(script)
        completion = _Completion(self._core.new_id("chatcmpl"), self._core.now(), body["model"], messages)
        self.usages.append(completion.usage(text, calls))
        if body.get("stream") and self._core.streaming:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = completion.chunks(script, text, calls, finish_reason, include_usage=include_usage)
            return StreamReply(_Chunks(chunks, script), done=DONE, validate_as="chat")
        return JsonReply(completion.whole(text, calls, finish_reason))

    def _script_for(self, messages: list[dict[str, Any]]) -> tuple[ScriptedAnswer, list[str] | None]:
        """The script that answers, and the tool outputs it gets (None when this is not a call's follow-up)."""
        trailing_tools: list[dict[str, Any]] = []
        for message in reversed(messages):
            if message["role"] != "tool":
                break
            trailing_tools.insert(0, message)
        waiting = [self._waiting_scripts.get(message["tool_call_id"]) for message in trailing_tools]
        if trailing_tools and waiting[0] is not None:
            return waiting[0], [_message_text(message) for message in trailing_tools]
        return self._core.next_script(), None


class _Completion:
    """The fields one completion's JSON answer and chunks share."""

    def __init__(self, completion_id: str, created: int, model: str, messages: list[dict[str, Any]]) -> None:
        self.id, self.created, self.model = completion_id, created, model
        self.prompt_tokens = sum(len(_message_text(message).split()) + 4 for message in messages)

    def usage(self, text: str | None, calls: list[tuple[str, str, dict[str, Any]]]) -> dict[str, int]:
        completion_tokens = len((text or "").split()) + 10 * len(calls)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def whole(
        self, text: str | None, calls: list[tuple[str, str, dict[str, Any]]], finish_reason: str
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
                for call_id, name, arguments in calls
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": self.usage(text, calls),
        }

    def chunks(
        self,
        script: ScriptedAnswer,
        text: str | None,
        calls: list[tuple[str, str, dict[str, Any]]],
        finish_reason: str,
        *,
        include_usage: bool,
    ) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in script.text_pieces(text or "")]
        for index, (call_id, name, arguments) in enumerate(calls):
            deltas.append(
                {
                    "tool_calls": [
                        {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                    ]
                }
            )
            encoded = json.dumps(arguments)
            step = -(-len(encoded) // _ARGUMENT_PIECES)
            deltas += [
                {"tool_calls": [{"index": index, "function": {"arguments": encoded[start : start + step]}}]}
                for start in range(0, len(encoded), step)
            ]
        chunks = [self._chunk([{"index": 0, "delta": delta, "finish_reason": None}]) for delta in deltas]
        chunks.append(self._chunk([{"index": 0, "delta": {}, "finish_reason": finish_reason}]))
        if include_usage:
            chunks.append({**self._chunk([]), "usage": self.usage(text, calls)})
        return chunks

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }


def _raise_if_failed(script: ScriptedAnswer) -> None:
    """A failed (or expired, or cancelled) answer is an error status: a completion has no run to fail."""
    if script.status in ("completed", "incomplete"):
        return
    error = script.error
    status = _ERROR_STATUSES.get(error.get("code") or "", 500)
    raise ApiError(
        status,
        error["message"],
        error_type="server_error" if status >= 500 else "invalid_request_error",
        code=error.get("code"),
    )


def _finish_reason(script: ScriptedAnswer) -> str:
    if script.status != "incomplete":
        return "stop"
    return "content_filter" if script.incomplete_reason.get("reason") == "content_filter" else "length"


def _message_text(message: dict[str, Any]) -> str:
    """What the model reads of a message: its text, its text parts, and a mark per image."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    pieces = [
        part["text"] if part["type"] == "text" else f"[image {part['image_url']['url'][:40]}]"
        for part in content or ()
        if part["type"] in ("text", "image_url")
    ]
    return "\n".join(pieces)


def _newest_user_text(messages: list[dict[str, Any]]) -> str:
    return next((_message_text(message) for message in reversed(messages) if message["role"] == "user"), "")

"""The Responses, Conversations and Containers families of the OpenAI double, driven by the scripted model.

A response is a job whose events are planned when it is created and happen as listeners pull them
(or all at once when nobody listens any more); the conversation gets the response's input and output
items when it completes, as the spec says. A stalled script keeps the response queued until cancelled.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
import zlib
from typing import TYPE_CHECKING, Any, Literal

from .responses_mcp import ResponsesMcp
from .script import ScriptedAnswer
from .server import (
    ApiCall,
    ApiError,
    BinaryReply,
    JsonReply,
    Route,
    ServerCore,
    StreamEvent,
    StreamReply,
    not_found,
    page,
)

if TYPE_CHECKING:
    from .files import FilesFamily

_INCOMPLETE_REASONS = ("max_output_tokens", "content_filter")
_TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})
_CITATION_MARKER_START = "【"
# Models that reason first: they take `reasoning` and refuse sampling parameters; other models refuse `reasoning`.
_REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_SAMPLING_PARAMETERS = ("temperature", "top_p")


def _partial_images(tools: list[dict[str, Any]]) -> int:
    """How many partial images the request's image_generation tool asks to stream (0-3, 0 by default)."""
    return next((int(tool.get("partial_images") or 0) for tool in tools if tool.get("type") == "image_generation"), 0)


def _draft_of(png: bytes, number: int) -> bytes:
    """A partial image: the finished PNG with a text chunk naming the draft before its end (IEND), so that each
    draft's bytes differ from the finished image's and from each other's, and it is still a valid PNG."""
    text = f"Comment\0draft {number}".encode()
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    return png[:-12] + chunk + png[-12:]


def _reasons(model: str) -> bool:
    name = model.rpartition("/")[2].removeprefix("ft:")
    return any(name == prefix or name.startswith((f"{prefix}-", f"{prefix}.")) for prefix in _REASONING_MODEL_PREFIXES)


def _refuse_unsupported_parameters(body: dict[str, Any]) -> None:
    """The API's 400s for parameters the model does not take (as api.openai.com words them, 2025-2026)."""
    model = str(body.get("model") or "")
    refused = [name for name in _SAMPLING_PARAMETERS if body.get(name) is not None] if _reasons(model) else []
    if not _reasons(model) and body.get("reasoning"):
        refused = [f"reasoning.{key}" for key in body["reasoning"]] or ["reasoning"]
    if refused:
        raise ApiError(
            400,
            f"Unsupported parameter: '{refused[0]}' is not supported with this model.",
            param=refused[0],
            code="unsupported_parameter",
        )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(
        part.get("text", "") for part in content or () if part.get("type") in ("input_text", "output_text")
    )


def _seen(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(role, text) of the items the model reads: messages, and function outputs as ("tool", output)."""
    seen: list[tuple[str, str]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            seen.append((item["role"], _text_of(item.get("content"))))
        elif kind == "function_call_output":
            output = item.get("output")
            seen.append(("tool", output if isinstance(output, str) else _text_of(output)))
    return seen


class _Job:
    """One response: its planned events, how many have happened, and what happens when it ends."""

    def __init__(
        self,
        family: ResponsesFamily,
        response: dict[str, Any],
        events: list[tuple[str, dict[str, Any]]],
        *,
        stalled: bool,
        chunk_delay: float,
        first_token_delay: float,
        on_end: Any,
    ) -> None:
        self.family = family
        self.response = response
        self.events = [
            StreamEvent(name, {**data, "sequence_number": index}) for index, (name, data) in enumerate(events)
        ]
        self.emitted = 0
        self.stalled = stalled
        self.chunk_delay = chunk_delay
        self.first_token_delay = first_token_delay
        self._on_end = on_end
        # A background response nobody streams: only retrievals move it on, as polls see a real one progress.
        self.polled = False

    @property
    def finished(self) -> bool:
        return self.response["status"] in _TERMINAL

    def advance(self) -> bool:
        """Let the next planned event happen; False when there is none (finished or stalled)."""
        if self.finished or (self.stalled and self.emitted >= 1) or self.emitted >= len(self.events):
            return False
        event = self.events[self.emitted]
        self.emitted += 1
        snapshot = event.data.get("response")
        if snapshot is not None:
            self.response.update(copy.deepcopy(snapshot))
            if self.finished:
                self._on_end(self.response)
        return True

    def run_out(self) -> None:
        while self.advance():
            pass

    def cancel(self) -> None:
        if self.finished:
            return
        self.events = self.events[: self.emitted]
        self.response.update(status="cancelled")


class _Listener:
    """One stream of a job's events after a sequence number (the StreamSource the core reads)."""

    def __init__(self, job: _Job, starting_after: int) -> None:
        self._job = job
        self._cursor = starting_after + 1
        self.chunk_delay = job.chunk_delay
        # A stream taken up again after a crash starts past the first token: the model had it long ago.
        self.first_token_delay = job.first_token_delay if starting_after < 0 else 0.0

    def next_event(self) -> StreamEvent | None | Literal["wait"]:
        job = self._job
        if self._cursor >= job.emitted and not job.advance():
            return None if job.finished else "wait"
        if self._cursor >= job.emitted:
            return "wait"
        event = job.events[self._cursor]
        self._cursor += 1
        return event

    def release(self) -> None:
        self._job.run_out()


class ResponsesFamily:
    """POST /responses (streamed or not, background or not), followed by id, cancelled, deleted."""

    name = "responses"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/responses", self._create),
            Route.of("GET", "/responses/{response_id}", self._retrieve),
            Route.of("DELETE", "/responses/{response_id}", self._delete),
            Route.of("POST", "/responses/{response_id}/cancel", self._cancel),
        ]

    def reset(self) -> None:
        self.jobs: dict[str, _Job] = {}
        # call id -> the script whose tool calls these are: its answer comes once their outputs are in.
        self._waiting_scripts: dict[str, ScriptedAnswer] = {}
        # Requests with mcp tools: the planned calls, and approvals waiting for their answers.
        self.mcp = ResponsesMcp(self._core)

    # -- for tests ---------------------------------------------------------------------------------

    def response_objects(self) -> list[dict[str, Any]]:
        with self._core.lock:
            return [copy.deepcopy(job.response) for job in self.jobs.values()]

    # -- handlers ----------------------------------------------------------------------------------

    def _create(self, call: ApiCall) -> JsonReply | StreamReply:
        body = call.body
        conversations: ConversationsFamily = self._core.family("conversations")
        conversation = body.get("conversation")
        conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
        if conversation_id is not None and body.get("previous_response_id"):
            raise ApiError(400, "Cannot use both 'conversation' and 'previous_response_id'.", param="conversation")
        prior = conversations.items_of(conversation_id) if conversation_id else self._previous_items(body)
        _refuse_unsupported_parameters(body)
        containers: ContainersFamily = self._core.family("containers")
        containers.refuse_expired(prior)
        raw_input = body.get("input") or []
        inputs = (
            [{"type": "message", "role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input
        )
        seen = ([("system", body["instructions"])] if body.get("instructions") else []) + _seen(prior + inputs)
        self._core.record_model_input("responses", seen)
        background, stream = bool(body.get("background")), bool(body.get("stream")) and self._core.streaming
        response = self._response_object(body, conversation_id)
        by_mcp = self.mcp.answer(inputs, prior, body)
        if by_mcp is None:
            script, output = self._answer(inputs, seen, body)
        else:
            mcp_items, text = by_mcp
            script = ScriptedAnswer(text=text or "")
            output = mcp_items + (self._answer_items(script, text, body) if text else [])
        events = self._plan(response, script, output, background=background)
        input_items = [conversations.resource(item) for item in inputs]

        def on_end(ended: dict[str, Any]) -> None:
            if conversation_id and ended["status"] in ("completed", "incomplete"):
                conversations.append(conversation_id, input_items + copy.deepcopy(ended["output"]))
            ended["_items"] = input_items

        job = _Job(
            self,
            response,
            events,
            stalled=script.stall,
            chunk_delay=script.chunk_delay,
            first_token_delay=script.first_token_delay,
            on_end=on_end,
        )
        self.jobs[response["id"]] = job
        if stream:
            return StreamReply(_Listener(job, -1), done=None, validate_as="responses")
        if background:
            job.polled = True
            job.advance()
        else:
            job.run_out()
        return JsonReply(self._public(job.response))

    def _retrieve(self, call: ApiCall, response_id: str) -> JsonReply | StreamReply:
        job = self._job(response_id)
        if str(call.query.get("stream", "false")).lower() == "true":
            if not job.response.get("background"):
                raise ApiError(400, "Only background responses can be streamed by id.", param="stream")
            if self._core.streaming:
                return StreamReply(
                    _Listener(job, int(call.query.get("starting_after", -1))), done=None, validate_as="responses"
                )
        if job.polled:
            status = job.response["status"]
            while job.response["status"] == status and job.advance():
                pass
        return JsonReply(self._public(job.response))

    def _delete(self, call: ApiCall, response_id: str) -> JsonReply:
        self._job(response_id)
        del self.jobs[response_id]
        return JsonReply({"id": response_id, "object": "response.deleted", "deleted": True})

    def _cancel(self, call: ApiCall, response_id: str) -> JsonReply:
        job = self._job(response_id)
        if not job.response.get("background"):
            raise ApiError(400, "Only responses created with background set to true can be cancelled.")
        if job.finished and job.response["status"] != "cancelled":
            raise ApiError(400, f"Cannot cancel a response with status '{job.response['status']}'.")
        job.cancel()
        return JsonReply(self._public(job.response))

    # -- the model -----------------------------------------------------------------------------------

    def _job(self, response_id: str) -> _Job:
        job = self.jobs.get(response_id)
        if job is None:
            raise not_found("response", response_id)
        return job

    def _previous_items(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        previous = body.get("previous_response_id")
        if not previous:
            return []
        job = self._job(previous)
        return list(job.response.get("_items", [])) + list(job.response.get("output", []))

    def _answer(
        self, inputs: list[dict[str, Any]], seen: list[tuple[str, str]], body: dict[str, Any]
    ) -> tuple[ScriptedAnswer, list[dict[str, Any]]]:
        """The script answering this call, and the output items it makes (before streaming)."""
        outputs = [item for item in inputs if item.get("type") == "function_call_output"]
        waiting = [self._waiting_scripts.pop(item.get("call_id"), None) for item in outputs]
        script = next((found for found in waiting if found is not None), None)
        if script is not None:
            texts = [
                item["output"] if isinstance(item["output"], str) else _text_of(item["output"]) for item in outputs
            ]
            return script, self._answer_items(script, script.after_tools_text(texts), body)
        script = self._core.next_script()
        if script.tool_calls:
            calls = []
            for name, arguments in script.tool_calls:
                call_id = self._core.new_id("call")
                self._waiting_scripts[call_id] = script
                calls.append(
                    {
                        "type": "function_call",
                        "id": self._core.new_id("fc"),
                        "call_id": call_id,
                        "name": name,
                        "arguments": json.dumps(arguments),
                        "status": "completed",
                    }
                )
            return script, calls
        newest_user = next((text for role, text in reversed(seen) if role == "user"), "")
        text = script.default_text(newest_user)
        return script, self._answer_items(script, text, body) if script.status in ("completed", "incomplete") else []

    def _answer_items(self, script: ScriptedAnswer, text: str | None, body: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._thinking(script, body)
        annotations: list[dict[str, Any]] = []
        text = text or ""
        files: FilesFamily = self._core.family("files")
        # An Assistants citation marker (【4:0†source】) is not in a Responses answer's text: only its index is.
        markers = sorted(
            {
                (text.index(marker), marker)
                for kind, marker, _ in script.annotations
                if kind == "file_citation" and marker.startswith(_CITATION_MARKER_START)
            },
            reverse=True,
        )

        def shifted(position: int) -> int:
            return position - sum(len(marker) for start, marker in markers if start < position)

        for kind, marker, file_id in script.annotations:
            start = text.index(marker)
            end = start + len(marker)
            name = files.get(file_id)["filename"]
            if kind == "file_citation":
                index = shifted(start) if marker.startswith(_CITATION_MARKER_START) else shifted(end)
                annotations.append({"type": "file_citation", "file_id": file_id, "filename": name, "index": index})
            else:
                containers: ContainersFamily = self._core.family("containers")
                container_id, container_file_id = containers.hold(file_id)
                items.append(
                    {
                        "type": "code_interpreter_call",
                        "id": self._core.new_id("ci"),
                        "status": "completed",
                        "container_id": container_id,
                        "code": "save_file()",
                        "outputs": [],
                    }
                )
                annotations.append(
                    {
                        "type": "container_file_citation",
                        "container_id": container_id,
                        "file_id": container_file_id,
                        "filename": name,
                        "start_index": shifted(start),
                        "end_index": shifted(end),
                    }
                )
        for start, marker in markers:  # from the end, so that the earlier positions stay valid
            text = text[:start] + text[start + len(marker) :]
        if script.web_sources:
            queries = [title for _, _, title in script.web_sources]
            action = {"type": "search", "query": queries[0], "queries": queries}
            items.append(
                {"type": "web_search_call", "id": self._core.new_id("ws"), "status": "completed", "action": action}
            )
        for cited, url, title in script.web_sources:
            start = text.index(cited)
            annotations.append(
                {
                    "type": "url_citation",
                    "url": url,
                    "title": title,
                    "start_index": start,
                    "end_index": start + len(cited),
                }
            )
        for file_id in script.image_file_ids:
            items.append(
                {
                    "type": "image_generation_call",
                    "id": self._core.new_id("ig"),
                    "status": "completed",
                    "result": base64.b64encode(files.contents[file_id]).decode(),
                }
            )
        if text:
            status = "incomplete" if script.status == "incomplete" else "completed"
            part = {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}
            items.append(
                {
                    "type": "message",
                    "id": self._core.new_id("msg"),
                    "status": status,
                    "role": "assistant",
                    "content": [part],
                }
            )
        return items

    def _thinking(self, script: ScriptedAnswer, body: dict[str, Any]) -> list[dict[str, Any]]:
        """A reasoning model's reasoning item, with the scripted summary when the request asked for one."""
        if not _reasons(str(body.get("model") or "")):
            return []
        asked = bool((body.get("reasoning") or {}).get("summary"))
        summary = [{"type": "summary_text", "text": text} for text in script.reasoning_summary] if asked else []
        return [{"type": "reasoning", "id": self._core.new_id("rs"), "summary": summary}]

    def _response_object(self, body: dict[str, Any], conversation_id: str | None) -> dict[str, Any]:
        return {
            "id": self._core.new_id("resp"),
            "object": "response",
            "created_at": self._core.now(),
            "status": "queued" if body.get("background") else "in_progress",
            "background": bool(body.get("background")),
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "model": body["model"],
            "tools": copy.deepcopy(body.get("tools") or []),
            "tool_choice": body.get("tool_choice", "auto"),
            "output": [],
            "parallel_tool_calls": True,
            "metadata": body.get("metadata") or {},
            "temperature": 1,
            "top_p": 1,
            "store": body.get("store", True),
            "conversation": {"id": conversation_id} if conversation_id else None,
            "previous_response_id": body.get("previous_response_id"),
        }

    def _plan(
        self, response: dict[str, Any], script: ScriptedAnswer, output: list[dict[str, Any]], *, background: bool
    ) -> list[tuple[str, dict[str, Any]]]:
        """The response's stream events, each response snapshot as it is at that point."""

        def snapshot(**changes: Any) -> dict[str, Any]:
            return {**copy.deepcopy(response), **changes}

        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"type": "response.created", "response": snapshot()})
        ]
        if script.stall:
            return events
        events.append(
            ("response.in_progress", {"type": "response.in_progress", "response": snapshot(status="in_progress")})
        )
        partial_images = _partial_images(response.get("tools") or [])
        for index, item in enumerate(output):
            events += self._item_events(index, item, script, partial_images=partial_images)
        final_status = {"expired": "failed"}.get(script.status, script.status)
        if output and output[0]["type"] == "function_call":
            final_status = "completed"
        seen_text = sum(len(_text_of(item.get("content"))) for item in output if item["type"] == "message")
        final = snapshot(
            status=final_status,
            output=copy.deepcopy(output),
            completed_at=self._core.now() if final_status == "completed" else None,
            usage={
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": max(seen_text // 4, 1),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 10 + max(seen_text // 4, 1),
            },
        )
        if final_status == "failed":
            final["error"] = dict(script.error)
            events.append(("response.failed", {"type": "response.failed", "response": final}))
        elif final_status == "incomplete":
            reason = script.incomplete_reason.get("reason")
            final["incomplete_details"] = {"reason": reason if reason in _INCOMPLETE_REASONS else "max_output_tokens"}
            events.append(("response.incomplete", {"type": "response.incomplete", "response": final}))
        elif final_status == "cancelled":
            final["status"] = "cancelled"
            events.append(("response.failed", {"type": "response.failed", "response": final}))
        else:
            events.append(("response.completed", {"type": "response.completed", "response": final}))
        return events

    def _item_events(
        self, index: int, item: dict[str, Any], script: ScriptedAnswer, *, partial_images: int
    ) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        if item["type"] != "message":
            started = {**copy.deepcopy(item), "status": "in_progress"}
            if item["type"] == "image_generation_call":
                started["result"] = None
            if item["type"] == "function_call":
                started["arguments"] = ""
            if item["type"] == "reasoning":
                started = {**started, "summary": []}
                del started["status"]
            events.append(
                (
                    "response.output_item.added",
                    {"type": "response.output_item.added", "output_index": index, "item": started},
                )
            )
            events += self._tool_events(index, item, partial_images=partial_images)
        else:
            part = item["content"][0]
            ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(
                (
                    "response.output_item.added",
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": {**item, "status": "in_progress", "content": []},
                    },
                )
            )
            events.append(
                (
                    "response.content_part.added",
                    {
                        "type": "response.content_part.added",
                        **ids,
                        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                    },
                )
            )
            for piece in script.text_pieces(part["text"]):
                events.append(
                    (
                        "response.output_text.delta",
                        {"type": "response.output_text.delta", **ids, "delta": piece, "logprobs": []},
                    )
                )
            events.append(
                (
                    "response.output_text.done",
                    {"type": "response.output_text.done", **ids, "text": part["text"], "logprobs": []},
                )
            )
            events.append(
                (
                    "response.content_part.done",
                    {"type": "response.content_part.done", **ids, "part": copy.deepcopy(part)},
                )
            )
        events.append(
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": index, "item": copy.deepcopy(item)},
            )
        )
        return events

    @staticmethod
    def _tool_events(index: int, item: dict[str, Any], *, partial_images: int) -> list[tuple[str, dict[str, Any]]]:
        """A web search's or an image generation's own phases (with the partial images the request asked for), or
        a reasoning item's summary parts, as the API streams them."""
        ids = {"item_id": item["id"], "output_index": index}
        if item["type"] == "web_search_call":
            phases = ("in_progress", "searching", "completed")
            return [(f"response.web_search_call.{p}", {"type": f"response.web_search_call.{p}", **ids}) for p in phases]
        if item["type"] == "image_generation_call":
            image = base64.b64decode(item["result"])
            kind = "response.image_generation_call."
            partials = [
                (
                    f"{kind}partial_image",
                    {
                        "type": f"{kind}partial_image",
                        **ids,
                        "partial_image_index": number,
                        "partial_image_b64": base64.b64encode(_draft_of(image, number + 1)).decode(),
                        "output_format": "png",
                    },
                )
                for number in range(partial_images)
            ]
            before = [(f"{kind}{p}", {"type": f"{kind}{p}", **ids}) for p in ("in_progress", "generating")]
            return [*before, *partials, (f"{kind}completed", {"type": f"{kind}completed", **ids})]
        events: list[tuple[str, dict[str, Any]]] = []
        for number, part in enumerate(item.get("summary") or () if item["type"] == "reasoning" else ()):
            at = {**ids, "summary_index": number}
            empty = {"type": "summary_text", "text": ""}
            events += [
                (
                    "response.reasoning_summary_part.added",
                    {"type": "response.reasoning_summary_part.added", **at, "part": empty},
                ),
                (
                    "response.reasoning_summary_text.delta",
                    {"type": "response.reasoning_summary_text.delta", **at, "delta": part["text"]},
                ),
                (
                    "response.reasoning_summary_text.done",
                    {"type": "response.reasoning_summary_text.done", **at, "text": part["text"]},
                ),
                (
                    "response.reasoning_summary_part.done",
                    {"type": "response.reasoning_summary_part.done", **at, "part": dict(part)},
                ),
            ]
        return events

    @staticmethod
    def _public(response: dict[str, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(value) for key, value in response.items() if not key.startswith("_")}


class ConversationsFamily:
    """Conversations and their items, in the order they were added."""

    name = "conversations"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/conversations", self._create),
            Route.of("GET", "/conversations/{conversation_id}", self._retrieve),
            Route.of("DELETE", "/conversations/{conversation_id}", self._delete),
            Route.of("POST", "/conversations/{conversation_id}/items", self._add_items),
            Route.of("GET", "/conversations/{conversation_id}/items", self._list_items),
            Route.of("DELETE", "/conversations/{conversation_id}/items/{item_id}", self._delete_item),
        ]

    def reset(self) -> None:
        self.conversations: dict[str, dict[str, Any]] = {}
        self.items: dict[str, list[dict[str, Any]]] = {}

    # -- for the responses family and tests ----------------------------------------------------------

    def items_of(self, conversation_id: str) -> list[dict[str, Any]]:
        self._get(conversation_id)
        return copy.deepcopy(self.items[conversation_id])

    def append(self, conversation_id: str, items: list[dict[str, Any]]) -> None:
        if conversation_id in self.items:
            self.items[conversation_id] += copy.deepcopy(items)

    def resource(self, item: dict[str, Any]) -> dict[str, Any]:
        """An input item as the conversation keeps it: with an id and a status, text as content parts."""
        kind = item.get("type", "message")
        if kind == "message":
            role = item["role"]
            content = item.get("content")
            if isinstance(content, str):
                text_type = "output_text" if role == "assistant" else "input_text"
                part: dict[str, Any] = {"type": text_type, "text": content}
                if text_type == "output_text":
                    part.update(annotations=[], logprobs=[])
                content = [part]
            else:
                content = [
                    {**part, "detail": part.get("detail") or "auto"}
                    if part.get("type") == "input_image"
                    else dict(part)
                    for part in content
                ]
            return {
                "type": "message",
                "id": self._core.new_id("msg"),
                "status": "completed",
                "role": role,
                "content": content,
            }
        resource = {**copy.deepcopy(item), "id": item.get("id") or self._core.new_id("fco"), "status": "completed"}
        return resource

    # -- handlers ----------------------------------------------------------------------------------

    def _get(self, conversation_id: str) -> dict[str, Any]:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            raise not_found("conversation", conversation_id)
        return conversation

    def _create(self, call: ApiCall) -> JsonReply:
        body = call.body or {}
        conversation = {
            "id": self._core.new_id("conv"),
            "object": "conversation",
            "created_at": self._core.now(),
            "metadata": body.get("metadata") or {},
        }
        self.conversations[conversation["id"]] = conversation
        self.items[conversation["id"]] = [self.resource(item) for item in body.get("items") or []]
        return JsonReply(copy.deepcopy(conversation))

    def _retrieve(self, call: ApiCall, conversation_id: str) -> JsonReply:
        return JsonReply(copy.deepcopy(self._get(conversation_id)))

    def _delete(self, call: ApiCall, conversation_id: str) -> JsonReply:
        self._get(conversation_id)
        del self.conversations[conversation_id]
        del self.items[conversation_id]
        return JsonReply({"id": conversation_id, "object": "conversation.deleted", "deleted": True})

    def _add_items(self, call: ApiCall, conversation_id: str) -> JsonReply:
        self._get(conversation_id)
        added = [self.resource(item) for item in call.body["items"]]
        self.items[conversation_id] += added
        return JsonReply(
            {
                "object": "list",
                "data": copy.deepcopy(added),
                "has_more": False,
                "first_id": added[0]["id"] if added else None,
                "last_id": added[-1]["id"] if added else None,
            }
        )

    def _list_items(self, call: ApiCall, conversation_id: str) -> JsonReply:
        self._get(conversation_id)
        return JsonReply(page(self.items[conversation_id], call.query))

    def _delete_item(self, call: ApiCall, conversation_id: str, item_id: str) -> JsonReply:
        conversation = self._get(conversation_id)
        items = self.items[conversation_id]
        if not any(item["id"] == item_id for item in items):
            raise not_found("item", item_id)
        self.items[conversation_id] = [item for item in items if item["id"] != item_id]
        return JsonReply(copy.deepcopy(conversation))


class ContainersFamily:
    """Code interpreter containers holding the files the scripted model made."""

    name = "containers"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [
            Route.of("GET", "/containers/{container_id}", self._retrieve),
            Route.of("GET", "/containers/{container_id}/files/{file_id}/content", self._content),
        ]

    def reset(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.contents: dict[tuple[str, str], bytes] = {}

    def hold(self, file_id: str) -> tuple[str, str]:
        """A new container holding a copy of the files family's file; returns (container id, container file id)."""
        files: FilesFamily = self._core.family("files")
        container = {
            "id": self._core.new_id("cntr"),
            "object": "container",
            "name": "auto",
            "created_at": self._core.now(),
            "status": "running",
        }
        self.containers[container["id"]] = container
        container_file_id = self._core.new_id("cfile")
        self.contents[(container["id"], container_file_id)] = files.contents[file_id]
        return container["id"], container_file_id

    def expire_all(self) -> None:
        """Every container expires (20 idle minutes on the real API): files in them are gone."""
        for container in self.containers.values():
            container["status"] = "expired"

    def refuse_expired(self, context: list[dict[str, Any]]) -> None:
        """The API's 400 for a response whose context holds a code interpreter call bound to an expired container."""
        for item in context:
            container = self.containers.get(item.get("container_id") or "")
            if item.get("type") == "code_interpreter_call" and container and container["status"] == "expired":
                raise ApiError(400, "Container is expired.", param="tools")

    def _retrieve(self, call: ApiCall, container_id: str) -> JsonReply:
        container = self.containers.get(container_id)
        if container is None:
            raise not_found("container", container_id)
        return JsonReply(copy.deepcopy(container))

    def _content(self, call: ApiCall, container_id: str, file_id: str) -> BinaryReply:
        content = self.contents.get((container_id, file_id))
        if content is None or self.containers[container_id]["status"] == "expired":
            raise not_found("container file", file_id)
        return BinaryReply(content)

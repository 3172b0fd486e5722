"""The assistants family of the OpenAI double: assistants, threads, messages, runs and run steps."""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .script import ScriptedAnswer, annotation
from .server import ApiCall, ApiError, JsonReply, Route, ServerCore, StreamEvent, StreamReply, not_found, page

ACTIVE_RUN_STATUSES = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
_RUN_LIFETIME_SECONDS = 600
_DONE_EVENT = StreamEvent("done", "[DONE]")
# Why the answer message of a run that did not complete is incomplete.
_MESSAGE_INCOMPLETE_REASONS = {
    "incomplete": "max_tokens",
    "failed": "run_failed",
    "expired": "run_expired",
    "cancelled": "run_cancelled",
}
# The status (and stream event suffix) a run step ends in when its run ends in a given status.
_STEP_FINAL_STATUSES = {
    "completed": "completed",
    "incomplete": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
# Statuses in which a run's life is not over although nothing drives it (a stalled run).
_WAITING_RUN_STATUSES = frozenset({"queued", "in_progress", "cancelling"})
_ASSISTANT_FIELDS = (
    "model",
    "name",
    "description",
    "instructions",
    "tools",
    "tool_resources",
    "metadata",
    "temperature",
    "top_p",
    "reasoning_effort",
    "response_format",
)


@dataclass
class _Run:
    """A run object plus what drives it: its script and the rest of its life as a stream of events."""

    data: dict[str, Any]
    script: ScriptedAnswer
    events: Iterator[StreamEvent] = field(default_factory=lambda: iter(()))
    # While a stream delivers the events, polling must not consume them.
    streamed: bool = False


class _RunStream:
    """A run's events as a StreamSource: some leading events (thread.created), then the run's own life."""

    def __init__(self, family: AssistantsFamily, run: _Run, leading_events: list[StreamEvent]) -> None:
        self._family = family
        self._run = run
        self._leading = deque(leading_events)
        self.chunk_delay = run.script.chunk_delay
        self.first_token_delay = run.script.first_token_delay

    def next_event(self) -> StreamEvent | None | Literal["wait"]:
        if self._leading:
            return self._leading.popleft()
        if self._run.data["id"] not in self._family.runs:
            return None  # its thread was deleted
        event = next(self._run.events, None)
        if event is None and self._run.data["status"] in _WAITING_RUN_STATUSES:
            return "wait"
        return event

    def release(self) -> None:
        """Live out the rest of the run at once, since no stream paces it any more, and let polls drive it again."""
        for _ in self._run.events:
            pass
        self._run.streamed = False


class AssistantsFamily:
    """The Assistants API v2; each run's life is a generator of events that a stream or polls consume."""

    name = "assistants"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/assistants", self._create_assistant, beta=True),
            Route.of("GET", "/assistants", self._list_assistants, beta=True),
            Route.of("GET", "/assistants/{assistant_id}", self._retrieve_assistant, beta=True),
            Route.of("POST", "/assistants/{assistant_id}", self._modify_assistant, beta=True),
            Route.of("DELETE", "/assistants/{assistant_id}", self._delete_assistant, beta=True),
            Route.of("POST", "/threads", self._create_thread, beta=True),
            Route.of("POST", "/threads/runs", self._create_thread_and_run, beta=True),
            Route.of("GET", "/threads/{thread_id}", self._retrieve_thread, beta=True),
            Route.of("POST", "/threads/{thread_id}", self._modify_thread, beta=True),
            Route.of("DELETE", "/threads/{thread_id}", self._delete_thread, beta=True),
            Route.of("POST", "/threads/{thread_id}/messages", self._create_message, beta=True),
            Route.of("GET", "/threads/{thread_id}/messages", self._list_messages, beta=True),
            Route.of("GET", "/threads/{thread_id}/messages/{message_id}", self._retrieve_message, beta=True),
            Route.of("POST", "/threads/{thread_id}/runs", self._create_run, beta=True),
            Route.of("GET", "/threads/{thread_id}/runs", self._list_runs, beta=True),
            Route.of("GET", "/threads/{thread_id}/runs/{run_id}", self._retrieve_run, beta=True),
            Route.of(
                "POST", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", self._submit_tool_outputs, beta=True
            ),
            Route.of("POST", "/threads/{thread_id}/runs/{run_id}/cancel", self._cancel_run, beta=True),
            Route.of("GET", "/threads/{thread_id}/runs/{run_id}/steps", self._list_run_steps, beta=True),
            Route.of("GET", "/threads/{thread_id}/runs/{run_id}/steps/{step_id}", self._retrieve_run_step, beta=True),
        ]

    def reset(self) -> None:
        self.assistants: dict[str, dict[str, Any]] = {}
        self.threads: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}
        self.runs: dict[str, _Run] = {}
        self.steps: dict[str, dict[str, dict[str, Any]]] = {}
        self.tool_outputs: list[dict[str, Any]] = []

    # -- inspection (copies, for tests) -----------------------------------------------------------------

    def assistant_objects(self) -> list[dict[str, Any]]:
        with self._core.lock:
            return copy.deepcopy(list(self.assistants.values()))

    def thread_objects(self) -> list[dict[str, Any]]:
        with self._core.lock:
            return copy.deepcopy(list(self.threads.values()))

    def thread_messages(self, thread_id: str) -> list[dict[str, Any]]:
        with self._core.lock:
            return copy.deepcopy(list(self.messages.get(thread_id, {}).values()))

    def runs_of(self, thread_id: str) -> list[dict[str, Any]]:
        with self._core.lock:
            return [copy.deepcopy(run.data) for run in self.runs.values() if run.data["thread_id"] == thread_id]

    def submitted_tool_outputs(self) -> list[dict[str, Any]]:
        with self._core.lock:
            return copy.deepcopy(self.tool_outputs)

    # -- assistants -----------------------------------------------------------------------------------

    def _create_assistant(self, call: ApiCall) -> JsonReply:
        assistant = {
            "id": self._core.new_id("asst"),
            "object": "assistant",
            "created_at": self._core.now(),
            "name": None,
            "description": None,
            "instructions": None,
            "tools": [],
            "tool_resources": {},
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "response_format": "auto",
        }
        assistant.update({key: call.body[key] for key in _ASSISTANT_FIELDS if call.body.get(key) is not None})
        self.assistants[assistant["id"]] = assistant
        return JsonReply(copy.deepcopy(assistant))

    def _list_assistants(self, call: ApiCall) -> JsonReply:
        return JsonReply(page(list(self.assistants.values()), call.query))

    def _retrieve_assistant(self, call: ApiCall, assistant_id: str) -> JsonReply:
        return JsonReply(copy.deepcopy(self._assistant(assistant_id)))

    def _modify_assistant(self, call: ApiCall, assistant_id: str) -> JsonReply:
        assistant = self._assistant(assistant_id)
        assistant.update({key: call.body[key] for key in _ASSISTANT_FIELDS if key in call.body})
        return JsonReply(copy.deepcopy(assistant))

    def _delete_assistant(self, call: ApiCall, assistant_id: str) -> JsonReply:
        self._assistant(assistant_id)
        del self.assistants[assistant_id]
        return JsonReply({"id": assistant_id, "object": "assistant.deleted", "deleted": True})

    # -- threads and messages ---------------------------------------------------------------------------

    def _create_thread(self, call: ApiCall) -> JsonReply:
        return JsonReply(copy.deepcopy(self._new_thread(call.body or {})))

    def _retrieve_thread(self, call: ApiCall, thread_id: str) -> JsonReply:
        return JsonReply(copy.deepcopy(self._thread(thread_id)))

    def _modify_thread(self, call: ApiCall, thread_id: str) -> JsonReply:
        thread = self._thread(thread_id)
        thread.update({key: call.body[key] for key in ("metadata", "tool_resources") if key in (call.body or {})})
        return JsonReply(copy.deepcopy(thread))

    def _delete_thread(self, call: ApiCall, thread_id: str) -> JsonReply:
        self._thread(thread_id)
        del self.threads[thread_id]
        del self.messages[thread_id]
        for run_id in [run_id for run_id, run in self.runs.items() if run.data["thread_id"] == thread_id]:
            del self.runs[run_id]
            self.steps.pop(run_id, None)
        return JsonReply({"id": thread_id, "object": "thread.deleted", "deleted": True})

    def _create_message(self, call: ApiCall, thread_id: str) -> JsonReply:
        self._thread(thread_id)
        active = self._active_run(thread_id)
        if active is not None:
            raise ApiError(400, f"Can't add messages to {thread_id} while a run {active['id']} is active.")
        return JsonReply(copy.deepcopy(self._add_requested_message(thread_id, call.body)))

    def _list_messages(self, call: ApiCall, thread_id: str) -> JsonReply:
        self._thread(thread_id)
        messages = list(self.messages[thread_id].values())
        run_id = call.query.get("run_id")
        if run_id is not None:
            messages = [message for message in messages if message["run_id"] == run_id]
        return JsonReply(page(messages, call.query))

    def _retrieve_message(self, call: ApiCall, thread_id: str, message_id: str) -> JsonReply:
        self._thread(thread_id)
        message = self.messages[thread_id].get(message_id)
        if message is None:
            raise not_found("message", message_id)
        return JsonReply(copy.deepcopy(message))

    # -- runs ---------------------------------------------------------------------------------------------

    def _create_run(self, call: ApiCall, thread_id: str) -> JsonReply | StreamReply:
        self._thread(thread_id)
        active = self._active_run(thread_id)
        if active is not None:
            raise ApiError(400, f"Thread {thread_id} already has an active run {active['id']}.")
        assistant = self._assistant(call.body["assistant_id"])
        for message in call.body.get("additional_messages") or []:
            self._add_requested_message(thread_id, message)
        run = self._start_run(thread_id, assistant, call.body)
        return self._run_reply(run, call.body)

    def _create_thread_and_run(self, call: ApiCall) -> JsonReply | StreamReply:
        assistant = self._assistant(call.body["assistant_id"])
        thread = self._new_thread(call.body.get("thread") or {})
        run = self._start_run(thread["id"], assistant, call.body)
        return self._run_reply(run, call.body, [StreamEvent("thread.created", copy.deepcopy(thread))])

    def _list_runs(self, call: ApiCall, thread_id: str) -> JsonReply:
        self._thread(thread_id)
        runs = [run.data for run in self.runs.values() if run.data["thread_id"] == thread_id]
        return JsonReply(page(runs, call.query))

    def _retrieve_run(self, call: ApiCall, thread_id: str, run_id: str) -> JsonReply:
        run = self._run(thread_id, run_id)
        if not run.streamed:
            # Without a stream nothing else drives the run: each retrieval moves it one status on.
            status = run.data["status"]
            while run.data["status"] == status and next(run.events, None) is not None:
                pass
        return JsonReply(copy.deepcopy(run.data))

    def _submit_tool_outputs(self, call: ApiCall, thread_id: str, run_id: str) -> JsonReply | StreamReply:
        run = self._run(thread_id, run_id)
        status = run.data["status"]
        if status != "requires_action":
            raise ApiError(400, f'Runs in status "{status}" do not accept tool outputs.')
        expected = [tool_call["id"] for tool_call in run.data["required_action"]["submit_tool_outputs"]["tool_calls"]]
        outputs = call.body["tool_outputs"]
        given = [output.get("tool_call_id") for output in outputs]
        if sorted(expected, key=str) != sorted(given, key=str):
            raise ApiError(400, f"Expected tool outputs for call_ids {expected}, got {given}", param="tool_outputs")
        outputs_by_call = {output["tool_call_id"]: output.get("output", "") for output in outputs}
        self.tool_outputs += [
            {"run_id": run_id, "tool_call_id": call_id, "output": output} for call_id, output in outputs_by_call.items()
        ]
        step = next(step for step in self.steps[run_id].values() if step["status"] == "in_progress")
        for tool_call in step["step_details"]["tool_calls"]:
            tool_call["function"]["output"] = outputs_by_call[tool_call["id"]]
        step.update(status="completed", completed_at=self._core.now())
        run.data.update(status="queued", required_action=None)
        ordered_outputs = [outputs_by_call[call_id] for call_id in expected]
        self._core.record_model_input(
            "assistants", [*self._model_view(run), *(("tool", output) for output in ordered_outputs)]
        )
        run.events = self._after_tool_outputs(run, step, ordered_outputs)
        return self._run_reply(run, call.body)

    def _cancel_run(self, call: ApiCall, thread_id: str, run_id: str) -> JsonReply:
        run = self._run(thread_id, run_id)
        status = run.data["status"]
        if status not in ACTIVE_RUN_STATUSES or status == "cancelling":
            raise ApiError(400, f"Cannot cancel run with status '{status}'.")
        run.data["status"] = "cancelling"
        run.events = self._cancellation(run)
        return JsonReply(copy.deepcopy(run.data))

    def _list_run_steps(self, call: ApiCall, thread_id: str, run_id: str) -> JsonReply:
        self._run(thread_id, run_id)
        return JsonReply(page(list(self.steps[run_id].values()), call.query))

    def _retrieve_run_step(self, call: ApiCall, thread_id: str, run_id: str, step_id: str) -> JsonReply:
        self._run(thread_id, run_id)
        step = self.steps[run_id].get(step_id)
        if step is None:
            raise not_found("run step", step_id)
        return JsonReply(copy.deepcopy(step))

    def _run_reply(
        self, run: _Run, body: dict[str, Any], leading_events: list[StreamEvent] | None = None
    ) -> JsonReply | StreamReply:
        """Stream the run if asked (and streaming is on); otherwise answer its current state as JSON."""
        if body.get("stream") and self._core.streaming:
            run.streamed = True
            return StreamReply(_RunStream(self, run, leading_events or []), done=_DONE_EVENT, validate_as="assistants")
        return JsonReply(copy.deepcopy(run.data))

    # -- run life cycle -------------------------------------------------------------------------------
    # Each generator changes the state first and then yields the event announcing it, so whoever
    # consumes the events (a stream, a poll, a cut connection) sees exactly the state they describe.

    def _start_run(self, thread_id: str, assistant: dict[str, Any], body: dict[str, Any]) -> _Run:
        now = self._core.now()
        instructions = body.get("instructions") or assistant["instructions"] or ""
        if body.get("additional_instructions"):
            instructions = f"{instructions}\n{body['additional_instructions']}".strip()
        data = {
            "id": self._core.new_id("run"),
            "object": "thread.run",
            "created_at": now,
            "thread_id": thread_id,
            "assistant_id": assistant["id"],
            "status": "queued",
            "required_action": None,
            "last_error": None,
            "expires_at": now + _RUN_LIFETIME_SECONDS,
            "started_at": None,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": None,
            "incomplete_details": None,
            "model": body.get("model") or assistant["model"],
            "instructions": instructions,
            "tools": body["tools"] if body.get("tools") is not None else copy.deepcopy(assistant["tools"]),
            "metadata": body.get("metadata") or {},
            "usage": None,
            "temperature": _first_given(body.get("temperature"), assistant["temperature"]),
            "top_p": _first_given(body.get("top_p"), assistant["top_p"]),
            "max_prompt_tokens": body.get("max_prompt_tokens"),
            "max_completion_tokens": body.get("max_completion_tokens"),
            "truncation_strategy": body.get("truncation_strategy") or {"type": "auto", "last_messages": None},
            "tool_choice": body.get("tool_choice") or "auto",
            "parallel_tool_calls": _first_given(body.get("parallel_tool_calls"), True),
            "response_format": body.get("response_format") or assistant["response_format"],
        }
        run = _Run(data, self._core.next_script())
        run.events = self._lifecycle(run)
        self.runs[data["id"]] = run
        self.steps[data["id"]] = {}
        self._core.record_model_input("assistants", self._model_view(run))
        return run

    def _model_view(self, run: _Run) -> list[tuple[str, str]]:
        """What the model sees for this run: its instructions, then the thread's earlier messages."""
        instructions = [("system", run.data["instructions"])] if run.data["instructions"] else []
        messages = [
            (message["role"], _message_text(message))
            for message in self.messages[run.data["thread_id"]].values()
            if message["run_id"] != run.data["id"]
        ]
        return instructions + messages

    def _lifecycle(self, run: _Run) -> Iterator[StreamEvent]:
        yield _run_event("created", run)
        yield _run_event("queued", run)
        if run.script.stall:
            return
        run.data.update(status="in_progress", started_at=self._core.now())
        yield _run_event("in_progress", run)
        if run.script.tool_calls:
            yield from self._request_tool_outputs(run)
        else:
            yield from self._answer(run, run.script.default_text(self._newest_user_text(run.data["thread_id"])))

    def _request_tool_outputs(self, run: _Run) -> Iterator[StreamEvent]:
        tool_calls = [
            {
                "id": self._core.new_id("call"),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for name, arguments in run.script.tool_calls
        ]
        step_calls = [{**tool_call, "function": {**tool_call["function"], "output": None}} for tool_call in tool_calls]
        step = self._add_step(run, {"type": "tool_calls", "tool_calls": step_calls})
        yield _step_event("created", step)
        yield _step_event("in_progress", step)
        run.data.update(
            status="requires_action",
            required_action={"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": tool_calls}},
        )
        yield _run_event("requires_action", run)

    def _after_tool_outputs(self, run: _Run, step: dict[str, Any], outputs: list[str]) -> Iterator[StreamEvent]:
        yield _step_event("completed", step)
        yield _run_event("queued", run)
        run.data["status"] = "in_progress"
        yield _run_event("in_progress", run)
        yield from self._answer(run, run.script.after_tools_text(outputs))

    def _answer(self, run: _Run, text: str | None) -> Iterator[StreamEvent]:
        final_status = run.script.status
        if text is None:
            yield from self._settle(run, final_status)
            return
        message = self._add_message(
            run.data["thread_id"],
            role="assistant",
            content=[],
            status="in_progress",
            assistant_id=run.data["assistant_id"],
            run_id=run.data["id"],
        )
        step = self._add_step(run, {"type": "message_creation", "message_creation": {"message_id": message["id"]}})
        yield _step_event("created", step)
        yield _step_event("in_progress", step)
        yield StreamEvent("thread.message.created", copy.deepcopy(message))
        yield StreamEvent("thread.message.in_progress", copy.deepcopy(message))
        for piece in run.script.text_pieces(text):
            if not message["content"]:
                message["content"].append({"type": "text", "text": {"value": "", "annotations": []}})
            message["content"][0]["text"]["value"] += piece
            delta = {"content": [{"index": 0, "type": "text", "text": {"value": piece, "annotations": []}}]}
            message_delta = {"id": message["id"], "object": "thread.message.delta", "delta": delta}
            yield StreamEvent("thread.message.delta", message_delta)
        if message["content"]:
            message["content"][0]["text"]["annotations"] = [
                annotation(kind, marker, file_id, text) for kind, marker, file_id in run.script.annotations
            ]
        message["content"] += [
            {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}
            for file_id in run.script.image_file_ids
        ]
        yield from self._settle(run, final_status)

    def _cancellation(self, run: _Run) -> Iterator[StreamEvent]:
        yield _run_event("cancelling", run)
        yield from self._settle(run, "cancelled")

    def _settle(self, run: _Run, final_status: str) -> Iterator[StreamEvent]:
        """End the run's open message and step, then the run itself, in `final_status`."""
        now = self._core.now()
        for message in self.messages[run.data["thread_id"]].values():
            if message["run_id"] == run.data["id"] and message["status"] == "in_progress":
                if final_status == "completed":
                    message.update(status="completed", completed_at=now)
                else:
                    reason = _MESSAGE_INCOMPLETE_REASONS[final_status]
                    message.update(status="incomplete", incomplete_at=now, incomplete_details={"reason": reason})
                yield StreamEvent(f"thread.message.{message['status']}", copy.deepcopy(message))
        step_status = _STEP_FINAL_STATUSES[final_status]
        for step in self.steps[run.data["id"]].values():
            if step["status"] == "in_progress":
                step.update(status=step_status, **{f"{step_status}_at": now})
                if step_status == "failed":
                    step["last_error"] = {"code": "server_error", "message": run.script.error["message"]}
                yield _step_event(step_status, step)
        run.data.update(status=final_status, required_action=None)
        if final_status != "expired":
            run.data["expires_at"] = None
        if final_status in ("completed", "incomplete"):
            run.data.update(completed_at=now, usage=self._usage(run))
        if final_status == "incomplete":
            run.data["incomplete_details"] = run.script.incomplete_reason
        elif final_status == "failed":
            run.data.update(failed_at=now, last_error=run.script.error)
        elif final_status == "cancelled":
            run.data["cancelled_at"] = now
        yield _run_event(final_status, run)

    def _usage(self, run: _Run) -> dict[str, int]:
        """Deterministic token counts: words of the prompt (instructions and earlier messages) and of the answer."""
        messages = self.messages[run.data["thread_id"]].values()
        prompt = len(run.data["instructions"].split()) + sum(
            len(_message_text(m).split()) for m in messages if m["run_id"] != run.data["id"]
        )
        completion = sum(len(_message_text(m).split()) for m in messages if m["run_id"] == run.data["id"])
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # -- state helpers ----------------------------------------------------------------------------------

    def _assistant(self, assistant_id: str) -> dict[str, Any]:
        assistant = self.assistants.get(assistant_id)
        if assistant is None:
            raise not_found("assistant", assistant_id)
        return assistant

    def _thread(self, thread_id: str) -> dict[str, Any]:
        thread = self.threads.get(thread_id)
        if thread is None:
            raise not_found("thread", thread_id)
        return thread

    def _run(self, thread_id: str, run_id: str) -> _Run:
        self._thread(thread_id)
        run = self.runs.get(run_id)
        if run is None or run.data["thread_id"] != thread_id:
            raise not_found("run", run_id)
        return run

    def _active_run(self, thread_id: str) -> dict[str, Any] | None:
        return next(
            (
                run.data
                for run in self.runs.values()
                if run.data["thread_id"] == thread_id and run.data["status"] in ACTIVE_RUN_STATUSES
            ),
            None,
        )

    def _new_thread(self, request: dict[str, Any]) -> dict[str, Any]:
        thread = {
            "id": self._core.new_id("thread"),
            "object": "thread",
            "created_at": self._core.now(),
            "tool_resources": request.get("tool_resources") or {},
            "metadata": request.get("metadata") or {},
        }
        self.threads[thread["id"]] = thread
        self.messages[thread["id"]] = {}
        for message in request.get("messages") or []:
            self._add_requested_message(thread["id"], message)
        return thread

    def _add_requested_message(self, thread_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Add a message as a client asked for it (CreateMessageRequest)."""
        content = request["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        return self._add_message(
            thread_id,
            role=request["role"],
            content=[_stored_content_part(part) for part in parts],
            status="completed",
            attachments=request.get("attachments") or [],
            metadata=request.get("metadata") or {},
        )

    def _add_message(
        self,
        thread_id: str,
        *,
        role: str,
        content: list[dict[str, Any]],
        status: str,
        assistant_id: str | None = None,
        run_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        message = {
            "id": self._core.new_id("msg"),
            "object": "thread.message",
            "created_at": self._core.now(),
            "thread_id": thread_id,
            "status": status,
            "incomplete_details": None,
            "completed_at": None,
            "incomplete_at": None,
            "role": role,
            "content": content,
            "assistant_id": assistant_id,
            "run_id": run_id,
            "attachments": attachments or [],
            "metadata": metadata or {},
        }
        self.messages[thread_id][message["id"]] = message
        return message

    def _add_step(self, run: _Run, step_details: dict[str, Any]) -> dict[str, Any]:
        step = {
            "id": self._core.new_id("step"),
            "object": "thread.run.step",
            "created_at": self._core.now(),
            "assistant_id": run.data["assistant_id"],
            "thread_id": run.data["thread_id"],
            "run_id": run.data["id"],
            "type": step_details["type"],
            "status": "in_progress",
            "step_details": step_details,
            "last_error": None,
            "expired_at": None,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": None,
            "metadata": {},
            "usage": None,
        }
        self.steps[run.data["id"]][step["id"]] = step
        return step

    def _newest_user_text(self, thread_id: str) -> str:
        user_messages = [m for m in self.messages[thread_id].values() if m["role"] == "user"]
        return _message_text(user_messages[-1]) if user_messages else ""


def _first_given(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def _run_event(suffix: str, run: _Run) -> StreamEvent:
    return StreamEvent(f"thread.run.{suffix}", copy.deepcopy(run.data))


def _step_event(suffix: str, step: dict[str, Any]) -> StreamEvent:
    return StreamEvent(f"thread.run.step.{suffix}", copy.deepcopy(step))


def _stored_content_part(part: dict[str, Any]) -> dict[str, Any]:
    """A requested content part as the message object stores it."""
    if part["type"] == "text":
        return {"type": "text", "text": {"value": part["text"], "annotations": []}}
    if part["type"] == "image_url":
        return {"type": "image_url", "image_url": {"detail": "auto", **part["image_url"]}}
    if part["type"] == "image_file":
        return {"type": "image_file", "image_file": {"detail": "auto", **part["image_file"]}}
    return part


def _message_text(message: dict[str, Any]) -> str:
    return "\n".join(part["text"]["value"] for part in message["content"] if part["type"] == "text")

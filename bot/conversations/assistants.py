"""The Assistants API v2 backend: threads, messages, streamed runs, tool calls, polling."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from bot.conversations.answers import AnswerComposer
from bot.conversations.backend import BackendEvent, RunRequest, RunStarted, Usage
from bot.conversations.tools import ToolRegistry
from bot.conversations.turn import HistoryMessage, ReplyCompleted, ReplyFailed, TextDelta
from bot.errors import APIConnectionError, APITimeoutError, BadRequestError
from bot.openai_api.client import OpenAIClient
from bot.openai_api.files import FilesAPI
from bot.openai_api.models import Message, Run, StreamEvent, ToolOutput

log = logging.getLogger(__name__)

ACTIVE_RUN_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")
QUEUED_TOO_LONG = "The assistant did not get to this in time, so I cancelled it. Please try again."
ASSISTANT_CACHE_SECONDS = 300.0
# Slack shows each message; a run seeded from a long Slack thread must still fit the API's limits.
MAX_HISTORY_MESSAGES = 100


def failure_reason(run: Run) -> str:
    """Plain words for a run that ended without an answer."""
    if run.status == "failed":
        error = run.last_error
        code = getattr(error, "code", None)
        if code == "rate_limit_exceeded":
            return "The assistant is over its rate limit right now. Please try again in a minute."
        if code == "invalid_prompt":
            return "The assistant could not process this request."
        detail = getattr(error, "message", None)
        return f"The assistant ran into an error and could not answer{': ' + detail if detail else '.'}"
    if run.status == "expired":
        return "The assistant took too long and the run expired. Please try again."
    if run.status == "cancelled":
        return "The run was cancelled before the assistant finished."
    if run.status == "incomplete":
        reason = getattr(run.incomplete_details, "reason", None)
        if reason in ("max_completion_tokens", "max_prompt_tokens"):
            return "The answer was cut short because it reached the token limit."
        if reason == "content_filter":
            return "The answer was stopped by the content filter."
        return f"The answer is incomplete{' (' + reason + ')' if reason else ''}."
    return f"The run ended with status {run.status}."


class AssistantsBackend:
    """Runs conversations on Assistants API threads."""

    def __init__(
        self,
        client: OpenAIClient,
        *,
        files: FilesAPI,
        poll_max_seconds: float = 5.0,
        deadline_seconds: float = 600.0,
        queued_deadline_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._poll_max_seconds = poll_max_seconds
        self._deadline_seconds = deadline_seconds
        self._queued_deadline_seconds = queued_deadline_seconds
        self._clock = clock
        self._assistant_tools: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._files = files
        self._answers = AnswerComposer(self._files)

    async def create_thread(self, history: Sequence[HistoryMessage]) -> str:
        messages = [{"role": item.role, "content": item.text} for item in history[-MAX_HISTORY_MESSAGES:] if item.text]
        thread = await self._client.create_thread(messages=messages or None)
        return thread.id

    async def add_message(
        self,
        api_thread_id: str,
        content: str | list[dict[str, Any]],
        *,
        attachments: list[dict[str, Any]],
        key: str,
        recovering: bool,
    ) -> str:
        if recovering:
            existing = await self._find_message(api_thread_id, key)
            if existing is not None:
                return existing
        try:
            return await self._create_message(api_thread_id, content, attachments=attachments, key=key)
        except BadRequestError:
            # A run left over from an answer nobody will see (its turn failed or was given up) blocks the thread.
            if not await self._end_leftover_run(api_thread_id):
                raise
        return await self._create_message(api_thread_id, content, attachments=attachments, key=key)

    async def _create_message(
        self, api_thread_id: str, content: str | list[dict[str, Any]], *, attachments: list[dict[str, Any]], key: str
    ) -> str:
        try:
            message = await self._send_message(api_thread_id, content, attachments, key)
        except APIConnectionError as exc:
            if not exc.request_sent:
                raise
            # The message may have been added before the answer was lost: never add it twice.
            existing = await self._find_message(api_thread_id, key)
            if existing is not None:
                return existing
            message = await self._send_message(api_thread_id, content, attachments, key)
        return message.id

    async def _send_message(
        self, api_thread_id: str, content: str | list[dict[str, Any]], attachments: list[dict[str, Any]], key: str
    ) -> Message:
        return await self._client.create_message(
            api_thread_id, content=content, attachments=attachments or None, metadata={"event_id": key}
        )

    async def _end_leftover_run(self, api_thread_id: str) -> bool:
        """Cancel the thread's active run and wait until it has ended; False if none was active."""
        run_id = await self._active_run(api_thread_id)
        if run_id is None:
            return False
        log.warning("thread %s still has run %s active from an abandoned answer; cancelling it", api_thread_id, run_id)
        await self.cancel(api_thread_id, run_id)
        run = await self._poll(api_thread_id, run_id, self._clock(), ran=True)
        return run.is_terminal

    async def use_vector_store(self, api_thread_id: str, vector_store_id: str) -> None:
        await self._files.use_vector_store(api_thread_id, vector_store_id)

    async def cancel(self, api_thread_id: str, run_id: str) -> None:
        try:
            await self._client.cancel_run(api_thread_id, run_id)
        except BadRequestError as exc:
            log.info("run %s could not be cancelled (probably finished already): %s", run_id, exc)

    async def _find_message(self, api_thread_id: str, key: str) -> str | None:
        page = await self._client.list_messages(api_thread_id, order="desc", limit=20)
        for message in page.data:
            if (message.metadata or {}).get("event_id") == key:
                return message.id
        return None

    async def create_assistant(self, *, model: str, name: str, instructions: str, tools: ToolRegistry) -> str:
        assistant = await self._client.create_assistant(
            model=model, name=name, instructions=instructions, tools=tools.specs()
        )
        return assistant.id

    async def run(self, request: RunRequest, *, recovering: bool) -> AsyncIterator[BackendEvent]:
        if recovering:
            unrecorded = await self._unrecorded_run(request.api_thread_id)
            if unrecorded is not None:
                async for event in self.follow(request, unrecorded):
                    yield event
                return
        tools = await self._tools_for(request.assistant_id, request.tools)
        events = self._client.stream_run(request.api_thread_id, assistant_id=request.assistant_id, tools=tools)
        async for event in self._drive(request, events, run_id=None):
            yield event

    async def follow(self, request: RunRequest, run_id: str) -> AsyncIterator[BackendEvent]:
        async for event in self._drive(request, None, run_id=run_id):
            yield event

    async def _unrecorded_run(self, api_thread_id: str) -> str | None:
        """A run a dead worker started on these messages but never recorded: still active, or already answered.

        The thread's messages are all in when this is asked, so a newest message written by the newest
        run means that run came after them: following it shows its answer instead of paying for another.
        """
        newest = await self._newest_run(api_thread_id)
        if newest is None:
            return None
        if newest.status in ACTIVE_RUN_STATUSES:
            return newest.id
        messages = await self._client.list_messages(api_thread_id, order="desc", limit=1)
        if messages.data and messages.data[0].role == "assistant" and messages.data[0].run_id == newest.id:
            return newest.id
        return None

    async def _active_run(self, api_thread_id: str) -> str | None:
        newest = await self._newest_run(api_thread_id)
        return newest.id if newest is not None and newest.status in ACTIVE_RUN_STATUSES else None

    async def _newest_run(self, api_thread_id: str) -> Run | None:
        page = await self._client.list_runs(api_thread_id, limit=1)
        return page.data[0] if page.data else None

    async def _tools_for(self, assistant_id: str, registry: ToolRegistry) -> list[dict[str, Any]]:
        """The assistant's own tools plus our functions: a run's `tools` replaces the assistant's."""
        cached = self._assistant_tools.get(assistant_id)
        if cached is None or self._clock() - cached[0] > ASSISTANT_CACHE_SECONDS:
            assistant = await self._client.retrieve_assistant(assistant_id)
            cached = (self._clock(), assistant.tools)
            self._assistant_tools[assistant_id] = cached
        own = cached[1]
        named = {tool.get("function", {}).get("name") for tool in own if tool.get("type") == "function"}
        return own + [spec for spec in registry.specs() if spec["function"]["name"] not in named]

    async def _drive(
        self, request: RunRequest, events: AsyncIterator[StreamEvent] | None, *, run_id: str | None
    ) -> AsyncIterator[BackendEvent]:
        """Follow one run to its end: by its stream while there is one, else by polling."""
        thread_id = request.api_thread_id
        started = self._clock()
        run: Run | None = None
        # Once seen past `queued` (even before tool calls) the run has the long deadline, not the queued one.
        ran = False
        if run_id is not None:
            yield RunStarted(run_id)
        while True:
            if events is not None:
                try:
                    while (event := await self._next_event(events, started, ran=ran)) is not None:
                        if isinstance(event.data, Run):
                            run = event.data
                            ran = ran or run.status != "queued"
                            if run_id is None:
                                run_id = run.id
                                yield RunStarted(run_id)
                        elif event.event == "thread.message.delta":
                            text = event.data.text()
                            if text:
                                yield TextDelta(text)
                except APIConnectionError as exc:
                    if run_id is None:
                        # The request may have started a run whose answer was lost: follow that run.
                        run_id = await self._unrecorded_run(thread_id) if exc.request_sent else None
                        if run_id is None:
                            raise
                        log.warning("run request lost its answer (%s); following run %s", exc, run_id)
                        yield RunStarted(run_id)
                    # The stream broke; the run goes on server-side, so follow it instead of re-running.
                    log.warning("run %s stream interrupted (%s); following it by polling", run_id, exc)
                except TimeoutError:
                    if run_id is None:
                        raise APITimeoutError("the run stream said nothing before the run's deadline") from None
                    log.warning("run %s stream silent past the run's deadline; checking the run", run_id)
                events = None
            if run_id is None:
                raise APIConnectionError("the API answered the run request without a run")
            if run is None or not (run.is_terminal or run.status == "requires_action"):
                run = await self._poll(thread_id, run_id, started, ran=ran)
                ran = ran or run.status != "queued"
            if not (run.is_terminal or run.status == "requires_action"):
                yield ReplyFailed(await self._give_up_on(thread_id, run))
                return
            if run.status == "requires_action":
                outputs = await self._call_tools(run, request)
                events = self._client.stream_submit_tool_outputs(thread_id, run_id, outputs=outputs)
                run = None
                continue
            break
        if run.usage is not None:
            yield Usage(prompt_tokens=run.usage.prompt_tokens or 0, completion_tokens=run.usage.completion_tokens or 0)
        if run.status == "completed":
            yield await self._answer(thread_id, run_id)
        else:
            yield ReplyFailed(failure_reason(run))

    def _deadline(self, started: float, *, ran: bool) -> float:
        """When a run is given up: soon while it was never seen leaving `queued`, later once it runs."""
        return started + (self._deadline_seconds if ran else self._queued_deadline_seconds)

    async def _next_event(self, events: AsyncIterator[StreamEvent], started: float, *, ran: bool) -> StreamEvent | None:
        """The stream's next event (None at its end); TimeoutError once the run's deadline passes in silence."""
        deadline = self._deadline(started, ran=ran)
        try:
            return await asyncio.wait_for(anext(events), timeout=max(deadline - self._clock(), 0.0))
        except StopAsyncIteration:
            return None

    async def _poll(self, thread_id: str, run_id: str, started: float, *, ran: bool) -> Run:
        """The run once it ends or needs tool outputs, or as it is when its deadline passes."""
        delay = 0.25
        while True:
            run = await self._client.retrieve_run(thread_id, run_id)
            if run.is_terminal or run.status == "requires_action":
                return run
            ran = ran or run.status != "queued"
            remaining = self._deadline(started, ran=ran) - self._clock()
            if remaining <= 0:
                return run
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, self._poll_max_seconds)

    async def _give_up_on(self, thread_id: str, run: Run) -> str:
        """Cancel a run past its deadline; the reason for the person."""
        log.warning("run %s still %s at its deadline; cancelling it", run.id, run.status)
        await self.cancel(thread_id, run.id)
        if run.status == "queued":
            return QUEUED_TOO_LONG
        return failure_reason(run.model_copy(update={"status": "expired"}))

    async def _call_tools(self, run: Run, request: RunRequest) -> list[ToolOutput]:
        calls = run.tool_calls
        outputs = await asyncio.gather(
            *(request.tools.call(call.function.name, call.function.arguments, request.tool_context) for call in calls)
        )
        return [ToolOutput(tool_call_id=call.id, output=output) for call, output in zip(calls, outputs, strict=True)]

    async def _answer(self, thread_id: str, run_id: str) -> ReplyCompleted:
        page = await self._client.list_messages(thread_id, run_id=run_id, order="asc", limit=100)
        return await self._answers.compose([message for message in page.data if message.role == "assistant"])

"""The Assistants API v2 backend: threads, tagged messages, streamed or polled runs, tool calls, lost answers.

State: {"thread_id", "vector_store_id"?, "file_ids": [files this conversation uploaded],
"data_file_ids"?: [files attached for the code interpreter]}.
Progress: {"message_ids": {input key: message id}, "run_id"}. Each message carries its input's key
as metadata ``event_id``, so a resumed batch (or one whose answer was lost) finds what was already
added instead of adding it twice; a run is checkpointed as soon as its id is known, and a resumed
batch follows it instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

from pydantic import ValidationError

from bot.conversations.backend import (
    AnswerRequest,
    BackendEvent,
    BackendState,
    Capabilities,
    Checkpoint,
    Completed,
    Failed,
    Progress,
    StateChanged,
    TextDelta,
    ToolActivity,
    ToolStatus,
    Usage,
)
from bot.conversations.backends.assistants.answers import AnswerComposer
from bot.conversations.backends.assistants.api import AssistantsAPI
from bot.conversations.backends.assistants.files import MessageFiles, OutgoingMessage
from bot.conversations.backends.assistants.profiles import AssistantsProfiles
from bot.conversations.backends.failures import QUEUED_TOO_LONG, failure_reason
from bot.conversations.backends.openai_files import ConversationFiles, unless_gone
from bot.conversations.tools import ToolRegistry
from bot.conversations.turn import HistoryMessage
from bot.errors import APIConnectionError, APITimeoutError, BadRequestError, NotFoundError
from bot.openai_api.client import SSEvent
from bot.openai_api.models import Run, ToolOutput

log = logging.getLogger(__name__)

ACTIVE_RUN_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")
# Slack shows each message; a thread seeded from a long Slack thread must still fit the API's limits.
MAX_HISTORY_MESSAGES = 100
# Built-in tools whose calls run steps show; function calls are reported from requires_action.
STEP_TOOLS = ("code_interpreter", "file_search")


def run_failure_reason(run: Run) -> str:
    """Plain words for a run that ended without an answer."""
    return failure_reason(
        run.status,
        error_code=getattr(run.last_error, "code", None),
        error_message=getattr(run.last_error, "message", None),
        incomplete_reason=getattr(run.incomplete_details, "reason", None),
    )


def seed_messages(history: Sequence[HistoryMessage]) -> list[dict[str, Any]]:
    return [{"role": item.role, "content": item.text} for item in history[-MAX_HISTORY_MESSAGES:] if item.text]


class _Batch:
    """One answer() call's working memory: the request, and the progress checkpointed so far."""

    def __init__(self, request: AnswerRequest, thread_id: str) -> None:
        self.request = request
        self.thread_id = thread_id
        earlier = request.progress or {}
        self.message_ids: dict[str, str] = dict(earlier.get("message_ids") or {})
        self.run_id: str | None = earlier.get("run_id")
        # After a crash something may have been sent although the progress does not say so.
        self.recovering = request.attempt > 1

    def checkpoint(self) -> Checkpoint:
        progress: Progress = {"message_ids": dict(self.message_ids), "run_id": self.run_id}
        return Checkpoint(progress)


class AssistantsBackend:
    """Answers on Assistants API threads."""

    name = "assistants"
    capabilities = Capabilities(
        # No image output: the Assistants API has no image generation tool (the code interpreter's charts are files).
        vision=True,
        file_search=True,
        code_interpreter=True,
        image_output=False,
        web_search=False,
        resumable=True,
    )

    def __init__(
        self,
        api: AssistantsAPI,
        *,
        profiles: AssistantsProfiles,
        files: ConversationFiles,
        message_files: MessageFiles,
        poll_max_seconds: float = 5.0,
        deadline_seconds: float = 600.0,
        queued_deadline_seconds: float = 120.0,
        reasoning_effort: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._reasoning_effort = reasoning_effort
        self.profiles = profiles
        self._files = files
        self._message_files = message_files
        self._answers = AnswerComposer(files)
        self._poll_max_seconds = poll_max_seconds
        self._deadline_seconds = deadline_seconds
        self._queued_deadline_seconds = queued_deadline_seconds
        self._clock = clock

    # ---- the contract -------------------------------------------------------------------------

    async def answer(self, request: AnswerRequest) -> AsyncIterator[BackendEvent]:
        state: BackendState
        if request.state is None:
            thread = await self._api.create_thread(seed_messages(await request.history()))
            state = {"thread_id": thread.id, "file_ids": []}
            yield StateChanged(dict(state))
        else:
            state = {"file_ids": [], **request.state}
        batch = _Batch(request, state["thread_id"])
        if batch.run_id is None:
            async for event in self._add_messages(batch, state):
                yield event
            if not batch.message_ids:
                # Every message was emptied by refused files: their notices are the whole reply.
                yield Completed("")
                return
        async for event in self._run(batch, state):
            yield event

    async def cancel(self, state: BackendState | None, progress: Progress | None) -> None:
        run_id = (progress or {}).get("run_id")
        if state is None or run_id is None:
            return
        await self._cancel_run(state["thread_id"], run_id)

    async def forget(self, state: BackendState, *, conversation_id: int) -> None:
        await unless_gone(self._api.delete_thread(state["thread_id"]))
        if state.get("vector_store_id"):
            await self._files.delete_vector_store(state["vector_store_id"])
        await self._files.release(conversation_id, uploaded=state.get("file_ids", ()))

    # ---- messages -----------------------------------------------------------------------------

    async def _add_messages(self, batch: _Batch, state: BackendState) -> AsyncIterator[BackendEvent]:
        conversation = batch.request.conversation
        searched = False
        for item in batch.request.inputs:
            if item.key in batch.message_ids:
                continue
            existing = await self._find_message(batch.thread_id, item.key) if batch.recovering else None
            if existing is None:
                message = OutgoingMessage(item)
                async for event in self._message_files.attach(message, conversation=conversation, state=state):
                    yield event
                if message.is_empty:
                    continue
                if message.searched and not searched:
                    await self._api.use_vector_store(batch.thread_id, state["vector_store_id"])
                    searched = True
                existing = await self._add_message(batch.thread_id, message)
            batch.message_ids[item.key] = existing
            yield batch.checkpoint()

    async def _add_message(self, thread_id: str, message: OutgoingMessage) -> str:
        try:
            return await self._create_message(thread_id, message)
        except BadRequestError:
            # A run left over from an answer nobody will see (its turn failed or was given up) blocks the thread.
            if not await self._end_leftover_run(thread_id):
                raise
        return await self._create_message(thread_id, message)

    async def _create_message(self, thread_id: str, message: OutgoingMessage) -> str:
        key = message.input.key
        try:
            created = await self._api.create_message(
                thread_id, content=message.content(), attachments=message.attachments, key=key
            )
        except APIConnectionError as exc:
            if not exc.request_sent:
                raise
            # The message may have been added before the answer was lost: never add it twice.
            existing = await self._find_message(thread_id, key)
            if existing is not None:
                return existing
            created = await self._api.create_message(
                thread_id, content=message.content(), attachments=message.attachments, key=key
            )
        return created.id

    async def _find_message(self, thread_id: str, key: str) -> str | None:
        page = await self._api.list_messages(thread_id, order="desc", limit=20)
        for message in page.data:
            if (message.metadata or {}).get("event_id") == key:
                return message.id
        return None

    async def _end_leftover_run(self, thread_id: str) -> bool:
        """Cancel the thread's active run and wait until it has ended; False if none was active."""
        newest = await self._api.newest_run(thread_id)
        if newest is None or newest.status not in ACTIVE_RUN_STATUSES:
            return False
        log.warning("thread %s still has run %s active from an abandoned answer; cancelling it", thread_id, newest.id)
        await self._cancel_run(thread_id, newest.id)
        run = await self._poll(thread_id, newest.id, self._clock(), ran=True)
        return run.is_terminal

    # ---- runs ---------------------------------------------------------------------------------

    async def _run(self, batch: _Batch, state: BackendState) -> AsyncIterator[BackendEvent]:
        if batch.run_id is None and batch.recovering:
            batch.run_id = await self._unrecorded_run(batch.thread_id)
            if batch.run_id is not None:
                log.info("thread %s: following run %s a dead worker started", batch.thread_id, batch.run_id)
                yield batch.checkpoint()
        if batch.run_id is not None:
            async for event in self._drive(batch, None):
                yield event
            return
        profile = batch.request.profile
        tools = await self._tools_for(profile.id, batch.request.tools, state)
        effort = profile.effort(self._reasoning_effort)

        def start_run() -> AsyncGenerator[SSEvent, None]:
            return self._api.stream_run(batch.thread_id, assistant_id=profile.id, tools=tools, reasoning_effort=effort)

        async for event in self._drive(batch, start_run(), send_again=start_run):
            yield event

    async def _unrecorded_run(self, thread_id: str) -> str | None:
        """A run a dead worker started on these messages but never recorded: still active, or already answered.

        The thread's messages are all in when this is asked, so a newest message written by the newest
        run means that run came after them: following it shows its answer instead of paying for another.
        """
        newest = await self._api.newest_run(thread_id)
        if newest is None:
            return None
        if newest.status in ACTIVE_RUN_STATUSES:
            return newest.id
        messages = await self._api.list_messages(thread_id, order="desc", limit=1)
        if messages.data and messages.data[0].role == "assistant" and messages.data[0].run_id == newest.id:
            return newest.id
        return None

    async def _tools_for(self, assistant_id: str, registry: ToolRegistry, state: BackendState) -> list[dict[str, Any]]:
        """The assistant's own tools, the built-in ones the conversation's files need, and our functions.

        A run's `tools` replaces the assistant's, and an attachment's tools are only resources: without
        file_search (code_interpreter) among the run's tools the model cannot read the shared files.
        """
        own = (await self.profiles.assistant(assistant_id)).tools
        kinds = {tool.get("type") for tool in own}
        needed = [
            {"type": kind}
            for kind, used in (
                ("file_search", state.get("vector_store_id")),
                ("code_interpreter", state.get("data_file_ids")),
            )
            if used and kind not in kinds
        ]
        named = {tool.get("function", {}).get("name") for tool in own if tool.get("type") == "function"}
        return own + needed + [spec for spec in registry.specs() if spec["function"]["name"] not in named]

    async def _drive(
        self,
        batch: _Batch,
        events: AsyncGenerator[SSEvent, None] | None,
        *,
        send_again: Callable[[], AsyncGenerator[SSEvent, None]] | None = None,
    ) -> AsyncIterator[BackendEvent]:
        """Follow one run to its end: by its stream while there is one, else by polling.

        ``send_again`` starts the run anew, once, when its request lost its answer and no run shows it arrived.
        """
        thread_id = batch.thread_id
        started = self._clock()
        run: Run | None = None
        # Once seen past `queued` (even before tool calls) the run has the long deadline, not the queued one.
        ran = False
        steps = StepTools()
        while True:
            if events is not None:
                try:
                    async with contextlib.aclosing(events):
                        while (event := await self._next_event(events, started, ran=ran)) is not None:
                            if event.event == "thread.message.delta":
                                text = _delta_text(event.data)
                                if text:
                                    yield TextDelta(text)
                            elif event.event is not None and event.event.startswith("thread.run.step."):
                                for activity in steps.seen(event.event, event.data):
                                    yield activity
                            elif _is_run_event(event):
                                run = _run_of(event.data)
                                ran = ran or run.status != "queued"
                                if batch.run_id is None:
                                    batch.run_id = run.id
                                    yield batch.checkpoint()
                    if batch.run_id is None:
                        raise APIConnectionError("the run stream ended before naming its run", request_sent=True)
                except APIConnectionError as exc:
                    if batch.run_id is None:
                        # The request may have started a run whose answer was lost: follow that run.
                        batch.run_id = await self._unrecorded_run(thread_id) if exc.request_sent else None
                        if batch.run_id is None:
                            if not exc.request_sent or send_again is None:
                                raise
                            # No run came of it, so it never reached the API: sending it once more is safe.
                            log.warning("run request lost its answer (%s) and started no run; sending it again", exc)
                            events, send_again = send_again(), None
                            continue
                        log.warning("run request lost its answer (%s); following run %s", exc, batch.run_id)
                        yield batch.checkpoint()
                    # The stream broke; the run goes on server-side, so follow it instead of re-running.
                    log.warning("run %s stream interrupted (%s); following it by polling", batch.run_id, exc)
                except TimeoutError:
                    if batch.run_id is None:
                        raise APITimeoutError("the run stream said nothing before the run's deadline") from None
                    log.warning("run %s stream silent past the run's deadline; checking the run", batch.run_id)
                events = None
            run_id = batch.run_id
            assert run_id is not None  # set above, or given by the progress
            if run is None or not (run.is_terminal or run.status == "requires_action"):
                run = await self._poll(thread_id, run_id, started, ran=ran)
                ran = ran or run.status != "queued"
            if not (run.is_terminal or run.status == "requires_action"):
                yield Failed(await self._give_up_on(thread_id, run))
                return
            if run.status == "requires_action":
                outputs: list[ToolOutput] = []
                async for activity in self._call_tools(run, batch, outputs):
                    yield activity
                events = self._api.stream_tool_outputs(thread_id, run_id, outputs)
                run = None
                continue
            break
        if run.usage is not None:
            yield Usage(prompt_tokens=run.usage.prompt_tokens or 0, completion_tokens=run.usage.completion_tokens or 0)
        if run.status == "completed":
            page = await self._api.list_messages(thread_id, run_id=run.id, order="asc", limit=100)
            yield await self._answers.compose([message for message in page.data if message.role == "assistant"])
        else:
            yield Failed(run_failure_reason(run))

    def _deadline(self, started: float, *, ran: bool) -> float:
        """When a run is given up: soon while it was never seen leaving `queued`, later once it runs."""
        return started + (self._deadline_seconds if ran else self._queued_deadline_seconds)

    async def _next_event(self, events: AsyncGenerator[SSEvent, None], started: float, *, ran: bool) -> SSEvent | None:
        """The stream's next event (None at its end); TimeoutError once the run's deadline passes in silence."""
        deadline = self._deadline(started, ran=ran)
        try:
            # A timeout scope, not wait_for: wait_for would make a task of every token's read.
            async with asyncio.timeout(max(deadline - self._clock(), 0.0)):
                return await anext(events)
        except StopAsyncIteration:
            return None

    async def _poll(self, thread_id: str, run_id: str, started: float, *, ran: bool) -> Run:
        """The run once it ends or needs tool outputs, or as it is when its deadline passes."""
        delay = 0.25
        while True:
            run = await self._api.retrieve_run(thread_id, run_id)
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
        await self._cancel_run(thread_id, run.id)
        if run.status == "queued":
            return QUEUED_TOO_LONG
        return failure_reason("expired")

    async def _cancel_run(self, thread_id: str, run_id: str) -> None:
        try:
            await self._api.cancel_run(thread_id, run_id)
        except (BadRequestError, NotFoundError) as exc:
            log.info("run %s could not be cancelled (probably finished already): %s", run_id, exc)

    async def _call_tools(self, run: Run, batch: _Batch, outputs: list[ToolOutput]) -> AsyncIterator[ToolActivity]:
        """Call the functions the run waits on (all at once); their outputs are appended to ``outputs``."""
        calls = run.tool_calls
        for call in calls:
            yield ToolActivity(call.id, "function", call.function.name, ToolStatus.STARTED)
        request = batch.request
        results = await asyncio.gather(
            *(request.tools.call(call.function.name, call.function.arguments, request.tool_context) for call in calls)
        )
        for call, output in zip(calls, results, strict=True):
            outputs.append(ToolOutput(tool_call_id=call.id, output=output))
            yield ToolActivity(call.id, "function", call.function.name, ToolStatus.COMPLETED)


class StepTools:
    """Built-in tool calls as run step events show them: each started once, then ended once."""

    def __init__(self) -> None:
        self._started: set[str] = set()

    def seen(self, event: str, step: dict[str, Any]) -> list[ToolActivity]:
        details = (step.get("delta") or step).get("step_details") or {}
        calls = [
            call
            for call in details.get("tool_calls") or ()
            if isinstance(call, dict) and call.get("type") in STEP_TOOLS and call.get("id")
        ]
        ended = {"thread.run.step.completed": ToolStatus.COMPLETED}.get(event)
        if event in ("thread.run.step.failed", "thread.run.step.cancelled", "thread.run.step.expired"):
            ended = ToolStatus.FAILED
        activities = []
        for call in calls:
            if call["id"] not in self._started:
                self._started.add(call["id"])
                activities.append(ToolActivity(call["id"], call["type"], call["type"], ToolStatus.STARTED))
            if ended is not None:
                activities.append(ToolActivity(call["id"], call["type"], call["type"], ended))
        return activities


def _is_run_event(event: SSEvent) -> bool:
    """A run object: a thread.run.* event, or the JSON answer of a server that does not stream."""
    return event.event == "json" or (event.event or "").startswith("thread.run.")


def _run_of(data: Any) -> Run:
    try:
        return Run.model_validate(data)
    except ValidationError as exc:
        # A garbled run event counts as a broken stream: the run is then followed by polling.
        raise APIConnectionError(
            f"the run stream sent an unexpected run: {exc.errors()[0]['msg']}", request_sent=True
        ) from exc


def _delta_text(data: Any) -> str:
    """The text a thread.message.delta appends, read as plain JSON (this is the per-token path)."""
    content = ((data or {}).get("delta") or {}).get("content") or ()
    return "".join(
        (part.get("text") or {}).get("value") or ""
        for part in content
        if isinstance(part, dict) and part.get("type") == "text"
    )

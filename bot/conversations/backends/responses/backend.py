"""The Responses API backend: a Slack conversation is a Conversation, each batch one background response.

State and progress (opaque JSON to the service):

    state    {"conversation_id", "last_item_id" (newest item we know the conversation holds),
              "awaiting_approval"?: [approval ids a batch of the conversation waits on],
              "vector_store_id"?, "data_file_ids": [...], "file_ids": [...uploaded for this conversation]}
    progress {"input_item_ids": [...], "anchor": item id the next response's items will follow,
              "pending_input": [function_call_output (and mcp_approval_response) items for the next response],
              "requested": True (a POST /responses for this step may be out),
              "response_id"?, "sequence_number"?,
              "awaiting_approval"?: [the mcp_approval_request items the batch waits on, see below]}

A batch: the inputs are added as conversation items, then one ``POST /responses`` (background,
streamed, stored) runs on the conversation with no input of its own; function calls loop through
further responses whose input is the function outputs. A response whose id is known is followed
by id (``GET /responses/{id}?stream=true&starting_after=N``), after a broken stream or in the
next worker after a crash; a second response is never started for the same messages.

Lost answers. Items carry no metadata, and no endpoint lists a conversation's responses, so what
a lost request did is read from the conversation itself:

(a) Items added but the answer lost (APIConnectionError with request_sent), or a worker that died
    before checkpointing them (attempt > 1, no input_item_ids): the items after
    state["last_item_id"] are listed and our inputs are recognised there by role, text and image
    ids, in order and adjacent (the newest such run wins). Only if they are not there are they
    added (the first add never happened, since adding items is all or nothing).
(b) ``POST /responses`` whose answer was lost before ``response.created`` gave its id (or a worker
    that died in that window: progress says ``requested`` but has no response_id): the spec says a
    conversation's input and output items are appended when its response completes, so the lost
    response shows up as items after the step's anchor (the last input item, or the last function
    call). Those items are polled for up to RUN_QUEUED_DEADLINE_SECONDS: a message there is the
    answer, open function calls continue the tool loop. Only if nothing appears by then is the
    request taken as never processed and sent once more (logged). A lost response that failed
    appends nothing, so it is indistinguishable from one never processed; sending again is right
    for both.

Refusals. A request the API refuses (400) started nothing; the two refusals the bot can mend, an
expired code interpreter container still bound to the conversation and reasoning summaries the
organisation may not get, are mended and the request sent once more (see refusals.py).

MCP approvals. A response that ends asking for approvals is checkpointed as awaiting them (its
items are in the conversation by then; function calls beside them are run first and their outputs
kept in the checkpoint), then the requests are handed to the MCP approvals (stored and shown), and
the batch ends with AwaitingDecision. Resumed once every request is decided, the batch checkpoints
those function outputs and the ``mcp_approval_response`` items as the next step's input, and goes
on as after a function call; resumed earlier (another request still open), it waits again. The conversation's
state names the approvals too, so that a new batch waits behind the one waiting (until every one
of them is decided, however that batch then ends) rather than overtake it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from bot.conversations.backend import (
    AnswerRequest,
    AwaitingDecision,
    BackendEvent,
    BackendState,
    Capabilities,
    Checkpoint,
    FileKind,
    InputFile,
    InputNotice,
    Progress,
    StateChanged,
    TextDelta,
    ToolActivity,
    ToolStatus,
    Usage,
    UserInput,
)
from bot.conversations.backends.failures import failure_reason
from bot.conversations.backends.openai_files import FILE_SEARCH_TYPES, ConversationFiles, unless_gone
from bot.conversations.backends.responses.items import (
    AnswerReader,
    added_prefix,
    find_added,
    history_item,
    open_function_calls,
    tool_item,
    tool_status,
    user_item,
)
from bot.conversations.backends.responses.mcp import McpSteps, approval_requests
from bot.conversations.backends.responses.mcp import tool_item as mcp_tool_item
from bot.conversations.backends.responses.progress import (
    PARTIAL_IMAGE_EVENT,
    PARTIAL_IMAGES,
    StreamProgress,
    draft_image,
)
from bot.conversations.backends.responses.reasoning import reasoning_parameters
from bot.conversations.backends.responses.refusals import ResponseRequests
from bot.conversations.mcp import waiting_notice
from bot.conversations.profiles import Profile, ProfileCatalog
from bot.conversations.turn import HistoryMessage, ReplyFailed
from bot.errors import APIConnectionError, BadRequestError, FileRefused, NotFoundError
from bot.openai_api.client import SSEvent
from bot.openai_api.files import FilesAPI
from bot.openai_api.responses import MAX_ITEMS_PER_REQUEST, ResponsesAPI
from bot.store.files import ApiFileRecords

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    vision=True, file_search=True, code_interpreter=True, image_output=True, web_search=True, resumable=True
)
# Slack shows each message; a conversation seeded from a long Slack thread must still fit the model.
MAX_HISTORY_MESSAGES = 100
# Stream events between checkpoints of the sequence number: a resumed worker replays at most this many.
SEQUENCE_CHECKPOINT_EVERY = 50
# Broken streams of one response followed again in a row without a new event before giving up.
MAX_SILENT_RESUMES = 5
POLL_FIRST_SECONDS = 0.05
# Sends of one response request whose answers were lost (and left no trace) before giving up.
MAX_SENDS = 2
TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "incomplete", "cancelled"})
LATER_NOTICE = "I'll answer this once the tool call waiting for approval above is decided."
BUILTIN_TOOL_SHAPES: dict[str, dict[str, Any]] = {
    "web_search": {"type": "web_search"},
    "image_generation": {"type": "image_generation", "partial_images": PARTIAL_IMAGES},
}


@dataclass
class _Outcome:
    """How one response ended: from its final object, or from the items it left in the conversation."""

    status: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    incomplete_reason: str | None = None

    @classmethod
    def of(cls, response: dict[str, Any]) -> _Outcome:
        return cls(
            status=response.get("status") or "completed",
            output=list(response.get("output") or ()),
            usage=response.get("usage"),
            error=response.get("error"),
            incomplete_reason=(response.get("incomplete_details") or {}).get("reason"),
        )

    def failure(self) -> str:
        error = self.error or {}
        return failure_reason(
            self.status,
            error_code=error.get("code"),
            error_message=error.get("message"),
            incomplete_reason=self.incomplete_reason,
        )


@dataclass
class _Batch:
    """One answer() call's working copy of state and progress, and what it has seen."""

    request: AnswerRequest
    state: BackendState
    progress: Progress
    usage: list[int] = field(default_factory=lambda: [0, 0])
    output: list[dict[str, Any]] = field(default_factory=list)  # answer items of every response of the batch
    mcp_tools: list[dict[str, Any]] = field(default_factory=list)  # the profile's MCP servers, as request tools


class ResponsesBackend:
    """Answers on Responses API conversations (see the module docstring for state, progress and recovery)."""

    name = "responses"
    capabilities = CAPABILITIES

    def __init__(
        self,
        api: ResponsesAPI,
        *,
        files: FilesAPI,
        file_records: ApiFileRecords,
        max_answer_file_mb: int,
        profiles: ProfileCatalog,
        mcp: McpSteps | None = None,
        queued_deadline_seconds: float = 120.0,
        deadline_seconds: float = 600.0,
        poll_max_seconds: float = 5.0,
        reasoning_effort: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._requests = ResponseRequests(api)
        self._reasoning_effort = reasoning_effort
        self._deadline_seconds = deadline_seconds
        self._files = files
        self._conversation_files = ConversationFiles(files, file_records, max_answer_file_mb=max_answer_file_mb)
        self._answers = AnswerReader(api, self._conversation_files)
        self.profiles = profiles
        self._mcp = mcp
        self._queued_deadline_seconds = queued_deadline_seconds
        self._poll_max_seconds = poll_max_seconds
        self._clock = clock

    # ---- the contract -------------------------------------------------------------------------

    async def answer(self, request: AnswerRequest) -> AsyncIterator[BackendEvent]:
        if request.state is None:
            state = await self._start_conversation(request)
            yield StateChanged(state)
        else:
            state = {**request.state}
        batch = _Batch(request, state, {**(request.progress or {})})
        if request.progress is None and self._mcp is not None and await self._mcp.blocks(state):
            # An earlier batch waits on approvals: this one goes after it, as the conversation's order says.
            yield AwaitingDecision(LATER_NOTICE)
            return
        if "input_item_ids" not in batch.progress:
            async for event in self._add_inputs(batch):
                yield event
        if self._mcp is not None:
            batch.mcp_tools = await self._mcp.tools(request)
        if batch.progress.get("awaiting_approval"):
            waiting = await self._answer_approvals(batch)
            if waiting is not None:
                yield waiting
                return
            yield Checkpoint(dict(batch.progress))
        async for event in self._respond(batch):
            yield event

    async def cancel(self, state: BackendState | None, progress: Progress | None) -> None:
        response_id = (progress or {}).get("response_id")
        if not response_id:
            return
        try:
            await self._api.cancel_response(response_id)
        except (BadRequestError, NotFoundError) as exc:
            log.info("response %s could not be cancelled (probably ended already): %s", response_id, exc)

    async def forget(self, state: BackendState, *, conversation_id: int) -> None:
        if state.get("conversation_id"):
            await unless_gone(self._api.delete_conversation(state["conversation_id"]))
        if state.get("vector_store_id"):
            await self._conversation_files.delete_vector_store(state["vector_store_id"])
        await self._conversation_files.release(conversation_id, uploaded=state.get("file_ids", ()))

    # ---- a new conversation -------------------------------------------------------------------

    async def _start_conversation(self, request: AnswerRequest) -> BackendState:
        history: Sequence[HistoryMessage] = await request.history()
        items = [history_item(message) for message in history[-MAX_HISTORY_MESSAGES:] if message.text]
        ref = request.conversation
        conversation = await self._api.create_conversation(
            items, metadata={"team_id": ref.team_id, "channel_id": ref.channel_id}
        )
        last_item_id: str | None = None
        if items:
            # POST /conversations does not list the items it made; the newest one is the anchor.
            rest = items[MAX_ITEMS_PER_REQUEST:]
            for start in range(0, len(rest), MAX_ITEMS_PER_REQUEST):
                chunk = rest[start : start + MAX_ITEMS_PER_REQUEST]
                try:
                    await self._api.add_items(conversation.id, chunk)
                except APIConnectionError as exc:
                    if not exc.request_sent:
                        raise
                    # Adding is all or nothing and only we write to the new conversation: its count tells.
                    held = len(await self._api.items_after(conversation.id, None))
                    if held < MAX_ITEMS_PER_REQUEST + start + len(chunk):
                        log.warning(
                            "seeding conversation %s lost an answer and the items are not there; adding again",
                            conversation.id,
                        )
                        await self._api.add_items(conversation.id, chunk)
            every = await self._api.items_after(conversation.id, None)
            last_item_id = every[-1]["id"] if every else None
        return {"conversation_id": conversation.id, "last_item_id": last_item_id, "data_file_ids": [], "file_ids": []}

    # ---- inputs -------------------------------------------------------------------------------

    async def _add_inputs(self, batch: _Batch) -> AsyncIterator[BackendEvent]:
        items: list[dict[str, Any]] = []
        state_before = dict(batch.state)
        for user_input in batch.request.inputs:
            item, notices = await self._input_item(batch, user_input)
            items.append(item)
            for notice in notices:
                yield notice
        if batch.state != state_before:
            yield StateChanged(dict(batch.state))
        conversation_id = batch.state["conversation_id"]
        recovering = batch.request.attempt > 1 or batch.request.progress is not None
        ids = await self._find_inputs(batch, items) if recovering else None
        if ids is None:
            already = await self._added_prefix(batch, items) if recovering else []
            ids = already + await self._send_inputs(batch, conversation_id, items[len(already) :])
        anchor = ids[-1] if ids else batch.state.get("last_item_id")
        batch.progress = {"input_item_ids": ids, "anchor": anchor, "pending_input": [], "requested": True}
        yield Checkpoint(dict(batch.progress))

    async def _find_inputs(self, batch: _Batch, items: list[dict[str, Any]]) -> list[str] | None:
        existing = await self._api.items_after(batch.state["conversation_id"], batch.state.get("last_item_id"))
        found = find_added(items, existing)
        if found is not None:
            log.warning(
                "the batch's inputs were already in conversation %s; not adding them again",
                batch.state["conversation_id"],
            )
        return found

    async def _added_prefix(self, batch: _Batch, items: list[dict[str, Any]]) -> list[str]:
        existing = await self._api.items_after(batch.state["conversation_id"], batch.state.get("last_item_id"))
        found = added_prefix(items, existing)
        if found:
            log.warning("%d of the batch's inputs were already in the conversation; adding the rest", len(found))
        return found

    async def _send_inputs(self, batch: _Batch, conversation_id: str, items: list[dict[str, Any]]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(items), MAX_ITEMS_PER_REQUEST):
            chunk = items[start : start + MAX_ITEMS_PER_REQUEST]
            try:
                added = await self._api.add_items(conversation_id, chunk)
            except APIConnectionError as exc:
                if not exc.request_sent:
                    raise
                # The items may be in although the answer was lost: look before adding them again.
                found = await self._find_inputs(batch, items[: start + len(chunk)])
                if found is None:
                    log.warning(
                        "adding items to %s lost its answer and they are not there; adding again", conversation_id
                    )
                    added = await self._api.add_items(conversation_id, chunk)
                else:
                    ids = found[:start]
                    added = [{"id": item_id} for item_id in found[start:]]
            ids += [item["id"] for item in added]
        return ids

    async def _input_item(self, batch: _Batch, user_input: UserInput) -> tuple[dict[str, Any], list[InputNotice]]:
        """The conversation item for one message; its files uploaded where the model reads them."""
        images: list[str] = []
        named: list[str] = []
        notices: list[InputNotice] = []
        for file in user_input.files:
            try:
                file_id = await self._place_file(batch, file)
            except FileRefused as exc:
                notices.append(InputNotice(file.name, str(exc)))
                continue
            named.append(file.name)
            if file.kind is FileKind.IMAGE:
                images.append(file_id)
        return user_item(user_input.text_naming(named), images), notices

    async def _place_file(self, batch: _Batch, file: InputFile) -> str:
        """Upload (or reuse) a file: images for vision, documents (and data file search reads) into the
        conversation's vector store, data files for the code interpreter. Raises FileRefused with a reason
        for the person."""
        ref, state = batch.request.conversation, batch.state
        if file.kind is FileKind.DOCUMENT and file.extension not in FILE_SEARCH_TYPES:
            raise FileRefused(f"file search can't read {file.extension or 'this kind of'} files")
        uploaded = await self._conversation_files.upload(
            ref, file, purpose="vision" if file.kind is FileKind.IMAGE else "assistants"
        )
        if uploaded.fresh:
            state["file_ids"] = [*state.get("file_ids", ()), uploaded.id]
        if file.kind is not FileKind.IMAGE and file.extension in FILE_SEARCH_TYPES:
            created = False
            if not state.get("vector_store_id"):
                state["vector_store_id"], created = await self._conversation_files.create_vector_store(ref), True
            try:
                await self._conversation_files.index(state["vector_store_id"], uploaded.id)
            except FileRefused:
                if uploaded.fresh:
                    await self._conversation_files.discard(ref, uploaded.id)
                    state["file_ids"].remove(uploaded.id)
                if created:
                    await self._conversation_files.delete_vector_store(state.pop("vector_store_id"))
                raise
        if file.kind is FileKind.DATA and uploaded.id not in state.get("data_file_ids", ()):
            state["data_file_ids"] = [*state.get("data_file_ids", ()), uploaded.id]
        return uploaded.id

    # ---- responses ----------------------------------------------------------------------------

    async def _respond(self, batch: _Batch) -> AsyncIterator[BackendEvent]:
        """Run the batch's response(s) until one ends without open function calls."""
        while True:
            outcome: _Outcome | None = None
            async for event in self._step(batch):
                if isinstance(event, _Outcome):
                    outcome = event
                else:
                    yield event
            assert outcome is not None  # _step always ends with an outcome
            if outcome.usage:
                batch.usage[0] += outcome.usage.get("input_tokens") or 0
                batch.usage[1] += outcome.usage.get("output_tokens") or 0
            calls = open_function_calls(outcome.output) if outcome.status == "completed" else []
            batch.output += [item for item in outcome.output if item.get("type") != "function_call_output"]
            if self._mcp is not None:
                for activity in await self._mcp.record(batch.request, outcome.output):
                    yield activity
            asks_approval = self._mcp is not None and outcome.status == "completed"
            approvals = approval_requests(outcome.output) if asks_approval else []
            if not calls and not approvals:
                break
            outputs = await asyncio.gather(
                *(
                    batch.request.tools.call(
                        call.get("name", ""), call.get("arguments") or "", batch.request.tool_context
                    )
                    for call in calls
                )
            )
            for call in calls:
                yield ToolActivity(call.get("call_id", ""), "function", call.get("name", ""), ToolStatus.COMPLETED)
            function_outputs = [
                {"type": "function_call_output", "call_id": call["call_id"], "output": output}
                for call, output in zip(calls, outputs, strict=True)
            ]
            if approvals:
                # The functions ran; their outputs wait with the approvals and go with their answers, in one input.
                async for event in self._await_approvals(batch, outcome, approvals, function_outputs):
                    yield event
                return
            batch.progress = {
                "input_item_ids": batch.progress["input_item_ids"],
                "anchor": outcome.output[-1]["id"],
                "pending_input": function_outputs,
                "requested": True,
            }
            yield Checkpoint(dict(batch.progress))
        newest = next((item["id"] for item in reversed(outcome.output) if item.get("id")), batch.progress["anchor"])
        batch.state["last_item_id"] = newest
        batch.state.pop("awaiting_approval", None)
        yield StateChanged(dict(batch.state))
        if any(batch.usage):
            yield Usage(prompt_tokens=batch.usage[0], completion_tokens=batch.usage[1])
        if outcome.status == "completed":
            yield await self._answers.compose(batch.output)
        else:
            yield ReplyFailed(outcome.failure())

    async def _step(self, batch: _Batch) -> AsyncIterator[BackendEvent | _Outcome]:
        """One response: followed if its id is known, recognised if its request may be out, else sent."""
        if not batch.progress.get("response_id"):
            # A worker before us (or our own lost request) may have started it: settle that before sending.
            # Not after a wait for approvals, whose checkpoint (what this worker started from) requested nothing.
            may_be_out = bool((batch.request.progress or {}).get("requested")) and batch.progress.get("requested")
            for _ in range(MAX_SENDS):
                if may_be_out:
                    recognised = await self._recognise_lost_response(batch)
                    if recognised is not None:
                        yield recognised
                        return
                    log.warning(
                        "no trace of a response in conversation %s after %.0f s; sending the request again",
                        batch.state["conversation_id"],
                        self._queued_deadline_seconds,
                    )
                try:
                    sent = self._requests.stream(batch.state["conversation_id"], lambda: self._response_body(batch))
                    async for event in self._stream(batch, sent):
                        yield event
                    return
                except APIConnectionError as exc:
                    if not exc.request_sent:
                        raise
                    log.warning("the response request or its stream lost its answer: %s", exc)
                except _StreamEnded:
                    log.warning("the response stream ended before the response did")
                if batch.progress.get("response_id"):
                    break
                may_be_out = True
            else:
                raise APIConnectionError("the response request lost its answer every time", request_sent=True)
        async for event in self._follow(batch):
            yield event

    async def _follow(self, batch: _Batch) -> AsyncIterator[BackendEvent | _Outcome]:
        """Follow a known response by id to its end, resuming after each broken or ended stream.

        A server that does not stream answers each follow with the response as it is: while it is still
        queued or in progress it is asked again, backing off up to RUN_POLL_MAX_SECONDS. One that stays
        queued past RUN_QUEUED_DEADLINE_SECONDS, or runs past RUN_DEADLINE_SECONDS, is cancelled.
        """
        response_id = batch.progress["response_id"]
        started, delay, silent, ran = self._clock(), POLL_FIRST_SECONDS, 0, False
        while True:
            seen = batch.progress.get("sequence_number", 0)
            try:
                async for event in self._stream(batch, self._api.follow_response(response_id, starting_after=seen)):
                    yield event
                return
            except APIConnectionError as exc:
                if not exc.request_sent:
                    raise
                log.warning("stream of response %s broke (%s); following it again", response_id, exc)
                silent = 0 if batch.progress.get("sequence_number", 0) > seen else silent + 1
                if silent >= MAX_SILENT_RESUMES:
                    raise APIConnectionError(
                        f"response {response_id} could not be followed to its end", request_sent=True
                    ) from exc
            except _StreamEnded:
                pass
            response = await self._api.retrieve_response(response_id)
            status = response.get("status")
            if status in TERMINAL_STATUSES:
                yield _Outcome.of(response)
                return
            ran = ran or status != "queued"
            limit = self._deadline_seconds if ran else self._queued_deadline_seconds
            if self._clock() - started >= limit:
                log.warning("response %s still %s at its deadline; cancelling it", response_id, status)
                await self.cancel(batch.state, batch.progress)
                yield _Outcome("queued" if not ran else "expired", [])
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._poll_max_seconds)

    async def _stream(
        self, batch: _Batch, events: AsyncGenerator[SSEvent, None]
    ) -> AsyncIterator[BackendEvent | _Outcome]:
        """Translate one stream's events; ends with the response's outcome, or raises _StreamEnded."""
        since_checkpoint = 0
        progress = StreamProgress()
        queued = True  # until an event shows the response running
        async with aclosing(events) as stream:
            while (sse := await self._next_event(stream, queued=queued)) is not None:
                data = sse.data if isinstance(sse.data, dict) else {}
                kind = data.get("type") or sse.event
                queued = (
                    queued
                    and kind in ("response.created", "response.queued")
                    and ((data.get("response") or {}).get("status") == "queued")
                )
                if sse.event == "json":
                    # A server that answered with the response object instead of a stream.
                    async for event in self._remember_response(batch, data):
                        yield event
                    if data.get("status") in TERMINAL_STATUSES:
                        yield _Outcome.of(data)
                        return
                    raise _StreamEnded
                sequence = data.get("sequence_number")
                if isinstance(sequence, int):
                    batch.progress["sequence_number"] = max(sequence, batch.progress.get("sequence_number", 0))
                if kind in ("response.created", "response.queued", "response.in_progress"):
                    async for event in self._remember_response(batch, data.get("response") or {}):
                        yield event
                elif kind == "response.output_text.delta":
                    yield TextDelta(data.get("delta", ""))
                elif kind in ("response.output_item.added", "response.output_item.done"):
                    # An MCP call is named server/tool, which the generic mapping cannot tell.
                    tool = mcp_tool_item(data.get("item") or {}) or tool_item(data.get("item") or {})
                    if tool is not None:
                        added = kind == "response.output_item.added"
                        status = ToolStatus.STARTED if added else tool_status(data["item"])
                        if tool.tool != "function" or added:  # a function call ends when our code ran it
                            activity = progress.once(ToolActivity(tool.call_id, tool.tool, tool.name, status))
                            if activity is not None:
                                yield activity
                elif kind == PARTIAL_IMAGE_EVENT:
                    if (shown := progress.read(kind, data)) is not None:
                        yield shown
                    if (draft := draft_image(data)) is not None:
                        yield draft
                elif (shown := progress.read(kind, data)) is not None:
                    yield shown
                elif kind in TERMINAL_EVENTS:
                    yield _Outcome.of(data.get("response") or {})
                    return
                elif kind == "error":
                    yield _Outcome("failed", [], error={"code": data.get("code"), "message": data.get("message")})
                    return
                since_checkpoint += 1
                if since_checkpoint >= SEQUENCE_CHECKPOINT_EVERY and batch.progress.get("response_id"):
                    since_checkpoint = 0
                    yield Checkpoint(dict(batch.progress))
        raise _StreamEnded

    async def _await_approvals(
        self,
        batch: _Batch,
        outcome: _Outcome,
        approvals: list[dict[str, Any]],
        function_outputs: list[dict[str, Any]],
    ) -> AsyncIterator[BackendEvent]:
        """Checkpoint the wait (nothing requested meanwhile; the outputs of the response's function calls kept
        for the next input) before the requests are stored and shown, so that a click always finds the batch
        waiting; then end the batch."""
        assert self._mcp is not None  # only a backend with MCP tools gets approval requests
        batch.progress = {
            "input_item_ids": batch.progress["input_item_ids"],
            "anchor": outcome.output[-1]["id"],
            "pending_input": function_outputs,
            "awaiting_approval": [
                {key: item.get(key) for key in ("id", "server_label", "name", "arguments")} for item in approvals
            ],
        }
        batch.state["awaiting_approval"] = [item["id"] for item in approvals]
        yield StateChanged(dict(batch.state))
        yield Checkpoint(dict(batch.progress))
        asked = await self._mcp.ask(batch.request, approvals)
        yield AwaitingDecision(waiting_notice(asked))

    async def _answer_approvals(self, batch: _Batch) -> AwaitingDecision | None:
        """A resumed wait: the approval responses become the next step's input, or it waits on (None: go on)."""
        assert self._mcp is not None, "a batch waits on MCP approvals but the backend has no MCP tools"
        approvals = list(batch.progress["awaiting_approval"])
        answers = await self._mcp.responses([item["id"] for item in approvals])
        if answers is None:
            # Asking again stores and shows only what a crash kept from being stored or shown; nothing twice.
            asked = await self._mcp.ask(batch.request, approvals)
            return AwaitingDecision(waiting_notice([request for request in asked if request.decision.pending]))
        batch.progress = {
            "input_item_ids": batch.progress["input_item_ids"],
            "anchor": batch.progress["anchor"],
            "pending_input": [*batch.progress.get("pending_input", ()), *answers],
            "requested": True,
        }
        return None

    async def _next_event(self, stream: AsyncGenerator[SSEvent, None], *, queued: bool) -> SSEvent | None:
        """The stream's next event, None at its end. A queued response's stream silent past the queued deadline
        counts as ended, so that the response is looked at by id (and cancelled if it is still queued)."""
        try:
            if not queued:
                return await anext(stream)
            async with asyncio.timeout(self._queued_deadline_seconds):
                return await anext(stream)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise _StreamEnded from None

    async def _remember_response(self, batch: _Batch, response: dict[str, Any]) -> AsyncIterator[BackendEvent]:
        """Checkpoint a response's id the first time it is seen: from then on it is followed, never re-sent."""
        response_id = response.get("id")
        if response_id and batch.progress.get("response_id") != response_id:
            batch.progress = {**batch.progress, "response_id": response_id}
            batch.progress.setdefault("sequence_number", 0)
            yield Checkpoint(dict(batch.progress))

    async def _recognise_lost_response(self, batch: _Batch) -> _Outcome | None:
        """The items a lost response left after the step's anchor, polled until they appear or the deadline."""
        conversation_id, anchor = batch.state["conversation_id"], batch.progress["anchor"]
        deadline = self._clock() + self._queued_deadline_seconds
        delay = 0.05
        while True:
            items = await self._api.items_after(conversation_id, anchor)
            output = [item for item in items if item.get("type") != "function_call_output"]
            if output:
                log.warning("found the answer of a lost response in conversation %s", conversation_id)
                return _Outcome("completed", output)
            remaining = deadline - self._clock()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, self._poll_max_seconds)

    def _response_body(self, batch: _Batch) -> dict[str, Any]:
        profile: Profile = batch.request.profile
        body: dict[str, Any] = {
            "model": profile.model,
            "conversation": batch.state["conversation_id"],
            "background": True,
            "store": True,
        }
        if profile.instructions:
            body["instructions"] = profile.instructions
        reasoning = reasoning_parameters(profile, self._reasoning_effort, summaries=self._requests.reasoning_summaries)
        if reasoning:
            body["reasoning"] = reasoning
        tools = self._tools(batch)
        if tools:
            body["tools"] = tools
        # The conversation already holds the batch's messages; only function outputs go as input.
        if batch.progress.get("pending_input"):
            body["input"] = batch.progress["pending_input"]
        return body

    def _tools(self, batch: _Batch) -> list[dict[str, Any]]:
        """Our functions, plus the built-in tools the profile or the conversation's files call for."""
        profile, state = batch.request.profile, batch.state
        tools: list[dict[str, Any]] = [
            {
                "type": "function",
                "name": spec["function"]["name"],
                "description": spec["function"].get("description"),
                "parameters": spec["function"].get("parameters") or {"type": "object", "properties": {}},
                "strict": False,
            }
            for spec in batch.request.tools.specs()
        ]
        vector_store_ids = [
            *([state["vector_store_id"]] if state.get("vector_store_id") else []),
            *profile.vector_store_ids,
        ]
        if vector_store_ids and ("file_search" in profile.tools or state.get("vector_store_id")):
            tools.append({"type": "file_search", "vector_store_ids": vector_store_ids})
        data_file_ids = list(state.get("data_file_ids", ()))
        if "code_interpreter" in profile.tools or data_file_ids:
            container: dict[str, Any] = {"type": "auto"}
            if data_file_ids:
                container["file_ids"] = data_file_ids[-50:]  # the API's limit per container
            tools.append({"type": "code_interpreter", "container": container})
        tools += [BUILTIN_TOOL_SHAPES[name] for name in profile.tools if name in BUILTIN_TOOL_SHAPES]
        return tools + batch.mcp_tools


class _StreamEnded(Exception):
    """A response's stream ended without saying how the response ended."""

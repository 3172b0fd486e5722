"""The chat backend: /chat/completions on any OpenAI-compatible server, with the history kept in our database.

The server remembers nothing, so exactly-once is ours alone: every message of a history has a key
(the Slack event id of a user message, "<batch>:answer", "<batch>:calls:<round>",
"<batch>:tool:<round>:<call id>") and appending a key twice changes nothing. A resumed batch reads
the history to see how far it got: an answer already stored is given again without asking the model;
tool calls whose outputs are missing are run; otherwise the model is asked (again). Asking again is
safe because a completion leaves nothing behind on the server.

Progress is {"input_keys": [...]}, checkpointed once the batch's messages are in the history, so that a
worker resuming after a crash answers the same batch, and messages that came meanwhile get their own answer.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from bot.conversations.backend import (
    AnswerRequest,
    BackendEvent,
    BackendState,
    Capabilities,
    Checkpoint,
    Completed,
    Failed,
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
from bot.conversations.backends.chat.documents import (
    INLINE_DOCUMENT_CHARS,
    best_passages,
    context_message,
    passages_of,
)
from bot.conversations.backends.chat.history import as_message, entry, estimate_tokens, trimmed
from bot.conversations.backends.failures import failure_reason
from bot.conversations.documents import document_text
from bot.conversations.profiles import Profile, ProfileCatalog
from bot.conversations.tools import ToolRegistry
from bot.errors import APIConnectionError
from bot.openai_api.chat import ChatCompletionsAPI
from bot.openai_api.client import SSEvent
from bot.store.chat import ChatHistoryRecords, HistoryEntry, HistoryRef, Passage

# A model that keeps calling tools is stopped after this many rounds, so that a batch always ends.
MAX_TOOL_ROUNDS = 8
IMAGE_MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}

TOO_MANY_TOOL_ROUNDS = "The assistant kept calling tools without coming to an answer. Please try again."
UNSUPPORTED_IMAGE = "the assistant can't look at this kind of image; PNG, JPEG, GIF and WebP work"  # an InputNotice


def completion_failure_reason(finish_reason: str | None, error: str | None) -> str | None:
    """Plain words for a completion that ended without an answer (worded as on every backend); None if it answered."""
    if error is not None:
        return failure_reason("failed", error_message=error or None)
    if finish_reason == "length":
        return failure_reason("incomplete", incomplete_reason="max_completion_tokens")
    if finish_reason == "content_filter":
        return failure_reason("incomplete", incomplete_reason="content_filter")
    return None


@dataclass
class _Completion:
    """What one streamed completion said, gathered from its chunks (plain dicts: there is one per token)."""

    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def read(self, event: SSEvent) -> str:
        """Take in one event; returns its answer text, if any."""
        data = event.data if isinstance(event.data, dict) else {}
        if "error" in data:  # some servers report a failure mid-stream as a chunk of its own
            error = data["error"]
            self.error = str(error.get("message", "") if isinstance(error, dict) else error)
            return ""
        self._count(data.get("usage"))
        choice = next((item for item in data.get("choices") or () if item.get("index", 0) == 0), None)
        if choice is None:
            return ""
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        # A server that would not stream answers one whole completion, with "message" instead of "delta".
        delta = choice.get("message") if event.event == "json" else choice.get("delta")
        delta = delta or {}
        for position, call in enumerate(delta.get("tool_calls") or ()):
            self._add_call_piece(call.get("index", position), call)
        text = delta.get("content") or ""
        if text:
            self.text.append(text)
        return text

    def _count(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)

    def _add_call_piece(self, index: int, piece: dict[str, Any]) -> None:
        call = self.tool_calls.setdefault(
            index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if piece.get("id"):
            call["id"] = piece["id"]
        function = piece.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    def calls(self) -> list[dict[str, Any]]:
        """The tool calls in order; servers that give no call id get one, since the tool message needs it."""
        calls = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        for call in calls:
            call["id"] = call["id"] or f"call_{secrets.token_hex(8)}"
        return calls


@dataclass
class _Batch:
    """One batch's place in its history, and what it has cost so far."""

    history: HistoryRef
    prefix: str
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(part) for part in parts)

    def ending(self, end: Completed | Failed) -> list[BackendEvent]:
        """The batch's last events: what it cost, if the model was asked in this attempt, then how it ended."""
        usage: list[BackendEvent] = [Usage(self.prompt_tokens, self.completion_tokens)] if self.model_calls else []
        return [*usage, end]


class ChatBackend:
    """Answers on /chat/completions; the conversation's memory is a history in our database."""

    name = "chat"
    capabilities = Capabilities(vision=True)

    def __init__(
        self,
        *,
        api: ChatCompletionsAPI,
        records: ChatHistoryRecords,
        profiles: ProfileCatalog,
        max_history_tokens: int,
        embedding_model: str,
        reasoning_effort: str | None = None,
    ) -> None:
        self._api = api
        self._reasoning_effort = reasoning_effort
        self._records = records
        self.profiles = profiles
        self._max_history_tokens = max_history_tokens
        self._embedding_model = embedding_model

    async def answer(self, request: AnswerRequest) -> AsyncIterator[BackendEvent]:
        if request.state is None:
            # Named after the batch that starts it, so that a retry of that batch finds the same history.
            history = HistoryRef(request.conversation.id, f"{request.conversation.id}:{request.inputs[0].key}")
            await self._seed(history, request)
            yield StateChanged({"history": "bot", "history_id": history.history_id})
        else:
            history = HistoryRef(request.conversation.id, str(request.state["history_id"]))
        stored_keys = {stored.key for stored in await self._records.entries(history)}
        new_entries: list[HistoryEntry] = []
        for user_input in request.inputs:
            if user_input.key in stored_keys:
                continue
            fields, notices = await self._user_message(history, user_input)
            for notice in notices:
                yield notice
            new_entries.append(entry(user_input.key, "user", fields))
        await self._records.append(history, new_entries)
        yield Checkpoint({"input_keys": [user_input.key for user_input in request.inputs]})
        context = await self._retrieved_context(history, request.inputs)
        batch = _Batch(history, prefix=f"{request.inputs[0].key}:")
        async for event in self._answer_batch(batch, request, context):
            yield event

    async def cancel(self, state: BackendState | None, progress: Progress | None) -> None:
        """Nothing runs on the server once the stream is closed, which the service does by no longer reading."""

    async def forget(self, state: BackendState, *, conversation_id: int) -> None:
        """The history (and its passages) belongs to this one memory: nothing is shared to keep."""
        if "history_id" in state:
            await self._records.forget(str(state["history_id"]))

    # -- the batch ---------------------------------------------------------------------------------

    async def _answer_batch(
        self, batch: _Batch, request: AnswerRequest, context: str | None
    ) -> AsyncIterator[BackendEvent]:
        """Ask the model, running the tools it calls, until it answers; resumes where the history says."""
        while True:
            entries = await self._records.entries(batch.history)
            mine = {item.key: item for item in entries if item.key.startswith(batch.prefix)}
            answer = mine.get(batch.key("answer"))
            if answer is not None:
                for event in batch.ending(Completed(text=answer.fields.get("content") or "")):
                    yield event
                return
            rounds = [item for key, item in mine.items() if key.startswith(batch.key("calls"))]
            if rounds:
                missing = [
                    call
                    for call in rounds[-1].fields["tool_calls"]
                    if batch.key("tool", len(rounds) - 1, call["id"]) not in mine
                ]
                if missing:
                    async for event in self._run_tools(batch, request, missing, round_number=len(rounds) - 1):
                        yield event
                    continue
            if len(rounds) >= MAX_TOOL_ROUNDS:
                for event in batch.ending(Failed(TOO_MANY_TOOL_ROUNDS)):
                    yield event
                return
            completion = _Completion()
            body = self._body(request.profile, request.tools, context, entries)
            async with aclosing(self._api.stream(body)) as chunks:
                async for chunk in chunks:
                    if text := completion.read(chunk):
                        yield TextDelta(text)
            batch.model_calls += 1
            batch.prompt_tokens += completion.prompt_tokens
            batch.completion_tokens += completion.completion_tokens
            if completion.finish_reason is None and completion.error is None:
                # [DONE] (or the end of the body) came before the model said why it stopped: a broken stream.
                raise APIConnectionError("the chat completion stream ended before it finished", request_sent=True)
            text = "".join(completion.text)
            reason = completion_failure_reason(completion.finish_reason, completion.error)
            if reason is not None:
                for event in batch.ending(Failed(reason)):
                    yield event
                return
            if completion.tool_calls:
                said = entry(
                    batch.key("calls", len(rounds)),
                    "assistant",
                    {"content": text or None, "tool_calls": completion.calls()},
                )
            else:
                said = entry(batch.key("answer"), "assistant", {"content": text})
            await self._records.append(batch.history, [said])

    async def _run_tools(
        self, batch: _Batch, request: AnswerRequest, calls: Sequence[dict[str, Any]], *, round_number: int
    ) -> AsyncIterator[BackendEvent]:
        """Run the calls one by one, storing each output as soon as it is in (a resumed batch skips it)."""
        for call in calls:
            name = call["function"]["name"]
            yield ToolActivity(call["id"], "function", name, ToolStatus.STARTED)
            output = await request.tools.call(name, call["function"]["arguments"], request.tool_context)
            fields = {"content": output, "tool_call_id": call["id"]}
            await self._records.append(
                batch.history, [entry(batch.key("tool", round_number, call["id"]), "tool", fields)]
            )
            status = ToolStatus.FAILED if _is_error_output(output) else ToolStatus.COMPLETED
            yield ToolActivity(call["id"], "function", name, status)

    def _body(
        self, profile: Profile, tools: ToolRegistry, context: str | None, entries: Sequence[HistoryEntry]
    ) -> dict[str, Any]:
        """The request: instructions and retrieved passages first, then as much history as the budget holds."""
        leading = [{"role": "system", "content": text} for text in (profile.instructions, context) if text]
        budget = self._max_history_tokens - sum(estimate_tokens(message) for message in leading)
        messages = leading + [as_message(item) for item in trimmed(entries, budget=max(budget, 0))]
        body: dict[str, Any] = {"model": profile.model, "messages": messages}
        if effort := profile.effort(self._reasoning_effort):
            body["reasoning_effort"] = effort
        if specs := tools.specs():
            body["tools"] = specs
        return body

    # -- inputs ------------------------------------------------------------------------------------

    async def _seed(self, history: HistoryRef, request: AnswerRequest) -> None:
        earlier = await request.history()
        seed = [
            entry(f"seed:{index}", "assistant" if message.role == "assistant" else "user", {"content": message.text})
            for index, message in enumerate(earlier)
            if message.text.strip()
        ]
        await self._records.append(history, seed)

    async def _user_message(
        self, history: HistoryRef, user_input: UserInput
    ) -> tuple[dict[str, Any], list[InputNotice]]:
        """The message's fields: its text naming the files, images as data URLs, short documents inline."""
        named: list[str] = []
        parts: list[dict[str, Any]] = []
        notices: list[InputNotice] = []
        for file in user_input.files:
            if file.kind is FileKind.IMAGE:
                media_type = _image_media_type(file)
                if media_type is None:
                    notices.append(InputNotice(file.name, UNSUPPORTED_IMAGE))
                    continue
                url = f"data:{media_type};base64,{base64.b64encode(file.data).decode('ascii')}"
                parts.append({"type": "image_url", "image_url": {"url": url}})
                named.append(file.name)
                continue
            document = await document_text(file)
            if document.problem is not None:
                notices.append(InputNotice(file.name, document.problem))
            elif len(document.text) <= INLINE_DOCUMENT_CHARS:
                inline = f'<document name="{file.name}">\n{document.text}\n</document>'
                parts.append({"type": "text", "text": inline})
                named.append(file.name)
            else:
                await self._index(history, file, document.text)
                named.append(f"{file.name} (long: its passages that matter are given separately)")
        text = user_input.text_naming(named)
        if not parts:
            return {"content": text}, notices
        return {"content": [{"type": "text", "text": text}, *parts]}, notices

    async def _index(self, history: HistoryRef, file: InputFile, text: str) -> None:
        """Embed a long document's passages once per history (sharing it again reuses them)."""
        if await self._records.has_document(history, file.key):
            return
        pieces = passages_of(text)
        vectors = await self._api.embed(pieces, model=self._embedding_model)
        await self._records.add_passages(
            history,
            [
                Passage(file.key, file.name, position, piece, tuple(vector))
                for position, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))
            ],
        )

    async def _retrieved_context(self, history: HistoryRef, inputs: Sequence[UserInput]) -> str | None:
        """The passages of the history's long documents that best match the batch, as a system message."""
        passages = await self._records.passages(history)
        if not passages:
            return None
        query = "\n".join(user_input.text for user_input in inputs).strip() or ", ".join(
            file.name for user_input in inputs for file in user_input.files
        )
        if not query:
            return None
        [vector] = await self._api.embed([query], model=self._embedding_model)
        return context_message(best_passages(passages, vector))


def _image_media_type(file: InputFile) -> str | None:
    """The data URL's media type, for the image formats vision models take."""
    return file.mimetype if file.mimetype in IMAGE_MEDIA_TYPES.values() else IMAGE_MEDIA_TYPES.get(file.extension)


def _is_error_output(output: str) -> bool:
    """Whether the registry turned the call into an error output ({"error": ...}) instead of a result."""
    try:
        parsed = json.loads(output)
    except ValueError:
        return False
    return isinstance(parsed, dict) and set(parsed) == {"error"}

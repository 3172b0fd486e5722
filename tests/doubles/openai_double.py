"""A stateful OpenAI API server (Assistants v2 first) on 127.0.0.1 whose traffic is checked against the spec."""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import re
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web
from multidict import MultiMapping

from .openapi_spec import get_validator

API_PREFIX = "/v1"
ACTIVE_RUN_STATUSES = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
FINAL_RUN_STATUSES = frozenset({"completed", "failed", "expired", "cancelled", "incomplete"})
MODERATION_CATEGORIES = (
    "hate",
    "hate/threatening",
    "harassment",
    "harassment/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# Categories the omni moderation model also scores images for; the others apply to text only.
IMAGE_MODERATION_CATEGORIES = frozenset(
    {"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"}
)
# Harmless content still scores a little in every category, differently in each.
_BASELINE_MODERATION_SCORES = {category: 1e-5 * (index + 1) for index, category in enumerate(MODERATION_CATEGORIES)}
_FLAGGED_MODERATION_SCORE = 0.97
MODELS = (
    ("gpt-4o", "system"),
    ("gpt-4o-mini", "system"),
    ("gpt-4.1-mini", "system"),
    ("omni-moderation-latest", "system"),
    ("ft:gpt-4o-mini:acme::abc123", "acme"),
)

_RUN_LIFETIME_SECONDS = 600
# The audio formats POST /audio/transcriptions accepts, told by the file name's extension.
TRANSCRIBABLE_FORMATS = frozenset({"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm"})
GENERATED_PATH = "/generated-images"
# A valid 1x1 PNG: what every generated image looks like here.
GENERATED_IMAGE_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
# How often a stream of a stalled run looks for a cancellation.
_STALL_POLL_SECONDS = 0.02
_LIST_LIMIT_DEFAULT, _LIST_LIMIT_MAX = 20, 100
_DEFAULT_LAST_ERROR = {"code": "server_error", "message": "Sorry, something went wrong."}
_DEFAULT_INCOMPLETE_DETAILS = {"reason": "max_completion_tokens"}
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
    "response_format",
)
_MISSING_API_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
_MISSING_BETA_MESSAGE = (
    "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
    "Please try again by setting the header 'OpenAI-Beta: assistants=v2'."
)
_FAULT_DEFAULTS: dict[int | str, tuple[str, str]] = {
    # status (or code) -> (error type, message), as the real API words them.
    429: ("requests", "Rate limit reached for requests. Please try again in 1s."),
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: ("server_error", "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", "The server is overloaded or not ready yet."),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the double received it (header names lower-cased, body parsed)."""

    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: Any


@dataclass
class ScriptedRun:
    """What the model does in one run: answer text, tool calls first, and how the run ends."""

    # The answer; None answers "Echo: " + the newest user message if the run completes, and nothing otherwise.
    text: str | None = None
    # How many thread.message.delta events carry the text.
    chunks: int = 3
    # (function name, arguments): the run first requires these tool outputs.
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # None answers "Tool results: " + the JSON list of the submitted outputs.
    text_after_tools: str | None = None
    # How the run ends; failed runs carry last_error, incomplete ones incomplete_details (defaults if None).
    status: str = "completed"
    last_error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    # Seconds between streamed deltas, so that tests can watch a reply grow.
    chunk_delay: float = 0.0
    # The run stays queued until cancelled.
    stall: bool = False
    # Files (ids the double holds, e.g. from add_output_file) the answer shows as image_file content after its text.
    image_file_ids: list[str] = field(default_factory=list)
    # (type, annotated text, file id): file_path or file_citation annotations on the answer text, which holds the text.
    annotations: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in FINAL_RUN_STATUSES:
            raise ValueError(f"status must be one of {sorted(FINAL_RUN_STATUSES)}, not {self.status!r}")
        if self.chunks < 1:
            raise ValueError("chunks must be at least 1")


class _StreamEvent(NamedTuple):
    name: str
    data: Any


_DONE_EVENT = _StreamEvent("done", "[DONE]")


@dataclass
class _Run:
    """A run object plus what drives it: its script and the rest of its life as a stream of events."""

    data: dict[str, Any]
    script: ScriptedRun
    events: Iterator[_StreamEvent] = field(default_factory=lambda: iter(()))
    # While a stream delivers the events, polling must not consume them.
    streamed: bool = False


@dataclass
class _ApiCall:
    query: dict[str, Any]
    body: Any


@dataclass
class _JsonReply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _StreamReply:
    run_id: str
    leading_events: list[_StreamEvent] = field(default_factory=list)


@dataclass
class _BinaryReply:
    """Raw bytes, as the API serves file content (the spec's `type: string` JSON schema does not describe it)."""

    body: bytes
    content_type: str = "application/octet-stream"


class _Upload(bytes):
    """A multipart file field: its bytes, plus the file name and content type the client gave."""

    filename: str = ""
    content_type: str = ""


class _ApiError(Exception):
    """An error answer in OpenAI's shape, raised by handlers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}

    def reply(self) -> _JsonReply:
        return _JsonReply(self.body, self.status, self.headers)


@dataclass
class _Fault:
    method: str
    path_pattern: re.Pattern[str]
    error: _ApiError
    remaining: int


Handler = Callable[..., "_JsonReply | _StreamReply | _BinaryReply"]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    # Assistants and threads endpoints need `OpenAI-Beta: assistants=v2`.
    beta: bool

    @classmethod
    def of(cls, method: str, template: str, handler: Handler, *, beta: bool = False) -> _Route:
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(API_PREFIX + template))
        return cls(method, re.compile(pattern), handler, beta)


class OpenAIDouble:
    """An OpenAI API double served over HTTP from a background thread; tests script it and inspect its state."""

    def __init__(self, api_key: str = "sk-test-double", *, require_query_token: tuple[str, str] | None = None) -> None:
        # Tests may switch auth on a shared double; reset() restores what it was built with.
        self._constructed_auth = (api_key, require_query_token)
        self._lock = threading.RLock()
        self._routes = self._route_table()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server_thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self.reset()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> OpenAIDouble:
        """Serve on 127.0.0.1 (a free port) from a background thread with its own event loop."""
        if self._server_thread is not None:
            raise RuntimeError("the OpenAI double is already running")
        self._validator = get_validator()
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._server_thread = threading.Thread(target=self._loop.run_forever, name="openai-double", daemon=True)
        self._server_thread.start()
        self._port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop serving; open streams are cut."""
        if self._server_thread is None or self._loop is None or self._runner is None:
            return
        self._stopping = True
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._server_thread.join(timeout=10)
        self._loop.close()
        self._server_thread = self._loop = self._runner = self._port = None

    def __enter__(self) -> OpenAIDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What the bot's OPENAI_BASE_URL should be, e.g. http://127.0.0.1:PORT/v1."""
        if self._port is None:
            raise RuntimeError("the OpenAI double is not running; call start() first")
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    def reset(self) -> None:
        """Forget all objects, scripts, faults and recorded traffic; put settings back as constructed."""
        with self._lock:
            self.api_key, self.require_query_token = self._constructed_auth
            self.streaming = True
            self.cut_stream_after: int | None = None
            # Substring of a text, or of an image's bytes: categories the API flags for it.
            self.moderation_flags: dict[str, list[str]] = {}
            # Substring of a text, or of an image's bytes: category scores reported without a flag.
            self.moderation_scores: dict[str, dict[str, float]] = {}
            self._assistants: dict[str, dict[str, Any]] = {}
            self._threads: dict[str, dict[str, Any]] = {}
            self._messages: dict[str, dict[str, dict[str, Any]]] = {}
            self._runs: dict[str, _Run] = {}
            self._steps: dict[str, dict[str, dict[str, Any]]] = {}
            self._tool_outputs: list[dict[str, Any]] = []
            self._files: dict[str, dict[str, Any]] = {}
            self._vector_stores: dict[str, dict[str, Any]] = {}
            self._file_contents: dict[str, bytes] = {}
            self._vector_store_files: dict[str, dict[str, dict[str, Any]]] = {}
            # File name -> last_error code ("invalid_file", ...): adding such a file to a vector store ends `failed`.
            self.vector_store_file_errors: dict[str, str] = {}
            # File name -> what POST /audio/transcriptions hears in it (default: "Transcript of <name>.").
            self.transcripts: dict[str, str] = {}
            # Images generated as links (DALL·E's default), served at GENERATED_PATH like the API's CDN does.
            self._generated_images: dict[str, bytes] = {}
            self._scripts: deque[ScriptedRun] = deque()
            self._faults: list[_Fault] = []
            self._lost_responses: list[tuple[str, re.Pattern[str]]] = []
            self._requests: list[RecordedRequest] = []
            self._violations: list[str] = []

    # -- scripting ----------------------------------------------------------------------------------

    def script(self, *runs: ScriptedRun) -> None:
        """Queue what the model does in the next runs, in order of run creation."""
        with self._lock:
            self._scripts.extend(runs)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        *,
        status: int,
        code: str | None = None,
        message: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests matching method and path (regex search) with this error."""
        default_type, default_message = _FAULT_DEFAULTS.get(
            code if code in _FAULT_DEFAULTS else status,
            ("server_error" if status >= 500 else "invalid_request_error", "Injected failure."),
        )
        error = _ApiError(
            status,
            message or default_message,
            error_type=error_type or default_type,
            code=code,
            headers=headers,
        )
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), error, times))

    def lose_response_next(self, method: str, path_regex: str) -> None:
        """Carry out the next matching request, then hang up without answering (a lost response)."""
        with self._lock:
            self._lost_responses.append((method.upper(), re.compile(path_regex)))

    def _response_lost(self, method: str, path: str) -> bool:
        with self._lock:
            for lost in self._lost_responses:
                if lost[0] == method and lost[1].search(path):
                    self._lost_responses.remove(lost)
                    return True
        return False

    # -- inspection ---------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return list(self._violations)

    def assert_no_violations(self) -> None:
        violations = self.violations
        if violations:
            raise AssertionError("OpenAI API spec violations:\n" + "\n".join(f"- {v}" for v in violations))

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and pattern.search(r.path)]

    def thread_messages(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's messages, oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._messages.get(thread_id, {}).values()))

    def runs_of(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's runs, oldest first."""
        with self._lock:
            return [copy.deepcopy(run.data) for run in self._runs.values() if run.data["thread_id"] == thread_id]

    def files(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._files.values()))

    def vector_stores(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._vector_stores.values()))

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            return self._file_contents[file_id]

    def vector_store_files(self, vector_store_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._vector_store_files.get(vector_store_id, {}).values()))

    def add_output_file(self, name: str, content: bytes) -> str:
        """A file the code interpreter made (purpose assistants_output), for a ScriptedRun to show; returns its id."""
        with self._lock:
            return self._store_file(name, content, "assistants_output")["id"]

    def threads(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._threads.values()))

    def assistants(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._assistants.values()))

    @property
    def submitted_tool_outputs(self) -> list[dict[str, Any]]:
        """Every tool output submitted so far: {"run_id", "tool_call_id", "output"}."""
        with self._lock:
            return copy.deepcopy(self._tool_outputs)

    # -- HTTP plumbing ------------------------------------------------------------------------------

    async def _serve(self) -> int:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_get(GENERATED_PATH + "/{name}", self._serve_generated_image)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # Handler cancellation lets a client that hangs up end its stream; the run then finishes anyway.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return self._runner.addresses[0][1]

    async def _serve_generated_image(self, request: web.Request) -> web.Response:
        # Like the API's CDN links: no API key needed, so a client must not send one there.
        if "Authorization" in request.headers:
            self._record_violations([f"an API key was sent to the image download {request.path}"])
        with self._lock:
            content = self._generated_images.get(request.match_info["name"])
        if content is None:
            return web.Response(status=404, text="BlobNotFound")
        return web.Response(body=content, content_type="image/png")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        request_id = f"req_{secrets.token_hex(16)}"
        body, body_problem = await _read_body(request)
        query = _query_dict(request.query)
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    query,
                    {name.lower(): value for name, value in request.headers.items()},
                    body,
                )
            )
        route, path_params = self._match_route(request.method, request.path)
        try:
            reply = self._handle(request, route, path_params, query, body, body_problem)
        except _ApiError as error:
            reply = error.reply()
        except Exception as crash:
            crash_report = f"the double crashed on {request.method} {request.path}:\n{traceback.format_exc()}"
            self._record_violations([crash_report])
            reply = _ApiError(500, f"The double crashed: {crash!r}", error_type="server_error").reply()
        if self._response_lost(request.method, request.path) and request.transport is not None:
            if isinstance(reply, _StreamReply):
                self._release_from_stream(reply.run_id)  # the run goes on without anyone listening
            request.transport.close()
            return web.Response(status=204)
        if isinstance(reply, _StreamReply):
            return await self._stream(request, reply, request_id)
        if isinstance(reply, _BinaryReply):
            return web.Response(body=reply.body, content_type=reply.content_type, headers={"x-request-id": request_id})
        if route is not None:
            self._record_violations(
                self._validator.validate_response(request.method, request.path, status=reply.status, body=reply.body)
            )
        return web.json_response(reply.body, status=reply.status, headers={**reply.headers, "x-request-id": request_id})

    def _match_route(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match and route.method == method:
                return route, match.groupdict()
        return None, {}

    def _handle(
        self,
        request: web.Request,
        route: _Route | None,
        path_params: dict[str, str],
        query: dict[str, Any],
        body: Any,
        body_problem: str | None,
    ) -> _JsonReply | _StreamReply:
        """Everything before the endpoint's own logic: faults, auth, routing, beta header, spec check."""
        self._raise_injected_fault(request.method, request.path)
        self._authenticate(request)
        if route is None:
            raise _ApiError(404, f"Invalid URL ({request.method} {request.path})")
        if route.beta and "assistants=v2" not in request.headers.get("OpenAI-Beta", ""):
            raise _ApiError(400, _MISSING_BETA_MESSAGE, code="invalid_beta")
        if body_problem:
            self._record_violations([f"request {request.method} {request.path}: {body_problem}"])
            raise _ApiError(400, body_problem)
        problems = self._validator.validate_request(
            request.method, request.path, query=query, body=body, content_type=request.headers.get("Content-Type")
        )
        if problems:
            self._record_violations(problems)
            raise _ApiError(400, "; ".join(problems))
        with self._lock:
            return route.handler(_ApiCall(query, body), **path_params)

    def _raise_injected_fault(self, method: str, path: str) -> None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.path_pattern.search(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    raise fault.error

    def _authenticate(self, request: web.Request) -> None:
        if self.require_query_token is not None:
            name, token = self.require_query_token
            if request.query.get(name) != token:
                raise _ApiError(401, f"Missing or invalid '{name}' query parameter.", code="invalid_api_key")
            return
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _ApiError(401, _MISSING_API_KEY_MESSAGE)
        if key.strip() != self.api_key:
            raise _ApiError(
                401,
                f"Incorrect API key provided: {_mask_key(key.strip())}. "
                "You can find your API key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _record_violations(self, problems: list[str]) -> None:
        if problems:
            with self._lock:
                self._violations.extend(problems)

    async def _stream(self, request: web.Request, reply: _StreamReply, request_id: str) -> web.StreamResponse:
        """Send a run's events as server-sent events until it settles (or the configured cut)."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": request_id,
            }
        )
        await response.prepare(request)
        with self._lock:
            cut_after = self.cut_stream_after
            chunk_delay = self._runs[reply.run_id].script.chunk_delay
        leading_events = deque(reply.leading_events)

        async def next_event() -> _StreamEvent | None:
            return leading_events.popleft() if leading_events else await self._next_stream_event(reply.run_id)

        sent = 0
        try:
            while (event := await next_event()) is not None:
                if cut_after is not None and sent >= cut_after:
                    # Finish the run first so that whatever the client does next sees it settled.
                    self._release_from_stream(reply.run_id)
                    if request.transport is not None:
                        request.transport.close()
                    return response
                await self._write_event(response, event)
                sent += 1
                if event.name == "thread.message.delta" and chunk_delay:
                    await asyncio.sleep(chunk_delay)
            await self._write_event(response, _DONE_EVENT)
            await response.write_eof()
        finally:
            # A client that hung up does not stop the run on the server.
            self._release_from_stream(reply.run_id)
        return response

    async def _write_event(self, response: web.StreamResponse, event: _StreamEvent) -> None:
        self._record_violations(self._validator.validate_stream_event(event.name, event.data))
        data = event.data if isinstance(event.data, str) else json.dumps(event.data)
        await response.write(f"event: {event.name}\ndata: {data}\n\n".encode())

    async def _next_stream_event(self, run_id: str) -> _StreamEvent | None:
        """The run's next event; waits while a stalled run has nothing to say, None once it settles."""
        while not self._stopping:
            with self._lock:
                run = self._runs.get(run_id)
                if run is None:
                    return None
                event = next(run.events, None)
                if event is not None or run.data["status"] not in _WAITING_RUN_STATUSES:
                    return event
            await asyncio.sleep(_STALL_POLL_SECONDS)
        return None

    def _release_from_stream(self, run_id: str) -> None:
        """Live out the rest of the run at once, since no stream paces it any more, and let polls drive it again."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                for _ in run.events:
                    pass
                run.streamed = False

    # -- routes ---------------------------------------------------------------------------------------

    def _route_table(self) -> list[_Route]:
        """One handler per operation; literal paths come before templated ones that would also match."""
        return [
            _Route.of("GET", "/models", self._list_models),
            _Route.of("GET", "/models/{model}", self._retrieve_model),
            _Route.of("POST", "/moderations", self._create_moderation),
            _Route.of("POST", "/images/generations", self._generate_image),
            _Route.of("POST", "/files", self._create_file),
            _Route.of("DELETE", "/files/{file_id}", self._delete_file),
            _Route.of("GET", "/files/{file_id}", self._retrieve_file),
            _Route.of("GET", "/files/{file_id}/content", self._file_content),
            _Route.of("POST", "/audio/transcriptions", self._create_transcription),
            _Route.of("POST", "/vector_stores", self._create_vector_store, beta=True),
            _Route.of("DELETE", "/vector_stores/{vector_store_id}", self._delete_vector_store, beta=True),
            _Route.of("POST", "/vector_stores/{vector_store_id}/files", self._create_vector_store_file, beta=True),
            _Route.of(
                "GET", "/vector_stores/{vector_store_id}/files/{file_id}", self._retrieve_vector_store_file, beta=True
            ),
            _Route.of(
                "DELETE", "/vector_stores/{vector_store_id}/files/{file_id}", self._delete_vector_store_file, beta=True
            ),
            _Route.of("POST", "/assistants", self._create_assistant, beta=True),
            _Route.of("GET", "/assistants", self._list_assistants, beta=True),
            _Route.of("GET", "/assistants/{assistant_id}", self._retrieve_assistant, beta=True),
            _Route.of("POST", "/assistants/{assistant_id}", self._modify_assistant, beta=True),
            _Route.of("DELETE", "/assistants/{assistant_id}", self._delete_assistant, beta=True),
            _Route.of("POST", "/threads", self._create_thread, beta=True),
            _Route.of("POST", "/threads/runs", self._create_thread_and_run, beta=True),
            _Route.of("GET", "/threads/{thread_id}", self._retrieve_thread, beta=True),
            _Route.of("POST", "/threads/{thread_id}", self._modify_thread, beta=True),
            _Route.of("DELETE", "/threads/{thread_id}", self._delete_thread, beta=True),
            _Route.of("POST", "/threads/{thread_id}/messages", self._create_message, beta=True),
            _Route.of("GET", "/threads/{thread_id}/messages", self._list_messages, beta=True),
            _Route.of("GET", "/threads/{thread_id}/messages/{message_id}", self._retrieve_message, beta=True),
            _Route.of("POST", "/threads/{thread_id}/runs", self._create_run, beta=True),
            _Route.of("GET", "/threads/{thread_id}/runs", self._list_runs, beta=True),
            _Route.of("GET", "/threads/{thread_id}/runs/{run_id}", self._retrieve_run, beta=True),
            _Route.of(
                "POST", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", self._submit_tool_outputs, beta=True
            ),
            _Route.of("POST", "/threads/{thread_id}/runs/{run_id}/cancel", self._cancel_run, beta=True),
            _Route.of("GET", "/threads/{thread_id}/runs/{run_id}/steps", self._list_run_steps, beta=True),
            _Route.of("GET", "/threads/{thread_id}/runs/{run_id}/steps/{step_id}", self._retrieve_run_step, beta=True),
        ]

    # -- models and moderations ---------------------------------------------------------------------

    def _list_models(self, call: _ApiCall) -> _JsonReply:
        return _JsonReply({"object": "list", "data": [_model_object(name, owner) for name, owner in MODELS]})

    def _retrieve_model(self, call: _ApiCall, model: str) -> _JsonReply:
        owners = dict(MODELS)
        if model not in owners:
            raise _ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return _JsonReply(_model_object(model, owners[model]))

    def _create_moderation(self, call: _ApiCall) -> _JsonReply:
        inputs = call.body["input"]
        if isinstance(inputs, str):
            items = [[("text", inputs)]]
        elif all(isinstance(item, str) for item in inputs):
            items = [[("text", text)] for text in inputs]
        else:
            # A multi-modal input is one item judged as a whole: its texts and its images together.
            items = [[_moderated_part(part) for part in inputs]]
        return _JsonReply(
            {
                "id": f"modr-{secrets.token_hex(12)}",
                "model": call.body.get("model", "omni-moderation-latest"),
                "results": [self._moderation_result(parts) for parts in items],
            }
        )

    def _moderation_result(self, parts: list[tuple[str, str]]) -> dict[str, Any]:
        """Flags and scores from whichever text or image matches; like the API, it does not say which one."""
        kinds = {kind for kind, _ in parts}
        applied = {
            category: [
                kind
                for kind in ("text", "image")
                if kind in kinds and (kind == "text" or category in IMAGE_MODERATION_CATEGORIES)
            ]
            for category in MODERATION_CATEGORIES
        }
        scores = dict(_BASELINE_MODERATION_SCORES)
        flagged: set[str] = set()
        for kind, content in parts:
            for substring, categories in self.moderation_flags.items():
                if substring.lower() in content.lower():
                    flagged.update(category for category in categories if kind in applied[category])
            for substring, category_scores in self.moderation_scores.items():
                if substring.lower() in content.lower():
                    for category, score in category_scores.items():
                        scores[category] = max(scores[category], score)
        for category in flagged:
            scores[category] = max(scores[category], _FLAGGED_MODERATION_SCORE)
        return {
            "flagged": bool(flagged),
            "categories": {category: category in flagged for category in MODERATION_CATEGORIES},
            "category_scores": scores,
            "category_applied_input_types": applied,
        }

    # -- images, files and vector stores ------------------------------------------------------------------

    def _generate_image(self, call: _ApiCall) -> _JsonReply:
        model = call.body.get("model") or "dall-e-2"
        image = GENERATED_IMAGE_PNG
        # The GPT image models always answer inline; DALL·E links to the image unless asked for b64_json.
        if model.startswith("dall-e") and call.body.get("response_format", "url") == "url":
            name = f"img-{secrets.token_hex(8)}.png"
            self._generated_images[name] = image
            data = {"url": f"http://127.0.0.1:{self._port}{GENERATED_PATH}/{name}"}
        else:
            data = {"b64_json": base64.b64encode(image).decode()}
        return _JsonReply({"created": _now(), "data": [data]})

    def _create_file(self, call: _ApiCall) -> _JsonReply:
        content = call.body.get("file")
        if not isinstance(content, bytes):
            raise _ApiError(400, "'file' is a required multipart file field.", param="file")
        name = getattr(content, "filename", "") or call.body.get("filename") or "upload"
        return _JsonReply(copy.deepcopy(self._store_file(name, content, call.body["purpose"])))

    def _store_file(self, name: str, content: bytes, purpose: str) -> dict[str, Any]:
        stored = {
            "id": _new_id("file"),
            "object": "file",
            "bytes": len(content),
            "created_at": _now(),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }
        self._files[stored["id"]] = stored
        self._file_contents[stored["id"]] = bytes(content)
        return stored

    def _retrieve_file(self, call: _ApiCall, file_id: str) -> _JsonReply:
        return _JsonReply(copy.deepcopy(self._file(file_id)))

    def _file_content(self, call: _ApiCall, file_id: str) -> _BinaryReply:
        self._file(file_id)
        return _BinaryReply(self._file_contents[file_id])

    def _file(self, file_id: str) -> dict[str, Any]:
        file = self._files.get(file_id)
        if file is None:
            raise _not_found("file", file_id)
        return file

    def _create_transcription(self, call: _ApiCall) -> _JsonReply:
        name = getattr(call.body["file"], "filename", "")
        if Path(name).suffix.lstrip(".").lower() not in TRANSCRIBABLE_FORMATS:
            raise _ApiError(
                400, f"Invalid file format. Supported formats: {sorted(TRANSCRIBABLE_FORMATS)}", param="file"
            )
        return _JsonReply({"text": self.transcripts.get(name, f"Transcript of {name}.")})

    def _create_vector_store_file(self, call: _ApiCall, vector_store_id: str) -> _JsonReply:
        store = self._vector_store(vector_store_id)
        file = self._file(call.body["file_id"])
        files = self._vector_store_files.setdefault(vector_store_id, {})
        if file["id"] not in files:
            files[file["id"]] = {
                "id": file["id"],
                "object": "vector_store.file",
                "usage_bytes": 0,
                "created_at": _now(),
                "vector_store_id": vector_store_id,
                "status": "in_progress",
                "last_error": None,
            }
            self._count_vector_store_files(store)
        return _JsonReply(copy.deepcopy(files[file["id"]]))

    def _retrieve_vector_store_file(self, call: _ApiCall, vector_store_id: str, file_id: str) -> _JsonReply:
        """Indexing ends at the first look after the file was added: completed, or failed as the test asked."""
        store = self._vector_store(vector_store_id)
        indexed = self._vector_store_files.get(vector_store_id, {}).get(file_id)
        if indexed is None:
            raise _not_found("vector store file", file_id)
        if indexed["status"] == "in_progress":
            file = self._files.get(file_id, {})
            error_code = self.vector_store_file_errors.get(file.get("filename", ""))
            if error_code is None:
                indexed.update(status="completed", usage_bytes=file.get("bytes", 0))
            else:
                error = {"code": error_code, "message": "The file could not be parsed."}
                indexed.update(status="failed", last_error=error)
            self._count_vector_store_files(store)
        return _JsonReply(copy.deepcopy(indexed))

    def _delete_vector_store_file(self, call: _ApiCall, vector_store_id: str, file_id: str) -> _JsonReply:
        store = self._vector_store(vector_store_id)
        if self._vector_store_files.get(vector_store_id, {}).pop(file_id, None) is None:
            raise _not_found("vector store file", file_id)
        self._count_vector_store_files(store)
        return _JsonReply({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})

    def _vector_store(self, vector_store_id: str) -> dict[str, Any]:
        store = self._vector_stores.get(vector_store_id)
        if store is None:
            raise _not_found("vector store", vector_store_id)
        return store

    def _count_vector_store_files(self, store: dict[str, Any]) -> None:
        statuses = [f["status"] for f in self._vector_store_files.get(store["id"], {}).values()]
        store["file_counts"] = {
            status: statuses.count(status) for status in ("in_progress", "completed", "failed", "cancelled")
        } | {"total": len(statuses)}

    def _delete_file(self, call: _ApiCall, file_id: str) -> _JsonReply:
        if self._files.pop(file_id, None) is None:
            raise _not_found("file", file_id)
        self._file_contents.pop(file_id, None)
        return _JsonReply({"id": file_id, "object": "file", "deleted": True})

    def _create_vector_store(self, call: _ApiCall) -> _JsonReply:
        body = call.body or {}
        file_ids = body.get("file_ids") or []
        store = {
            "id": _new_id("vs"),
            "object": "vector_store",
            "created_at": _now(),
            "name": body.get("name") or "",
            "usage_bytes": 0,
            "file_counts": {
                "in_progress": 0, "completed": len(file_ids), "failed": 0, "cancelled": 0, "total": len(file_ids)
            },
            "status": "completed",
            "last_active_at": _now(),
            "metadata": body.get("metadata") or {},
        }
        self._vector_stores[store["id"]] = store
        return _JsonReply(copy.deepcopy(store))

    def _delete_vector_store(self, call: _ApiCall, vector_store_id: str) -> _JsonReply:
        if self._vector_stores.pop(vector_store_id, None) is None:
            raise _not_found("vector store", vector_store_id)
        self._vector_store_files.pop(vector_store_id, None)
        return _JsonReply({"id": vector_store_id, "object": "vector_store.deleted", "deleted": True})

    # -- assistants -----------------------------------------------------------------------------------

    def _create_assistant(self, call: _ApiCall) -> _JsonReply:
        assistant = {
            "id": _new_id("asst"),
            "object": "assistant",
            "created_at": _now(),
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
        self._assistants[assistant["id"]] = assistant
        return _JsonReply(copy.deepcopy(assistant))

    def _list_assistants(self, call: _ApiCall) -> _JsonReply:
        return _JsonReply(_page(list(self._assistants.values()), call.query))

    def _retrieve_assistant(self, call: _ApiCall, assistant_id: str) -> _JsonReply:
        return _JsonReply(copy.deepcopy(self._assistant(assistant_id)))

    def _modify_assistant(self, call: _ApiCall, assistant_id: str) -> _JsonReply:
        assistant = self._assistant(assistant_id)
        assistant.update({key: call.body[key] for key in _ASSISTANT_FIELDS if key in call.body})
        return _JsonReply(copy.deepcopy(assistant))

    def _delete_assistant(self, call: _ApiCall, assistant_id: str) -> _JsonReply:
        self._assistant(assistant_id)
        del self._assistants[assistant_id]
        return _JsonReply({"id": assistant_id, "object": "assistant.deleted", "deleted": True})

    # -- threads and messages ---------------------------------------------------------------------------

    def _create_thread(self, call: _ApiCall) -> _JsonReply:
        return _JsonReply(copy.deepcopy(self._new_thread(call.body or {})))

    def _retrieve_thread(self, call: _ApiCall, thread_id: str) -> _JsonReply:
        return _JsonReply(copy.deepcopy(self._thread(thread_id)))

    def _modify_thread(self, call: _ApiCall, thread_id: str) -> _JsonReply:
        thread = self._thread(thread_id)
        thread.update({key: call.body[key] for key in ("metadata", "tool_resources") if key in (call.body or {})})
        return _JsonReply(copy.deepcopy(thread))

    def _delete_thread(self, call: _ApiCall, thread_id: str) -> _JsonReply:
        self._thread(thread_id)
        del self._threads[thread_id]
        del self._messages[thread_id]
        for run_id in [run_id for run_id, run in self._runs.items() if run.data["thread_id"] == thread_id]:
            del self._runs[run_id]
            self._steps.pop(run_id, None)
        return _JsonReply({"id": thread_id, "object": "thread.deleted", "deleted": True})

    def _create_message(self, call: _ApiCall, thread_id: str) -> _JsonReply:
        self._thread(thread_id)
        active = self._active_run(thread_id)
        if active is not None:
            raise _ApiError(400, f"Can't add messages to {thread_id} while a run {active['id']} is active.")
        return _JsonReply(copy.deepcopy(self._add_requested_message(thread_id, call.body)))

    def _list_messages(self, call: _ApiCall, thread_id: str) -> _JsonReply:
        self._thread(thread_id)
        messages = list(self._messages[thread_id].values())
        run_id = call.query.get("run_id")
        if run_id is not None:
            messages = [message for message in messages if message["run_id"] == run_id]
        return _JsonReply(_page(messages, call.query))

    def _retrieve_message(self, call: _ApiCall, thread_id: str, message_id: str) -> _JsonReply:
        self._thread(thread_id)
        message = self._messages[thread_id].get(message_id)
        if message is None:
            raise _not_found("message", message_id)
        return _JsonReply(copy.deepcopy(message))

    # -- runs ---------------------------------------------------------------------------------------------

    def _create_run(self, call: _ApiCall, thread_id: str) -> _JsonReply | _StreamReply:
        self._thread(thread_id)
        active = self._active_run(thread_id)
        if active is not None:
            raise _ApiError(400, f"Thread {thread_id} already has an active run {active['id']}.")
        assistant = self._assistant(call.body["assistant_id"])
        for message in call.body.get("additional_messages") or []:
            self._add_requested_message(thread_id, message)
        run = self._start_run(thread_id, assistant, call.body)
        return self._run_reply(run, call.body)

    def _create_thread_and_run(self, call: _ApiCall) -> _JsonReply | _StreamReply:
        assistant = self._assistant(call.body["assistant_id"])
        thread = self._new_thread(call.body.get("thread") or {})
        run = self._start_run(thread["id"], assistant, call.body)
        return self._run_reply(run, call.body, [_StreamEvent("thread.created", copy.deepcopy(thread))])

    def _list_runs(self, call: _ApiCall, thread_id: str) -> _JsonReply:
        self._thread(thread_id)
        runs = [run.data for run in self._runs.values() if run.data["thread_id"] == thread_id]
        return _JsonReply(_page(runs, call.query))

    def _retrieve_run(self, call: _ApiCall, thread_id: str, run_id: str) -> _JsonReply:
        run = self._run(thread_id, run_id)
        if not run.streamed:
            # Without a stream nothing else drives the run: each retrieval moves it one status on.
            status = run.data["status"]
            while run.data["status"] == status and next(run.events, None) is not None:
                pass
        return _JsonReply(copy.deepcopy(run.data))

    def _submit_tool_outputs(self, call: _ApiCall, thread_id: str, run_id: str) -> _JsonReply | _StreamReply:
        run = self._run(thread_id, run_id)
        status = run.data["status"]
        if status != "requires_action":
            raise _ApiError(400, f'Runs in status "{status}" do not accept tool outputs.')
        expected = [tool_call["id"] for tool_call in run.data["required_action"]["submit_tool_outputs"]["tool_calls"]]
        outputs = call.body["tool_outputs"]
        given = [output.get("tool_call_id") for output in outputs]
        if sorted(expected, key=str) != sorted(given, key=str):
            raise _ApiError(400, f"Expected tool outputs for call_ids {expected}, got {given}", param="tool_outputs")
        outputs_by_call = {output["tool_call_id"]: output.get("output", "") for output in outputs}
        self._tool_outputs += [
            {"run_id": run_id, "tool_call_id": call_id, "output": output} for call_id, output in outputs_by_call.items()
        ]
        step = next(step for step in self._steps[run_id].values() if step["status"] == "in_progress")
        for tool_call in step["step_details"]["tool_calls"]:
            tool_call["function"]["output"] = outputs_by_call[tool_call["id"]]
        step.update(status="completed", completed_at=_now())
        run.data.update(status="queued", required_action=None)
        run.events = self._after_tool_outputs(run, step, [outputs_by_call[call_id] for call_id in expected])
        return self._run_reply(run, call.body)

    def _cancel_run(self, call: _ApiCall, thread_id: str, run_id: str) -> _JsonReply:
        run = self._run(thread_id, run_id)
        status = run.data["status"]
        if status not in ACTIVE_RUN_STATUSES or status == "cancelling":
            raise _ApiError(400, f"Cannot cancel run with status '{status}'.")
        run.data["status"] = "cancelling"
        run.events = self._cancellation(run)
        return _JsonReply(copy.deepcopy(run.data))

    def _list_run_steps(self, call: _ApiCall, thread_id: str, run_id: str) -> _JsonReply:
        self._run(thread_id, run_id)
        return _JsonReply(_page(list(self._steps[run_id].values()), call.query))

    def _retrieve_run_step(self, call: _ApiCall, thread_id: str, run_id: str, step_id: str) -> _JsonReply:
        self._run(thread_id, run_id)
        step = self._steps[run_id].get(step_id)
        if step is None:
            raise _not_found("run step", step_id)
        return _JsonReply(copy.deepcopy(step))

    def _run_reply(
        self, run: _Run, body: dict[str, Any], leading_events: list[_StreamEvent] | None = None
    ) -> _JsonReply | _StreamReply:
        """Stream the run if asked (and streaming is on); otherwise answer its current state as JSON."""
        if body.get("stream") and self.streaming:
            run.streamed = True
            return _StreamReply(run.data["id"], leading_events or [])
        return _JsonReply(copy.deepcopy(run.data))

    # -- run life cycle -------------------------------------------------------------------------------
    # Each generator changes the state first and then yields the event announcing it, so whoever
    # consumes the events (a stream, a poll, a cut connection) sees exactly the state they describe.

    def _start_run(self, thread_id: str, assistant: dict[str, Any], body: dict[str, Any]) -> _Run:
        now = _now()
        instructions = body.get("instructions") or assistant["instructions"] or ""
        if body.get("additional_instructions"):
            instructions = f"{instructions}\n{body['additional_instructions']}".strip()
        data = {
            "id": _new_id("run"),
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
        run = _Run(data, self._scripts.popleft() if self._scripts else ScriptedRun())
        run.events = self._lifecycle(run)
        self._runs[data["id"]] = run
        self._steps[data["id"]] = {}
        return run

    def _lifecycle(self, run: _Run) -> Iterator[_StreamEvent]:
        yield _run_event("created", run)
        yield _run_event("queued", run)
        if run.script.stall:
            return
        run.data.update(status="in_progress", started_at=_now())
        yield _run_event("in_progress", run)
        if run.script.tool_calls:
            yield from self._request_tool_outputs(run)
        else:
            yield from self._answer(run, run.script.text)

    def _request_tool_outputs(self, run: _Run) -> Iterator[_StreamEvent]:
        tool_calls = [
            {"id": _new_id("call"), "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
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

    def _after_tool_outputs(self, run: _Run, step: dict[str, Any], outputs: list[str]) -> Iterator[_StreamEvent]:
        yield _step_event("completed", step)
        yield _run_event("queued", run)
        run.data["status"] = "in_progress"
        yield _run_event("in_progress", run)
        text = run.script.text_after_tools
        yield from self._answer(run, text if text is not None else "Tool results: " + json.dumps(outputs))

    def _answer(self, run: _Run, text: str | None) -> Iterator[_StreamEvent]:
        final_status = run.script.status
        if text is None:
            if final_status != "completed":
                yield from self._settle(run, final_status)
                return
            text = "Echo: " + self._newest_user_text(run.data["thread_id"])
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
        yield _StreamEvent("thread.message.created", copy.deepcopy(message))
        yield _StreamEvent("thread.message.in_progress", copy.deepcopy(message))
        for piece in _split_text(text, run.script.chunks):
            if not message["content"]:
                message["content"].append({"type": "text", "text": {"value": "", "annotations": []}})
            message["content"][0]["text"]["value"] += piece
            delta = {"content": [{"index": 0, "type": "text", "text": {"value": piece, "annotations": []}}]}
            message_delta = {"id": message["id"], "object": "thread.message.delta", "delta": delta}
            yield _StreamEvent("thread.message.delta", message_delta)
        if message["content"]:
            message["content"][0]["text"]["annotations"] = [
                _annotation(kind, marker, file_id, text) for kind, marker, file_id in run.script.annotations
            ]
        message["content"] += [
            {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}
            for file_id in run.script.image_file_ids
        ]
        yield from self._settle(run, final_status)

    def _cancellation(self, run: _Run) -> Iterator[_StreamEvent]:
        yield _run_event("cancelling", run)
        yield from self._settle(run, "cancelled")

    def _settle(self, run: _Run, final_status: str) -> Iterator[_StreamEvent]:
        """End the run's open message and step, then the run itself, in `final_status`."""
        now = _now()
        for message in self._messages[run.data["thread_id"]].values():
            if message["run_id"] == run.data["id"] and message["status"] == "in_progress":
                if final_status == "completed":
                    message.update(status="completed", completed_at=now)
                else:
                    reason = _MESSAGE_INCOMPLETE_REASONS[final_status]
                    message.update(status="incomplete", incomplete_at=now, incomplete_details={"reason": reason})
                yield _StreamEvent(f"thread.message.{message['status']}", copy.deepcopy(message))
        step_status = _STEP_FINAL_STATUSES[final_status]
        for step in self._steps[run.data["id"]].values():
            if step["status"] == "in_progress":
                step.update(status=step_status, **{f"{step_status}_at": now})
                if step_status == "failed":
                    step["last_error"] = {"code": "server_error", "message": self._last_error(run)["message"]}
                yield _step_event(step_status, step)
        run.data.update(status=final_status, required_action=None)
        if final_status != "expired":
            run.data["expires_at"] = None
        if final_status in ("completed", "incomplete"):
            run.data.update(completed_at=now, usage=self._usage(run))
        if final_status == "incomplete":
            run.data["incomplete_details"] = run.script.incomplete_details or _DEFAULT_INCOMPLETE_DETAILS
        elif final_status == "failed":
            run.data.update(failed_at=now, last_error=self._last_error(run))
        elif final_status == "cancelled":
            run.data["cancelled_at"] = now
        yield _run_event(final_status, run)

    @staticmethod
    def _last_error(run: _Run) -> dict[str, Any]:
        return run.script.last_error or _DEFAULT_LAST_ERROR

    def _usage(self, run: _Run) -> dict[str, int]:
        """Deterministic token counts: words of the prompt (instructions and earlier messages) and of the answer."""
        messages = self._messages[run.data["thread_id"]].values()
        prompt = len(run.data["instructions"].split()) + sum(
            len(_message_text(m).split()) for m in messages if m["run_id"] != run.data["id"]
        )
        completion = sum(len(_message_text(m).split()) for m in messages if m["run_id"] == run.data["id"])
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # -- state helpers ----------------------------------------------------------------------------------

    def _assistant(self, assistant_id: str) -> dict[str, Any]:
        assistant = self._assistants.get(assistant_id)
        if assistant is None:
            raise _not_found("assistant", assistant_id)
        return assistant

    def _thread(self, thread_id: str) -> dict[str, Any]:
        thread = self._threads.get(thread_id)
        if thread is None:
            raise _not_found("thread", thread_id)
        return thread

    def _run(self, thread_id: str, run_id: str) -> _Run:
        self._thread(thread_id)
        run = self._runs.get(run_id)
        if run is None or run.data["thread_id"] != thread_id:
            raise _not_found("run", run_id)
        return run

    def _active_run(self, thread_id: str) -> dict[str, Any] | None:
        return next(
            (
                run.data
                for run in self._runs.values()
                if run.data["thread_id"] == thread_id and run.data["status"] in ACTIVE_RUN_STATUSES
            ),
            None,
        )

    def _new_thread(self, request: dict[str, Any]) -> dict[str, Any]:
        thread = {
            "id": _new_id("thread"),
            "object": "thread",
            "created_at": _now(),
            "tool_resources": request.get("tool_resources") or {},
            "metadata": request.get("metadata") or {},
        }
        self._threads[thread["id"]] = thread
        self._messages[thread["id"]] = {}
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
            "id": _new_id("msg"),
            "object": "thread.message",
            "created_at": _now(),
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
        self._messages[thread_id][message["id"]] = message
        return message

    def _add_step(self, run: _Run, step_details: dict[str, Any]) -> dict[str, Any]:
        step = {
            "id": _new_id("step"),
            "object": "thread.run.step",
            "created_at": _now(),
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
        self._steps[run.data["id"]][step["id"]] = step
        return step

    def _newest_user_text(self, thread_id: str) -> str:
        user_messages = [m for m in self._messages[thread_id].values() if m["role"] == "user"]
        return _message_text(user_messages[-1]) if user_messages else ""


# -- module helpers ---------------------------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _first_given(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def _mask_key(key: str) -> str:
    return key if len(key) <= 8 else f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def _not_found(kind: str, object_id: str) -> _ApiError:
    return _ApiError(404, f"No {kind} found with id '{object_id}'.")


def _model_object(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_715_367_049, "owned_by": owner}


def _run_event(suffix: str, run: _Run) -> _StreamEvent:
    return _StreamEvent(f"thread.run.{suffix}", copy.deepcopy(run.data))


def _step_event(suffix: str, step: dict[str, Any]) -> _StreamEvent:
    return _StreamEvent(f"thread.run.step.{suffix}", copy.deepcopy(step))


def _annotation(kind: str, marker: str, file_id: str, text: str) -> dict[str, Any]:
    """A file_citation or file_path annotation on the first place `marker` appears in the answer text."""
    start = text.index(marker)
    end = start + len(marker)
    return {"type": kind, "text": marker, kind: {"file_id": file_id}, "start_index": start, "end_index": end}


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


def _split_text(text: str, chunks: int) -> list[str]:
    """Split text into at most `chunks` consecutive pieces of near-equal length."""
    count = min(chunks, len(text))
    bounds = [round(index * len(text) / count) for index in range(count + 1)] if count else []
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def _page(items: list[dict[str, Any]], query: dict[str, Any]) -> dict[str, Any]:
    """A cursor-paginated list response (limit, order, after, before) over items in creation order."""
    limit = max(1, min(int(query.get("limit", _LIST_LIMIT_DEFAULT)), _LIST_LIMIT_MAX))
    ordered = items if query.get("order", "desc") == "asc" else items[::-1]
    ids = [item["id"] for item in ordered]
    window = ordered
    if "after" in query:
        window = window[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
    if "before" in query:
        window_ids = [item["id"] for item in window]
        window = window[: window_ids.index(query["before"])] if query["before"] in window_ids else []
    # Paging backwards (`before` alone) returns the items just before the cursor.
    page = window[-limit:] if "before" in query and "after" not in query else window[:limit]
    return {
        "object": "list",
        "data": copy.deepcopy(page),
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(window) > len(page),
    }


def _query_dict(query: MultiMapping[str]) -> dict[str, Any]:
    """Query parameters; a repeated name (e.g. include[]) maps to the list of its values."""
    result: dict[str, Any] = {}
    for name in query:
        values = query.getall(name)
        result[name] = values[0] if len(values) == 1 else values
    return result


async def _read_body(request: web.Request) -> tuple[Any, str | None]:
    """The parsed body (JSON, or form fields with files as bytes) and what was wrong with it, if anything."""
    if not request.body_exists:
        return None, None
    if request.content_type == "multipart/form-data":
        fields: dict[str, Any] = {}
        async for part in await request.multipart():
            if part.filename:
                value = _Upload(await part.read())
                value.filename, value.content_type = part.filename, part.headers.get("Content-Type", "")
            else:
                value = await part.text()
            if part.name in fields:
                previous = fields[part.name]
                fields[part.name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                fields[part.name] = value
        return fields, None
    if request.content_type == "application/x-www-form-urlencoded":
        return _query_dict(await request.post()), None
    raw = await request.read()
    if not raw:
        return None, None
    try:
        return json.loads(raw), None
    except ValueError:
        return raw.decode("utf-8", "replace"), (
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
        )


def _moderated_part(part: dict[str, Any]) -> tuple[str, str]:
    """A multi-modal part as (kind, content); an image's content is its bytes, so tests flag pictures by what they hold."""
    if part["type"] == "text":
        return "text", part["text"]
    url = part["image_url"]["url"]
    if url.startswith("data:") and ";base64," in url:
        return "image", base64.b64decode(url.split(",", 1)[1]).decode("latin-1")
    return "image", url

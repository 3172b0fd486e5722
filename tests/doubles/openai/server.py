"""The OpenAI double's server core: routing, shapes, auth, faults, lost answers, streams and spec checks."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aiohttp import web
from multidict import MultiMapping

from ..openapi_spec import OpenAPIValidator, get_validator
from .script import ScriptedAnswer

if TYPE_CHECKING:
    from collections.abc import Iterable

API_PREFIX = "/v1"
# Like the API's CDN links (generated images): served without an API key.
DOWNLOADS_PATH = "/generated-images"
# The API families a server of each shape offers; a route of any other family is an unknown URL there.
SERVER_SHAPES: dict[str, frozenset[str]] = {
    "full": frozenset(
        {
            "models",
            "moderations",
            "images",
            "audio",
            "files",
            "vector_stores",
            "assistants",
            "responses",
            "conversations",
            "containers",
            "chat",
            "embeddings",
        }
    ),
    # api.openai.com since the Assistants API was shut down (2026-08-26).
    "openai": frozenset(
        {
            "models",
            "moderations",
            "images",
            "audio",
            "files",
            "vector_stores",
            "responses",
            "conversations",
            "containers",
            "chat",
            "embeddings",
        }
    ),
    # A chat-completions-compatible server (gateways, local model servers).
    "chat_only": frozenset({"chat", "embeddings", "moderations", "models", "audio", "images"}),
    # A bare local model server (llama.cpp's, for one): chat and embeddings, no moderation.
    "bare_chat": frozenset({"chat", "embeddings", "models"}),
}
# How often a stream of a stalled job looks again for something to say.
_STALL_POLL_SECONDS = 0.02
_LIST_LIMIT_DEFAULT, _LIST_LIMIT_MAX = 20, 100
# The SSE events whose delivery a script's chunk_delay paces, in each API's vocabulary.
_TEXT_DELTA_EVENTS = frozenset({"thread.message.delta", "response.output_text.delta"})
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


# -- the vocabulary between the core and the families ---------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the double received it (header names lower-cased, body parsed)."""

    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: Any


@dataclass
class ApiCall:
    """What a handler gets: query parameters, the parsed body (form files as Upload) and lower-cased headers."""

    query: dict[str, Any]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class JsonReply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class BinaryReply:
    """Raw bytes, as the API serves file content (the spec's `type: string` JSON schema does not describe it)."""

    body: bytes
    content_type: str = "application/octet-stream"


class Upload(bytes):
    """A multipart file field: its bytes, plus the file name and content type the client gave."""

    filename: str = ""
    content_type: str = ""


class ApiError(Exception):
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

    def reply(self) -> JsonReply:
        return JsonReply(self.body, self.status, self.headers)


def not_found(kind: str, object_id: str) -> ApiError:
    """The API's 404 for an unknown object id."""
    return ApiError(404, f"No {kind} found with id '{object_id}'.")


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event; a None name is a data-only event (chat-completion chunks have no `event:` line)."""

    name: str | None
    data: Any


class StreamSource(Protocol):
    """What a stream delivers; the core calls next_event and release with core.lock held."""

    # Seconds to wait after each text-delta event, so that tests can watch a reply grow.
    chunk_delay: float
    # Seconds to wait before the first text-delta event: the model's time to first token.
    first_token_delay: float

    def next_event(self) -> StreamEvent | None | Literal["wait"]:
        """The next event; None once finished; "wait" when there is nothing yet (poll again shortly)."""
        ...

    def release(self) -> None:
        """Nobody listens any more (hung up, cut or lost): live out the rest at once, the job goes on."""
        ...


@dataclass
class StreamReply:
    """Answer as server-sent events from `source`, then `done`; each event is checked as `validate_as` says."""

    source: StreamSource
    done: StreamEvent | None
    validate_as: Literal["assistants", "responses", "chat"]


Reply = JsonReply | BinaryReply | StreamReply
Handler = Callable[..., Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    # Assistants and threads endpoints need `OpenAI-Beta: assistants=v2`.
    beta: bool

    @classmethod
    def of(cls, method: str, template: str, handler: Handler, *, beta: bool = False) -> Route:
        """A route for `template` under /v1, e.g. "/threads/{thread_id}"; path parameters become keywords."""
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(API_PREFIX + template))
        return cls(method, re.compile(pattern), handler, beta)


class Family(Protocol):
    """One API family of the double, built as Family(core); its handlers run with core.lock held."""

    name: str

    def routes(self) -> list[Route]:
        """Its operations; literal paths before templated ones that would also match."""
        ...

    def reset(self) -> None:
        """Forget every object and setting of the family."""
        ...


@dataclass(frozen=True)
class ModelInput:
    """What the model saw in one call: the API that called it and (role, text) pairs in order."""

    api: str
    messages: list[tuple[str, str]]


@dataclass
class _Fault:
    method: str
    path_pattern: re.Pattern[str]
    error: ApiError
    remaining: int
    after_processing: bool  # carry the request out first, then answer the error (a gateway's 502 after the API did it)


@dataclass
class _LostResponse:
    method: str
    path_pattern: re.Pattern[str]
    answered_first: int  # matching requests still answered before the one whose response is lost


# -- the core ----------------------------------------------------------------------------------------------


class ServerCore:
    """Serves the registered families over HTTP from a background thread and holds what they share."""

    def __init__(
        self, api_key: str, *, require_query_token: tuple[str, str] | None = None, shape: str = "full"
    ) -> None:
        _check_shape(shape)
        # Tests may switch auth and shape on a shared double; reset() restores what it was built with.
        self._constructed = (api_key, require_query_token, shape)
        self.lock = threading.RLock()
        self._families: dict[str, Family] = {}
        self._routes: list[tuple[str, Route]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server_thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self._reset_own_state()

    # -- families ------------------------------------------------------------------------------------

    def register(self, family: Family) -> None:
        if family.name not in SERVER_SHAPES["full"]:
            raise ValueError(f"unknown API family {family.name!r}")
        with self.lock:
            self._families[family.name] = family
            self._routes += [(family.name, route) for route in family.routes()]

    def family(self, name: str) -> Any:
        """Another family, e.g. files for the ids an input refers to."""
        with self.lock:
            return self._families[name]

    @property
    def shape(self) -> str:
        return self._shape

    @shape.setter
    def shape(self, shape: str) -> None:
        _check_shape(shape)
        with self.lock:
            self._shape = shape

    def reset(self) -> None:
        """Forget everything the core and every family hold; put settings back as constructed."""
        with self.lock:
            self._reset_own_state()
            for family in self._families.values():
                family.reset()

    def _reset_own_state(self) -> None:
        with self.lock:
            self.api_key, self.require_query_token, self._shape = self._constructed
            self.streaming = True
            self.cut_stream_after: int | None = None
            self.end_streams_after: int | None = None
            self._scripts: list[ScriptedAnswer] = []
            # What the model answers when nothing is scripted (the benchmark gives it a length and a pace).
            self.default_answer = ScriptedAnswer()
            self._model_inputs: list[ModelInput] = []
            self._faults: list[_Fault] = []
            self._lost_responses: list[_LostResponse] = []
            self._requests: list[RecordedRequest] = []
            self._violations: list[str] = []
            self._downloads: dict[str, bytes] = {}
            # The paths of streams whose client hung up before their end (how a completion is stopped).
            self._hung_up_streams: list[str] = []

    # -- what families share -------------------------------------------------------------------------

    @property
    def validator(self) -> OpenAPIValidator:
        return get_validator()

    @staticmethod
    def new_id(prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(12)}"

    @staticmethod
    def now() -> int:
        return int(time.time())

    def script(self, *answers: ScriptedAnswer) -> None:
        with self.lock:
            self._scripts.extend(answers)

    def next_script(self) -> ScriptedAnswer:
        """The next scripted answer, or the default one when nothing is queued."""
        with self.lock:
            return self._scripts.pop(0) if self._scripts else copy.copy(self.default_answer)

    def record_model_input(self, api: str, messages: Iterable[tuple[str, str]]) -> None:
        """Note one model call and the (role, text) pairs it saw, the same way on every API.

        Instructions come first as ("system", text) when there are any; then the conversation's
        messages as ("user" | "assistant", their text parts joined by newlines; other parts left out);
        tool outputs handed back to the model as ("tool", output), in call order.
        """
        with self.lock:
            self._model_inputs.append(ModelInput(api, list(messages)))

    def model_inputs(self, api: str | None = None) -> list[list[tuple[str, str]]]:
        with self.lock:
            return [copy.copy(seen.messages) for seen in self._model_inputs if api is None or seen.api == api]

    def record_violations(self, problems: list[str]) -> None:
        if problems:
            with self.lock:
                self._violations.extend(problems)

    def publish_download(self, name: str, content: bytes) -> str:
        """Serve content at a keyless URL, as the API's CDN serves generated images; returns the URL."""
        with self.lock:
            self._downloads[name] = content
        return f"http://127.0.0.1:{self._port}{DOWNLOADS_PATH}/{name}"

    # -- faults and inspection -------------------------------------------------------------------------

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
        after_processing: bool = False,
    ) -> None:
        default_type, default_message = _FAULT_DEFAULTS.get(
            code if code in _FAULT_DEFAULTS else status,
            ("server_error" if status >= 500 else "invalid_request_error", "Injected failure."),
        )
        error = ApiError(
            status, message or default_message, error_type=error_type or default_type, code=code, headers=headers
        )
        with self.lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), error, times, after_processing))

    def lose_response_next(self, method: str, path_regex: str, *, after: int = 0) -> None:
        with self.lock:
            self._lost_responses.append(_LostResponse(method.upper(), re.compile(path_regex), after))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    def hung_up_streams(self) -> list[str]:
        """The request paths of the streams the client closed before they ended, oldest first."""
        with self.lock:
            return list(self._hung_up_streams)

    def forget_requests(self) -> None:
        """Drop the traffic recorded so far (a bot's start-up checks), so a test sees only what it caused."""
        with self.lock:
            self._requests.clear()

    @property
    def violations(self) -> list[str]:
        with self.lock:
            return list(self._violations)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._server_thread is not None:
            raise RuntimeError("the OpenAI double is already running")
        get_validator()  # parse the spec now, not inside the first request's timeout
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._server_thread = threading.Thread(target=self._loop.run_forever, name="openai-double", daemon=True)
        self._server_thread.start()
        self._port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._server_thread is None or self._loop is None or self._runner is None:
            return
        self._stopping = True
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._server_thread.join(timeout=10)
        self._loop.close()
        self._server_thread = self._loop = self._runner = self._port = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the OpenAI double is not running; call start() first")
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    # -- HTTP --------------------------------------------------------------------------------------------

    async def _serve(self) -> int:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_get(DOWNLOADS_PATH + "/{name}", self._serve_download)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # Handler cancellation lets a client that hangs up end its stream; the job then finishes anyway.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return self._runner.addresses[0][1]

    async def _serve_download(self, request: web.Request) -> web.Response:
        if "Authorization" in request.headers:
            self.record_violations([f"an API key was sent to the download {request.path}"])
        with self.lock:
            content = self._downloads.get(request.match_info["name"])
        if content is None:
            return web.Response(status=404, text="BlobNotFound")
        return web.Response(body=content, content_type="image/png")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        request_id = f"req_{secrets.token_hex(16)}"
        body, body_problem = await _read_body(request)
        query = _query_dict(request.query)
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self.lock:
            self._requests.append(RecordedRequest(request.method, request.path, query, headers, body))
        route = self._match_route(request.method, request.path)
        try:
            reply = self._handle(request, route, ApiCall(query, body, headers), body_problem)
            late_fault = self._injected_fault(request.method, request.path, after_processing=True)
            if late_fault is not None:
                if isinstance(reply, StreamReply):
                    with self.lock:
                        reply.source.release()  # the job goes on; only its answer is replaced by the error
                raise late_fault
        except ApiError as error:
            reply = error.reply()
        except Exception as crash:
            crash_report = f"the double crashed on {request.method} {request.path}:\n{traceback.format_exc()}"
            self.record_violations([crash_report])
            reply = ApiError(500, f"The double crashed: {crash!r}", error_type="server_error").reply()
        if self._response_lost(request.method, request.path) and request.transport is not None:
            if isinstance(reply, StreamReply):
                with self.lock:
                    reply.source.release()  # the job goes on without anyone listening
            request.transport.close()
            return web.Response(status=204)
        if isinstance(reply, StreamReply):
            return await self._stream(request, reply, request_id)
        if isinstance(reply, BinaryReply):
            return web.Response(body=reply.body, content_type=reply.content_type, headers={"x-request-id": request_id})
        if route is not None:
            self.record_violations(
                self.validator.validate_response(request.method, request.path, status=reply.status, body=reply.body)
            )
        return web.json_response(reply.body, status=reply.status, headers={**reply.headers, "x-request-id": request_id})

    def _match_route(self, method: str, path: str) -> tuple[str, Route, dict[str, str]] | None:
        with self.lock:
            for family_name, route in self._routes:
                match = route.pattern.fullmatch(path)
                if match and route.method == method:
                    return family_name, route, match.groupdict()
        return None

    def _handle(
        self,
        request: web.Request,
        route: tuple[str, Route, dict[str, str]] | None,
        call: ApiCall,
        body_problem: str | None,
    ) -> Reply:
        """Everything before the endpoint's own logic: faults, auth, routing, shape, beta header, spec check."""
        early_fault = self._injected_fault(request.method, request.path, after_processing=False)
        if early_fault is not None:
            raise early_fault
        self._authenticate(request)
        if route is None or route[0] not in SERVER_SHAPES[self.shape]:
            raise ApiError(404, f"Invalid URL ({request.method} {request.path})")
        _, handler_route, path_params = route
        if handler_route.beta and "assistants=v2" not in request.headers.get("OpenAI-Beta", ""):
            raise ApiError(400, _MISSING_BETA_MESSAGE, code="invalid_beta")
        if body_problem:
            self.record_violations([f"request {request.method} {request.path}: {body_problem}"])
            raise ApiError(400, body_problem)
        problems = self.validator.validate_request(
            request.method,
            request.path,
            query=call.query,
            body=call.body,
            content_type=request.headers.get("Content-Type"),
        )
        if problems:
            self.record_violations(problems)
            raise ApiError(400, "; ".join(problems))
        with self.lock:
            return handler_route.handler(call, **path_params)

    def _injected_fault(self, method: str, path: str, *, after_processing: bool) -> ApiError | None:
        """The error of the first fault injected for this request at this moment (used up by one), if any."""
        with self.lock:
            for fault in self._faults:
                if (
                    fault.method == method
                    and fault.path_pattern.search(path)
                    and fault.after_processing == after_processing
                ):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault.error
        return None

    def _response_lost(self, method: str, path: str) -> bool:
        with self.lock:
            for lost in self._lost_responses:
                if lost.method == method and lost.path_pattern.search(path):
                    if lost.answered_first:
                        lost.answered_first -= 1
                        return False
                    self._lost_responses.remove(lost)
                    return True
        return False

    def _authenticate(self, request: web.Request) -> None:
        if self.require_query_token is not None:
            name, token = self.require_query_token
            if request.query.get(name) != token:
                raise ApiError(401, f"Missing or invalid '{name}' query parameter.", code="invalid_api_key")
            return
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, _MISSING_API_KEY_MESSAGE)
        if key.strip() != self.api_key:
            raise ApiError(
                401,
                f"Incorrect API key provided: {_mask_key(key.strip())}. "
                "You can find your API key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    # -- streams -----------------------------------------------------------------------------------------

    async def _stream(self, request: web.Request, reply: StreamReply, request_id: str) -> web.StreamResponse:
        """Send the source's events as server-sent events until it ends (or the configured cut)."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": request_id,
            }
        )
        await response.prepare(request)
        with self.lock:
            cut_after, end_after = self.cut_stream_after, self.end_streams_after
        sent = 0
        first_token_due = reply.source.first_token_delay > 0
        ended = False  # by its end, or by the double's own cut: anything else is the client hanging up
        try:
            while (event := await self._next_stream_event(reply.source)) is not None:
                if cut_after is not None and sent >= cut_after:
                    ended = True
                    # Finish the job first so that whatever the client does next sees it settled.
                    with self.lock:
                        reply.source.release()
                    if request.transport is not None:
                        request.transport.close()
                    return response
                if end_after is not None and sent >= end_after:
                    ended = True
                    with self.lock:
                        reply.source.release()
                    await response.write_eof()  # a clean end, without the done event, as a proxy may end it
                    return response
                if first_token_due and _is_text_delta(event):
                    first_token_due = False
                    await asyncio.sleep(reply.source.first_token_delay)
                await self._write_event(response, event, reply.validate_as)
                sent += 1
                if reply.source.chunk_delay and _is_text_delta(event):
                    await asyncio.sleep(reply.source.chunk_delay)
            # Released before the last bytes go out, so a client that has read the whole stream finds it released.
            with self.lock:
                reply.source.release()
            if reply.done is not None:
                await self._write_event(response, reply.done, reply.validate_as)
            await response.write_eof()
            ended = True
        finally:
            # A client that hung up does not stop the job on the server.
            with self.lock:
                reply.source.release()
                if not ended:
                    self._hung_up_streams.append(request.path)
        return response

    async def _next_stream_event(self, source: StreamSource) -> StreamEvent | None:
        while not self._stopping:
            with self.lock:
                event = source.next_event()
            if event != "wait":
                return event
            await asyncio.sleep(_STALL_POLL_SECONDS)
        return None

    async def _write_event(self, response: web.StreamResponse, event: StreamEvent, validate_as: str) -> None:
        self.record_violations(self.validator.validate_stream_event(event.name, event.data, api=validate_as))
        data = event.data if isinstance(event.data, str) else json.dumps(event.data)
        name_line = "" if event.name is None else f"event: {event.name}\n"
        await response.write(f"{name_line}data: {data}\n\n".encode())


# -- helpers -------------------------------------------------------------------------------------------------


def page(items: list[dict[str, Any]], query: dict[str, Any]) -> dict[str, Any]:
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
    selected = window[-limit:] if "before" in query and "after" not in query else window[:limit]
    return {
        "object": "list",
        "data": copy.deepcopy(selected),
        "first_id": selected[0]["id"] if selected else None,
        "last_id": selected[-1]["id"] if selected else None,
        "has_more": len(window) > len(selected),
    }


def _check_shape(shape: str) -> None:
    if shape not in SERVER_SHAPES:
        raise ValueError(f"shape must be one of {sorted(SERVER_SHAPES)}, not {shape!r}")


def _is_text_delta(event: StreamEvent) -> bool:
    if event.name in _TEXT_DELTA_EVENTS:
        return True
    data = event.data
    return (
        event.name is None
        and isinstance(data, dict)
        and any((choice.get("delta") or {}).get("content") for choice in data.get("choices", []))
    )


def _mask_key(key: str) -> str:
    return key if len(key) <= 8 else f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def _query_dict(query: MultiMapping[str]) -> dict[str, Any]:
    """Query parameters; a repeated name (e.g. include[]) maps to the list of its values."""
    result: dict[str, Any] = {}
    for name in query:
        values = query.getall(name)
        result[name] = values[0] if len(values) == 1 else values
    return result


async def _read_body(request: web.Request) -> tuple[Any, str | None]:
    """The parsed body (JSON, or form fields with files as Upload) and what was wrong with it, if anything."""
    if not request.body_exists:
        return None, None
    if request.content_type == "multipart/form-data":
        fields: dict[str, Any] = {}
        async for part in await request.multipart():
            if part.filename:
                value = Upload(await part.read())
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

"""OpenAIClient against a loopback aiohttp double: headers, retries, typed errors, secrets, SSE, paging, spec shapes."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import traceback
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from aiohttp import web
from jsonschema import Draft202012Validator
from multidict import CIMultiDictProxy
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from support.waiting import WAIT_SECONDS

import bot.openai_api.client as client_module
from bot.conversations.backends.assistants.api import AssistantsAPI
from bot.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InsufficientQuotaError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from bot.openai_api import (
    Assistant,
    Message,
    OpenAIClient,
    OtherContent,
    Run,
    Thread,
    ToolOutput,
)
from bot.openai_api.client import SSEvent, path_segment

KEY = "sk-test-KEY-0123456789abcdef"
HEADER_SECRET = "gw-HEADER-SECRET-4242"
QUERY_TOKEN = "qt-QUERY-TOKEN-9999"
SECRETS = (KEY, HEADER_SECRET, QUERY_TOKEN)
SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "openai" / "openapi.yaml"
LOGGER = client_module.__name__

Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeAPI:
    """Answers each request with the next scripted responder; the last one keeps answering."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: list[Responder] = []
        self.release = asyncio.Event()
        self.base_url = ""

    def answer(self, *responders: Responder) -> None:
        self.script = list(responders)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.raw_path,
                dict(request.query),
                request.headers,
                await request.read(),
            )
        )
        responder = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return await responder(request)


def reply(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Responder:
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return respond


def fail(
    status: int,
    message: str = "boom",
    *,
    code: str | None = None,
    error_type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> Responder:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return reply(body, status=status, headers={"x-request-id": "req_123", **(headers or {})})


def sse(*events: tuple[str | None, str], drop: bool = False) -> Responder:
    """An event stream of (event, data) pairs; with ``drop`` the connection is cut after them."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": "req_sse"})
        await response.prepare(request)
        for name, data in events:
            await response.write(((f"event: {name}\n" if name else "") + f"data: {data}\n\n").encode())
        if drop:
            assert request.transport is not None
            request.transport.abort()
        return response

    return respond


def cut_connection() -> Responder:
    async def respond(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    return respond


def hang(api: FakeAPI) -> Responder:
    async def respond(request: web.Request) -> web.StreamResponse:
        await api.release.wait()
        return web.json_response({})

    return respond


def run_json(status: str = "queued", **fields: Any) -> dict[str, Any]:
    return {
        "id": "run_1",
        "object": "thread.run",
        "thread_id": "thread_1",
        "assistant_id": "asst_1",
        "status": status,
        **fields,
    }


def message_json(text: str = "Hello") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "object": "thread.message",
        "thread_id": "thread_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
    }


def delta_json(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "object": "thread.message.delta",
        "delta": {"content": [{"index": 0, "type": "text", "text": {"value": text, "annotations": []}}]},
    }


def assistant_json(number: int) -> dict[str, Any]:
    return {
        "id": f"asst_{number}",
        "object": "assistant",
        "created_at": 1,
        "name": None,
        "description": None,
        "model": "gpt-4o-mini",
        "instructions": None,
        "tools": [],
        "metadata": {},
    }


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def exception_text(exc: BaseException) -> str:
    return repr(exc) + str(exc) + "".join(traceback.format_exception(exc))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER and record.levelno == logging.WARNING]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def serving_fake_api() -> AsyncIterator[FakeAPI]:
    """A FakeAPI on its own loopback port: its own origin, as another host would be."""
    fake = FakeAPI()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()


@pytest.fixture
async def api() -> AsyncIterator[FakeAPI]:
    async with serving_fake_api() as fake:
        yield fake


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records the client's backoff delays instead of waiting them out."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(client_module, "asyncio", SimpleNamespace(sleep=sleep))
    return delays


def make_client(base_url: str, **overrides: Any) -> OpenAIClient:
    options: dict[str, Any] = {
        "api_key": KEY,
        "base_url": base_url,
        "extra_headers": {"X-Gateway-Auth": HEADER_SECRET},
        "extra_query": {"token": QUERY_TOKEN},
        "max_retries": 3,
        "backoff_base": 0.001,
        "backoff_max": 0.005,
    }
    return OpenAIClient(**{**options, **overrides})


@pytest.fixture
async def client(api: FakeAPI, sleeps: list[float]) -> AsyncIterator[OpenAIClient]:
    async with make_client(api.base_url) as openai:
        yield openai


@pytest.fixture
def assistants(client: OpenAIClient) -> AssistantsAPI:
    return AssistantsAPI(client)


async def collect(events: AsyncGenerator[SSEvent, None]) -> list[SSEvent]:
    async with aclosing(events) as stream:
        return [event async for event in stream]


# ---- headers ---------------------------------------------------------------------------------


async def test_every_request_carries_auth_beta_agent_extra_headers_and_query(
    api: FakeAPI, client: OpenAIClient, assistants: AssistantsAPI
):
    api.answer(
        reply(assistant_json(1)),
        reply({"id": "thread_1", "object": "thread", "created_at": 1, "metadata": {}}),
        reply({"id": "thread_1", "object": "thread.deleted", "deleted": True}),
        reply({"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}),
        sse(("thread.run.created", json.dumps(run_json())), ("done", "[DONE]")),
    )
    await assistants.retrieve_assistant("asst_1")
    await assistants.create_thread([])
    assert (await client.request("DELETE", "/threads/thread_1"))["deleted"] is True
    await assistants.list_messages("thread_1", order="desc", limit=5)
    await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[]))

    assert [seen.method for seen in api.seen] == ["GET", "POST", "DELETE", "GET", "POST"]
    for seen in api.seen:
        assert seen.headers["Authorization"] == f"Bearer {KEY}"
        assert seen.headers["OpenAI-Beta"] == "assistants=v2"
        assert seen.headers["User-Agent"] == "slack-assistant-bot/0.1"
        assert seen.headers["X-Gateway-Auth"] == HEADER_SECRET
        assert seen.query["token"] == QUERY_TOKEN
    assert api.seen[3].query == {"token": QUERY_TOKEN, "order": "desc", "limit": "5"}
    assert api.seen[4].headers["Accept"] == "text/event-stream"


async def test_no_authorization_header_when_the_key_is_empty(api: FakeAPI):
    api.answer(reply(assistant_json(1)))
    async with make_client(api.base_url, api_key="") as openai:
        await AssistantsAPI(openai).retrieve_assistant("asst_1")
    assert "Authorization" not in api.seen[0].headers
    assert api.seen[0].query["token"] == QUERY_TOKEN


async def test_ids_cannot_add_path_segments_or_query(api: FakeAPI, client: OpenAIClient, assistants: AssistantsAPI):
    api.answer(reply({"id": "x", "object": "thread.deleted", "deleted": True}))
    await assistants.delete_thread("a/b?c=d")
    await client.request("GET", f"/threads/{path_segment('a/b?c=d')}")
    assert [seen.raw_path.split("?")[0] for seen in api.seen] == ["/v1/threads/a%2Fb%3Fc%3Dd"] * 2


# ---- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409, 429])
async def test_retryable_statuses_are_retried_until_success(
    api: FakeAPI, assistants: AssistantsAPI, sleeps: list[float], caplog: pytest.LogCaptureFixture, status: int
):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    api.answer(fail(status), fail(status), reply(assistant_json(1)))

    assistant = await assistants.retrieve_assistant("asst_1")

    assert assistant.id == "asst_1"
    assert len(api.seen) == 3
    assert len(sleeps) == 2
    records = warnings_of(caplog)
    assert len(records) == 2
    assert all(0 < delay <= 0.005 for delay in sleeps)
    message = records[0].getMessage()
    assert "GET /v1/assistants/asst_1" in message
    assert f"HTTP {status}" in message
    assert "attempt 1 of 3" in message
    assert "?" not in message


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": "3600"}, 30.0),
        ({"Retry-After": formatdate(time.time() + 7200, usegmt=True)}, 30.0),
        ({"Retry-After": formatdate(time.time() - 60, usegmt=True)}, 0.0),
    ],
)
async def test_retry_after_is_honoured_and_capped(
    api: FakeAPI, sleeps: list[float], headers: dict[str, str], expected: float
):
    api.answer(fail(429, headers=headers), reply(assistant_json(1)))
    async with make_client(api.base_url, backoff_base=10.0, backoff_max=30.0) as openai:
        await AssistantsAPI(openai).retrieve_assistant("asst_1")
    assert sleeps == [expected]


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "nan"},
        {"Retry-After": "NaN"},
        {"Retry-After": "inf"},
        {"Retry-After": "1e999"},
        {"retry-after-ms": "nan"},
        {"retry-after-ms": "-inf", "Retry-After": "Infinity"},
    ],
)
async def test_a_retry_after_that_is_not_a_finite_number_falls_back_to_backoff(
    api: FakeAPI, sleeps: list[float], headers: dict[str, str]
):
    api.answer(fail(429, headers=headers), reply(assistant_json(1)))
    async with make_client(api.base_url, backoff_base=10.0, backoff_max=30.0) as openai:
        await AssistantsAPI(openai).retrieve_assistant("asst_1")
    assert len(sleeps) == 1 and 5.0 <= sleeps[0] <= 10.0, sleeps  # the first backoff, jittered


@pytest.mark.parametrize("headers", [{"Retry-After": "-5"}, {"retry-after-ms": "-2500"}])
async def test_a_negative_retry_after_retries_at_once(api: FakeAPI, sleeps: list[float], headers: dict[str, str]):
    api.answer(fail(503, headers=headers), reply(assistant_json(1)))
    async with make_client(api.base_url, backoff_base=10.0, backoff_max=30.0) as openai:
        await AssistantsAPI(openai).retrieve_assistant("asst_1")
    assert sleeps == [0.0]


async def test_retry_after_as_a_near_http_date(api: FakeAPI, sleeps: list[float]):
    api.answer(fail(503, headers={"Retry-After": formatdate(time.time() + 20, usegmt=True)}), reply(assistant_json(1)))
    async with make_client(api.base_url, backoff_base=10.0, backoff_max=30.0) as openai:
        await AssistantsAPI(openai).retrieve_assistant("asst_1")
    assert 15.0 <= sleeps[0] <= 20.0


async def test_backoff_grows_exponentially_with_jitter(api: FakeAPI, sleeps: list[float]):
    api.answer(fail(500))
    async with make_client(api.base_url, backoff_base=1.0, backoff_max=3.0, max_retries=4) as openai:
        with pytest.raises(ServerError):
            await AssistantsAPI(openai).retrieve_assistant("asst_1")
    bounds = [1.0, 2.0, 3.0, 3.0]
    assert len(sleeps) == 4
    for delay, bound in zip(sleeps, bounds, strict=True):
        assert bound / 2 <= delay <= bound


async def test_gives_up_after_max_retries_with_the_last_error(api: FakeAPI, assistants: AssistantsAPI):
    api.answer(fail(503, "overloaded", error_type="server_error"))
    with pytest.raises(ServerError) as caught:
        await assistants.retrieve_assistant("asst_1")
    assert len(api.seen) == 4
    assert caught.value.status_code == 503
    assert caught.value.message == "overloaded"
    assert caught.value.request_id == "req_123"


async def test_insufficient_quota_is_never_retried(
    api: FakeAPI, assistants: AssistantsAPI, sleeps: list[float], caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    api.answer(fail(429, "You exceeded your current quota", code="insufficient_quota", error_type="insufficient_quota"))
    with pytest.raises(InsufficientQuotaError) as caught:
        await assistants.create_thread([])
    assert isinstance(caught.value, RateLimitError)
    assert caught.value.code == "insufficient_quota"
    assert len(api.seen) == 1
    assert sleeps == []
    assert warnings_of(caplog) == []


async def test_connection_refused_is_retried_then_raised(sleeps: list[float], caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with make_client(f"http://127.0.0.1:{free_port()}/v1") as openai:
        with pytest.raises(APIConnectionError) as caught:
            await openai.list_models()
    assert not isinstance(caught.value, APITimeoutError)
    assert "GET /v1/models failed: ConnectError" in str(caught.value)
    assert isinstance(caught.value.__cause__, Exception)
    records = warnings_of(caplog)
    assert len(records) == 3
    assert "ConnectError" in records[0].getMessage()


async def test_a_connection_cut_before_the_answer_is_retried(
    api: FakeAPI, assistants: AssistantsAPI, sleeps: list[float]
):
    api.answer(cut_connection(), reply(run_json("completed")))
    run = await assistants.retrieve_run("thread_1", "run_1")
    assert run.status == "completed"
    assert len(api.seen) == 2
    assert len(sleeps) == 1


async def test_read_timeout_becomes_api_timeout_error(api: FakeAPI, sleeps: list[float]):
    api.answer(hang(api))
    async with make_client(api.base_url, timeout=0.05, max_retries=1) as openai:
        with pytest.raises(APITimeoutError) as caught:
            await AssistantsAPI(openai).retrieve_run("thread_1", "run_1")
    assert "timed out" in str(caught.value)
    assert len(api.seen) == 2


# ---- typed errors and secrets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (422, APIStatusError),
    ],
)
async def test_error_statuses_become_typed_errors(
    api: FakeAPI, assistants: AssistantsAPI, status: int, error_class: type[APIStatusError]
):
    api.answer(fail(status, "Thread thread_1 has an active run", code="run_active", error_type="invalid_request_error"))
    with pytest.raises(APIStatusError) as caught:
        await assistants.create_message("thread_1", content="hi", attachments=[], key="E1")
    error = caught.value
    assert type(error) is error_class
    assert (error.status_code, error.message, error.code, error.error_type, error.request_id) == (
        status,
        "Thread thread_1 has an active run",
        "run_active",
        "invalid_request_error",
        "req_123",
    )
    assert str(error) == f"HTTP {status}: Thread thread_1 has an active run (request id req_123)"
    assert len(api.seen) == 1


async def test_a_non_json_error_page_gives_a_short_message(api: FakeAPI, client: OpenAIClient):
    async def html_page(request: web.Request) -> web.StreamResponse:
        page = f"<html><body><h1>502 Bad Gateway</h1>{request.path_qs}</body></html>"
        return web.Response(status=502, text=page, content_type="text/html")

    api.answer(html_page)
    with pytest.raises(ServerError) as caught:
        await client.request("GET", "/assistants")
    text = str(caught.value)
    assert text.startswith("HTTP 502: ")
    assert "text/html" in text
    assert "<" not in text
    assert_no_secrets(exception_text(caught.value))


async def test_a_gateway_error_string_is_used_as_the_message(api: FakeAPI, client: OpenAIClient):
    api.answer(reply({"error": "model not available"}, status=400))
    with pytest.raises(BadRequestError, match="model not available"):
        await client.request("POST", "/threads/thread_1/runs", json={"assistant_id": "asst_1"})


async def test_secrets_never_reach_exceptions_or_logs(
    api: FakeAPI, assistants: AssistantsAPI, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    echo = f"bad key {KEY}, header {HEADER_SECRET}, url /v1/threads?token={QUERY_TOKEN}"
    api.answer(fail(500, echo), fail(401, echo, code="invalid_api_key"))

    with pytest.raises(AuthenticationError) as caught:
        await assistants.create_thread([])

    assert "***" in caught.value.message
    assert_no_secrets(exception_text(caught.value))
    assert len(warnings_of(caplog)) == 1
    assert any(record.name == "httpx" for record in caplog.records)
    for record in caplog.records:
        if record.name != "aiohttp.access":  # the double's own access log, not the bot's
            assert_no_secrets(record.getMessage())


async def test_escaped_and_url_encoded_secrets_are_masked_too(api: FakeAPI, caplog: pytest.LogCaptureFixture):
    """httpx logs the URL with the query token percent-encoded; a gateway may echo a value JSON-escaped."""
    caplog.set_level(logging.DEBUG)
    query_token, header_secret = "qt/TOKEN+99=", 'gw"HEADER\\SECRET'
    encoded_token, escaped_header = quote(query_token, safe=""), json.dumps(header_secret)[1:-1]
    api.answer(fail(401, f"token {encoded_token} or header {escaped_header} refused"))
    async with make_client(
        api.base_url, extra_query={"token": query_token}, extra_headers={"X-Gateway-Auth": header_secret}
    ) as openai:
        with pytest.raises(AuthenticationError) as caught:
            await AssistantsAPI(openai).create_thread([])
    assert api.seen[0].query == {"token": query_token}  # the encoded form is what went over the wire
    places = [exception_text(caught.value)]
    places += [record.getMessage() for record in caplog.records if record.name != "aiohttp.access"]
    assert any(record.name == "httpx" and "?token=" in record.getMessage() for record in caplog.records)
    for place in places:
        for form in (query_token, encoded_token, header_secret, escaped_header):
            assert form not in place, place


async def test_secrets_never_reach_connection_errors(sleeps: list[float], caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    async with make_client(f"http://127.0.0.1:{free_port()}/v1", max_retries=1) as openai:
        with pytest.raises(APIConnectionError) as caught:
            async for _ in AssistantsAPI(openai).stream_run("thread_1", assistant_id="asst_1", tools=[]):
                pass
    assert_no_secrets(exception_text(caught.value))
    for record in caplog.records:
        assert_no_secrets(record.getMessage())


# ---- streams ---------------------------------------------------------------------------------


async def test_a_run_stream_is_parsed_passing_unknown_events_on_and_ending_at_done(
    api: FakeAPI, assistants: AssistantsAPI
):
    step = {
        "id": "step_1",
        "object": "thread.run.step",
        "type": "message_creation",
        "status": "in_progress",
        "step_details": {"type": "message_creation", "message_creation": {"message_id": "msg_1"}},
    }
    api.answer(
        sse(
            ("thread.run.created", json.dumps(run_json())),
            ("thread.run.step.created", json.dumps(step)),
            ("thread.run.step.delta", json.dumps({"id": "step_1", "object": "thread.run.step.delta", "delta": {}})),
            ("thread.run.teleported", json.dumps({"whatever": True})),
            ("thread.message.delta", json.dumps(delta_json("Hel"))),
            ("thread.message.delta", json.dumps(delta_json("lo"))),
            ("thread.message.completed", json.dumps(message_json("Hello"))),
            ("thread.run.completed", json.dumps(run_json("completed"))),
            ("done", "[DONE]"),
            ("thread.message.delta", json.dumps(delta_json("after the end"))),
        )
    )

    events = await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[]))

    assert [event.event for event in events] == [
        "thread.run.created",
        "thread.run.step.created",
        "thread.run.step.delta",
        "thread.run.teleported",  # passed on as it came: the backend ignores events it does not know
        "thread.message.delta",
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.completed",
    ]
    run, step_event, step_delta, unknown, first, second, message, finished = (event.data for event in events)
    assert not Run.model_validate(run).is_terminal
    assert step_event == step
    assert step_delta == {"id": "step_1", "object": "thread.run.step.delta", "delta": {}}
    assert unknown == {"whatever": True}
    assert first == delta_json("Hel") and second == delta_json("lo")
    assert Message.model_validate(message).text() == "Hello"
    assert Run.model_validate(finished).is_terminal
    assert api.seen[0].path == "/v1/threads/thread_1/runs"
    assert api.seen[0].headers["Accept"] == "text/event-stream"
    assert api.seen[0].json() == {"assistant_id": "asst_1", "tools": [], "stream": True}


async def test_data_only_events_have_no_name_and_a_bare_done_data_line_ends_the_stream(
    api: FakeAPI, client: OpenAIClient
):
    chunk = {"id": "chatcmpl_1", "object": "chat.completion.chunk", "choices": []}
    api.answer(sse(("thread.run.created", json.dumps(run_json())), (None, json.dumps(chunk)), (None, "[DONE]")))
    events = await collect(client.stream_sse("POST", "/chat/completions", json={"stream": True}))
    assert events == [SSEvent("thread.run.created", run_json()), SSEvent(None, chunk)]


async def test_an_error_event_is_passed_on(api: FakeAPI, assistants: AssistantsAPI):
    error = {"code": "server_error", "message": "Sorry", "param": None, "type": "server_error"}
    api.answer(sse(("error", json.dumps(error)), ("done", "[DONE]")))
    events = await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[]))
    assert events == [SSEvent("error", error)]


async def test_a_server_that_does_not_stream_yields_its_json_answer(api: FakeAPI, assistants: AssistantsAPI):
    api.answer(reply(run_json("queued")))
    events = await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[]))
    assert len(events) == 1
    assert events[0].event == "json"
    assert Run.model_validate(events[0].data).status == "queued"


async def test_a_stream_cut_mid_way_raises_api_connection_error(api: FakeAPI, assistants: AssistantsAPI):
    api.answer(
        sse(
            ("thread.run.created", json.dumps(run_json())),
            ("thread.message.delta", json.dumps(delta_json("Hi"))),
            drop=True,
        )
    )
    received: list[str | None] = []
    with pytest.raises(APIConnectionError) as caught:
        async with aclosing(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[])) as stream:
            async for event in stream:
                received.append(event.event)
    assert caught.value.request_sent
    assert received == ["thread.run.created", "thread.message.delta"]
    assert len(api.seen) == 1


async def test_a_stream_ending_without_done_just_ends(api: FakeAPI, assistants: AssistantsAPI):
    """No done event is not an error here: the backend follows the run it was told of by polling."""
    api.answer(sse(("thread.run.created", json.dumps(run_json()))))
    events = await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[]))
    assert [event.event for event in events] == ["thread.run.created"]


async def test_a_garbled_event_raises_api_connection_error(api: FakeAPI, assistants: AssistantsAPI):
    api.answer(sse(("thread.message.delta", "{not json"), ("done", "[DONE]")))
    with pytest.raises(APIConnectionError, match="malformed thread.message.delta") as caught:
        await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[]))
    assert caught.value.request_sent and caught.value.request_id == "req_sse"


async def test_a_stream_is_retried_before_it_starts(api: FakeAPI, assistants: AssistantsAPI, sleeps: list[float]):
    # A 429 says the run was not started; a 5xx could follow a started run, so that one is not re-sent.
    api.answer(fail(429), sse(("thread.run.created", json.dumps(run_json())), ("done", "[DONE]")))
    events = await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[]))
    assert [event.event for event in events] == ["thread.run.created"]
    assert len(api.seen) == 2
    assert len(sleeps) == 1


async def test_a_stream_refused_with_400_raises_at_once(api: FakeAPI, assistants: AssistantsAPI):
    api.answer(fail(400, "Thread already has an active run"))
    with pytest.raises(BadRequestError, match="active run"):
        await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[]))
    assert len(api.seen) == 1


async def test_tool_outputs_are_submitted_and_streamed(api: FakeAPI, assistants: AssistantsAPI):
    waiting = run_json(
        "requires_action",
        required_action={
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
                    },
                ]
            },
        },
    )
    api.answer(
        reply(waiting),
        sse(("thread.run.completed", json.dumps(run_json("completed"))), ("done", "[DONE]")),
    )
    run = await assistants.retrieve_run("thread_1", "run_1")
    [call] = run.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "get_time", '{"tz": "UTC"}')

    outputs = [ToolOutput(tool_call_id=call.id, output="12:00")]
    events = await collect(assistants.stream_tool_outputs("thread_1", "run_1", outputs))

    assert [event.event for event in events] == ["thread.run.completed"]
    assert api.seen[1].path == "/v1/threads/thread_1/runs/run_1/submit_tool_outputs"
    assert api.seen[1].json() == {"tool_outputs": [{"tool_call_id": "call_1", "output": "12:00"}], "stream": True}


# ---- pagination and models -------------------------------------------------------------------


async def test_listing_assistants_follows_the_cursor(api: FakeAPI, assistants: AssistantsAPI):
    def page(numbers: list[int], has_more: bool) -> Responder:
        return reply(
            {
                "object": "list",
                "data": [assistant_json(n) for n in numbers],
                "first_id": f"asst_{numbers[0]}",
                "last_id": f"asst_{numbers[-1]}",
                "has_more": has_more,
            }
        )

    api.answer(page([1, 2], True), page([3, 4], True), page([5], False))

    ids = [assistant.id async for assistant in assistants.assistants()]

    assert ids == ["asst_1", "asst_2", "asst_3", "asst_4", "asst_5"]
    assert [seen.query.get("after") for seen in api.seen] == [None, "asst_2", "asst_4"]
    assert all(seen.query["limit"] == "100" for seen in api.seen)


def test_message_text_joins_text_parts_and_keeps_unknown_parts():
    message = Message.model_validate(
        {
            "id": "msg_1",
            "role": "assistant",
            "brand_new_field": 1,
            "content": [
                {
                    "type": "text",
                    "text": {
                        "value": "One",
                        "annotations": [
                            {
                                "type": "file_citation",
                                "text": "【4:0†source】",
                                "start_index": 3,
                                "end_index": 15,
                                "file_citation": {"file_id": "file_1"},
                            }
                        ],
                    },
                },
                {"type": "image_file", "image_file": {"file_id": "file_2"}},
                {"type": "hologram", "hologram": {"id": "h"}},
                {"type": "text", "text": {"value": "Two", "annotations": []}},
            ],
        }
    )
    assert message.text() == "One\nTwo"
    assert isinstance(message.content[2], OtherContent)
    assert message.model_extra == {"brand_new_field": 1}


async def test_an_answer_of_unexpected_shape_is_an_api_error(
    api: FakeAPI, client: OpenAIClient, assistants: AssistantsAPI
):
    api.answer(reply(run_json("teleporting"), headers={"x-request-id": "req_odd"}), reply(["not", "an", "object"]))
    with pytest.raises(APIError, match="unexpected Run: status") as caught:
        await assistants.retrieve_run("thread_1", "run_1")
    assert caught.value.request_id == "req_odd"
    with pytest.raises(APIError, match="not a JSON object"):
        await client.request("GET", "/threads/thread_1")


# ---- shapes checked against the OpenAI spec --------------------------------------------------


def _as_any_of(node: Any) -> Any:
    """The spec's overlapping oneOf unions are resolved by discriminator on the server: check them as anyOf."""
    if isinstance(node, dict):
        return {("anyOf" if key == "oneOf" else key): _as_any_of(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_as_any_of(item) for item in node]
    return node


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC.exists():
        pytest.skip(f"OpenAI spec not found at {SPEC}; it lives in shared/specs beside the checkout")

    class Loader(yaml.CSafeLoader):
        """Keeps date-like strings as strings."""

    Loader.yaml_implicit_resolvers = {
        first: [resolver for resolver in resolvers if resolver[0] != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
    }
    with SPEC.open(encoding="utf-8") as file:
        return _as_any_of(yaml.load(file, Loader=Loader))


def assert_matches(spec: dict[str, Any], schema: str, instance: Any) -> None:
    registry = Registry().with_resource("urn:openai", Resource.from_contents(spec, default_specification=DRAFT202012))
    validator = Draft202012Validator({"$ref": f"urn:openai#/components/schemas/{schema}"}, registry=registry)
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(instance)]
    assert errors == [], f"{schema}: {errors}"


def example(spec: dict[str, Any], schema: str) -> dict[str, Any]:
    return json.loads(spec["components"]["schemas"][schema]["x-oaiMeta"]["example"])


async def test_requests_match_the_spec_and_spec_examples_parse(
    spec: dict[str, Any], api: FakeAPI, client: OpenAIClient, assistants: AssistantsAPI
):
    function_tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    api.answer(
        reply(example(spec, "AssistantObject")),
        reply(example(spec, "AssistantObject")),
        reply(example(spec, "ThreadObject")),
        reply(example(spec, "MessageObject")),
        reply(example(spec, "RunObject")),
        reply(example(spec, "RunObject")),
        reply({"object": "list", "data": [{"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "openai"}]}),
        reply(example(spec, "CreateModerationResponse")),
    )

    assistant = await assistants.create_assistant(
        {
            "model": "gpt-4o",
            "name": "Helper",
            "instructions": "Be kind",
            "tools": [function_tool],
            "metadata": {"team": "T1"},
        }
    )
    await assistants.update_assistant("asst_abc123", {"instructions": "Be brief", "tools": [function_tool]})
    thread = await assistants.create_thread([{"role": "user", "content": "Hi"}])
    message = await assistants.create_message(
        "thread_1", content=[{"type": "text", "text": "Hi"}], attachments=[], key="1.2"
    )
    [started] = await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[function_tool]))
    run = Run.model_validate(started.data)
    await assistants.cancel_run("thread_1", "run_1")  # parses the RunObject example as a Run
    models = await client.list_models()
    moderation = await client.create_moderation("some text", model="omni-moderation-latest")

    assert isinstance(assistant, Assistant) and assistant.id == "asst_abc123"
    assert isinstance(thread, Thread) and message.text() == "Hi! How can I help you today?"
    assert run.status == "completed" and run.usage is not None and run.usage.total_tokens == 579
    assert [model.id for model in models] == ["gpt-4o"]
    assert moderation.flagged and moderation.results[0].categories["violence"] is True

    assert_matches(spec, "CreateAssistantRequest", api.seen[0].json())
    assert_matches(spec, "ModifyAssistantRequest", api.seen[1].json())
    assert_matches(spec, "CreateThreadRequest", api.seen[2].json())
    assert_matches(spec, "CreateMessageRequest", api.seen[3].json())
    assert_matches(spec, "CreateRunRequest", api.seen[4].json())
    assert_matches(spec, "CreateModerationRequest", api.seen[7].json())
    assert [(seen.method, seen.path) for seen in api.seen] == [
        ("POST", "/v1/assistants"),
        ("POST", "/v1/assistants/asst_abc123"),
        ("POST", "/v1/threads"),
        ("POST", "/v1/threads/thread_1/messages"),
        ("POST", "/v1/threads/thread_1/runs"),
        ("POST", "/v1/threads/thread_1/runs/run_1/cancel"),
        ("GET", "/v1/models"),
        ("POST", "/v1/moderations"),
    ]


async def test_stream_and_tool_output_requests_match_the_spec(
    spec: dict[str, Any], api: FakeAPI, assistants: AssistantsAPI
):
    function_tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    api.answer(sse(("done", "[DONE]")))
    await collect(assistants.stream_run("thread_1", assistant_id="asst_1", tools=[function_tool]))
    await collect(assistants.stream_tool_outputs("thread_1", "run_1", [ToolOutput(tool_call_id="c", output="o")]))
    assert_matches(spec, "CreateRunRequest", api.seen[0].json())
    assert_matches(spec, "SubmitToolOutputsRunRequest", api.seen[1].json())


# ---- downloads of files the API links to ------------------------------------------------------

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def raw(content: bytes, *, chunks: int = 1) -> Responder:
    """The content as a plain body; with chunks > 1 it is streamed without a Content-Length."""

    async def respond(request: web.Request) -> web.StreamResponse:
        if chunks == 1:
            return web.Response(body=content, content_type="image/png")
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        size = -(-len(content) // chunks)
        for start in range(0, len(content), size):
            await response.write(content[start : start + size])
        return response

    return respond


def redirect(location: str) -> Responder:
    async def respond(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    return respond


async def test_a_file_on_the_apis_own_origin_is_downloaded_without_credentials(api: FakeAPI, client: OpenAIClient):
    api.answer(raw(PICTURE))
    origin = api.base_url.removesuffix("/v1")
    assert await client.download(f"{origin}/generated-images/img-1.png", max_bytes=len(PICTURE)) == PICTURE
    (seen,) = api.seen
    assert seen.path == "/generated-images/img-1.png"
    assert "authorization" not in seen.headers and "token" not in seen.query
    assert HEADER_SECRET not in str(dict(seen.headers))


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://169.254.169.254/latest/meta-data/",
        "http://localhost/admin",
        "https://example.com/image.png",
        "http://oaidalleapiprodscus.blob.core.windows.net/private/img.png",  # the right host, but not https
        "file:///etc/passwd",
        "ftp://oaidalleapiprodscus.blob.core.windows.net/img.png",
    ],
)
async def test_a_link_to_any_other_host_or_scheme_is_refused(client: OpenAIClient, url: str):
    with pytest.raises(APIError, match="which the bot does not download from") as caught:
        await client.download(url, max_bytes=1000)
    assert "meta-data" not in str(caught.value) and "/admin" not in str(caught.value)


async def test_another_port_on_the_same_machine_is_another_host(api: FakeAPI, client: OpenAIClient):
    async with serving_fake_api() as elsewhere:
        elsewhere.answer(raw(b"internal secrets"))
        with pytest.raises(APIError, match="does not download from"):
            await client.download(elsewhere.base_url.removesuffix("/v1") + "/internal", max_bytes=1000)
        assert elsewhere.seen == []


async def test_a_redirect_to_another_host_is_refused_before_it_is_followed(api: FakeAPI, client: OpenAIClient):
    async with serving_fake_api() as metadata:
        metadata.answer(raw(b"iam credentials"))
        api.answer(redirect(metadata.base_url.removesuffix("/v1") + "/latest/meta-data/"))
        with pytest.raises(APIError, match="does not download from"):
            await client.download(api.base_url.removesuffix("/v1") + "/img.png", max_bytes=1000)
        assert metadata.seen == []


async def test_redirects_on_allowed_hosts_are_followed_a_few_times_only(api: FakeAPI, client: OpenAIClient):
    origin = api.base_url.removesuffix("/v1")
    api.answer(redirect(f"{origin}/step-2"), raw(PICTURE))
    assert await client.download(f"{origin}/step-1", max_bytes=len(PICTURE)) == PICTURE
    api.seen.clear()
    api.answer(redirect(f"{origin}/again"))
    with pytest.raises(APIError, match="redirected more than 3 times"):
        await client.download(f"{origin}/loop", max_bytes=len(PICTURE))
    assert [seen.path for seen in api.seen] == ["/loop", "/again", "/again", "/again"]


@pytest.mark.parametrize("chunks", [1, 64])
async def test_a_file_over_the_cap_is_refused(api: FakeAPI, client: OpenAIClient, chunks: int):
    api.answer(raw(PICTURE, chunks=chunks))
    with pytest.raises(APIError, match=f"larger than {len(PICTURE) - 1} bytes"):
        await client.download(api.base_url.removesuffix("/v1") + "/big.png", max_bytes=len(PICTURE) - 1)


async def test_a_body_is_read_only_up_to_the_cap(api: FakeAPI, client: OpenAIClient):
    """A server that never stops sending: reading it all before measuring would never return."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        while not api.release.is_set():
            await response.write(b"x" * 65536)
        return response

    api.answer(endless)
    with pytest.raises(APIError, match="larger than 1000000 bytes"):
        await asyncio.wait_for(
            client.download(api.base_url.removesuffix("/v1") + "/endless.png", max_bytes=1_000_000), WAIT_SECONDS
        )


async def test_downloads_share_one_pooled_connection(api: FakeAPI, client: OpenAIClient):
    client_ports: list[int] = []

    async def picture_noting_the_peer(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        client_ports.append(request.transport.get_extra_info("peername")[1])
        return web.Response(body=PICTURE, content_type="image/png")

    api.answer(picture_noting_the_peer)
    origin = api.base_url.removesuffix("/v1")
    for name in ("a.png", "b.png", "c.png"):
        assert await client.download(f"{origin}/{name}", max_bytes=len(PICTURE)) == PICTURE
    assert len(client_ports) == 3 and len(set(client_ports)) == 1, client_ports


async def test_an_expected_host_is_fetched_over_https_only():
    async with OpenAIClient(
        api_key=KEY, base_url="https://api.example.test/v1", download_hosts=frozenset({"localhost"})
    ) as openai:
        with pytest.raises(APIError, match="http://localhost, which the bot does not download from"):
            await openai.download(f"http://localhost:{free_port()}/img.png", max_bytes=10)

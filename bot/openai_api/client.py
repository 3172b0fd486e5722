"""Async client of the OpenAI API: one retrying request path, server-sent event streams, typed errors."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from types import TracebackType
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import EventSource
from pydantic import BaseModel, ValidationError

from bot.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentTooLarge,
    InsufficientQuotaError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from bot.logs import secret_forms
from bot.openai_api.models import ImagesResponse, Model, ModerationResponse, Page
from bot.tls import client_tls

logger = logging.getLogger(__name__)
# Failures before a request left this machine: sending it again cannot duplicate anything.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

USER_AGENT = "slack-assistant-bot/0.1"
# The Assistants API (and the vector stores it shares) wants its beta header; the other APIs do not.
ASSISTANTS_BETA_PATHS = ("/assistants", "/threads", "/vector_stores")
ASSISTANTS_BETA_HEADER = {"OpenAI-Beta": "assistants=v2"}
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# Error answers, with every 5xx, that may come after the API carried the request out (a gateway's 502 after the
# message was stored): for a request that must not be sent twice they mean what a lost answer means. A 429 never.
AMBIGUOUS_STATUSES = frozenset({408, 409})
# Hosts that serve the files the API links to (generated images): OpenAI's and Azure OpenAI's image
# stores. `download` fetches over https from these, and from the configured API's own origin, only.
DOWNLOAD_HOSTS = frozenset(
    {
        "oaidalleapiprodscus.blob.core.windows.net",
        "dalleprodsec.blob.core.windows.net",
        "dalleproduse.blob.core.windows.net",
    }
)
MAX_DOWNLOAD_REDIRECTS = 3

STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}

ModelT = TypeVar("ModelT", bound=BaseModel)


class SSEvent(NamedTuple):
    """One server-sent event: its name (None where the stream names none) and its JSON data."""

    event: str | None
    data: Any


class RequestObserver(Protocol):
    """Told of every attempt at an API request (metrics): its route family, status (None: no answer) and time."""

    def request_finished(self, *, route: str, status: int | None, seconds: float) -> None: ...


def route_family(path: str) -> str:
    """The API family a path belongs to ("/threads/thread_1/runs" -> "threads"): few values, no ids."""
    return path.lstrip("/").split("/", 1)[0].split("?", 1)[0] or "root"


def path_segment(value: str) -> str:
    """One path segment; ids come from the API and chat, so they must not add path or query parts."""
    return quote(value, safe="")


class _RedactingFilter(logging.Filter):
    """Masks secrets in httpx's own log lines, which show each request's full URL (query token included)."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _retry_after(headers: httpx.Headers) -> float | None:
    """The wait the server asks for, from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date).

    A value that is not a finite number ("nan", "inf") is ignored, so the usual backoff applies:
    ``asyncio.sleep(nan)`` never returns. A negative wait means now.
    """
    milliseconds = _finite_seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return max(milliseconds / 1000, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite_seconds(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def _finite_seconds(value: str | None) -> float | None:
    """The header's number, or None when it is absent, not a number, or infinite."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


async def _read_capped(response: httpx.Response, *, max_bytes: int, what: str) -> bytes:
    """The response's body; ContentTooLarge once it is known to exceed max_bytes, read no further."""
    too_large = ContentTooLarge(f"{what} is larger than {max_bytes} bytes")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    content = bytearray()
    async for chunk in response.aiter_bytes():
        content += chunk
        if len(content) > max_bytes:
            raise too_large
    return bytes(content)


class OpenAIClient:
    """The bot's only way to the model API. Knows HTTP and the API's shapes, nothing about Slack.

    Every call goes through one request path that retries connection errors, timeouts, 408, 409,
    429 and 5xx with exponential backoff, and turns failures into the exceptions of ``bot.errors``.
    A request that must not be sent twice (``retry_when_sent=False``) is never re-sent once it may
    have reached the API: a lost answer, or an ambiguous status (408, 409, 5xx), raises
    APIConnectionError with ``request_sent`` so that the caller looks up what exists first.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        extra_headers: Mapping[str, str] = {},
        extra_query: Mapping[str, str] = {},
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        download_hosts: frozenset[str] = DOWNLOAD_HOSTS,
        observer: RequestObserver | None = None,
    ) -> None:
        headers = {"User-Agent": USER_AGENT}
        # Gateways that authenticate with a query token reject a Bearer header they cannot check.
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        headers.update(extra_headers)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            params=dict(extra_query),
            timeout=httpx.Timeout(connect=10.0, read=timeout, write=30.0, pool=10.0),
            transport=transport,
            verify=client_tls(),
        )
        # Files the API links to live on other hosts: fetched without our credentials, redirects checked one by one.
        self._downloads = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT}, timeout=self._http.timeout, follow_redirects=False, verify=client_tls()
        )
        self._download_hosts = download_hosts
        self._observer = observer
        self._api_origin = httpx.URL(base_url).copy_with(path="/", query=None, fragment=None)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._secrets = secret_forms([api_key, *extra_headers.values(), *extra_query.values()])
        self._log_filter = _RedactingFilter(self._redact)
        logging.getLogger("httpx").addFilter(self._log_filter)

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        logging.getLogger("httpx").removeFilter(self._log_filter)
        await self._downloads.aclose()
        await self._http.aclose()

    # ---- generic requests ---------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one request (retried as needed) and return its JSON object body ({} when empty).

        ``files`` are re-sent on each retry, so pass bytes or seekable files.
        """
        response = await self._send(method, path, json=json, params=params, files=files, data=data)
        return self._json_object(response)

    async def stream_sse(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        retry_when_sent: bool = True,
    ) -> AsyncGenerator[SSEvent, None]:
        """Send a streaming request and yield its events, parsed as JSON, until the stream ends.

        Events without an ``event:`` line (chat-completion chunks) come with ``event`` None; a
        ``[DONE]`` data line ends the stream. Once the server has answered 200 the request counts as
        sent: a stream that breaks raises APIConnectionError with ``request_sent``. A server that
        answers JSON instead of a stream yields that one body as an event named ``json``.
        """
        response = await self._send(
            method, path, json=json, params=params, stream=True, retry_when_sent=retry_when_sent
        )
        request_id = response.headers.get("x-request-id")
        try:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                await response.aread()
                yield SSEvent("json", self._json_object(response))
                return
            async for sse in EventSource(response).aiter_sse():
                if sse.data == "[DONE]" or sse.event == "done":
                    return
                if not sse.data:
                    continue
                try:
                    data = sse.json()
                except ValueError as exc:
                    raise APIConnectionError(
                        f"the event stream sent a malformed {sse.event or 'data'} event",
                        request_id=request_id,
                        request_sent=True,
                    ) from exc
                yield SSEvent(sse.event if sse.event != "message" else None, data)
        except httpx.RequestError as exc:
            raise self._connection_error(exc, sent=True) from exc
        finally:
            await response.aclose()

    # ---- models and moderation ----------------------------------------------------------------

    async def list_models(self) -> list[Model]:
        return (await self._call(Page[Model], "GET", "/models")).data

    async def model_ids(self) -> list[str]:
        return [model.id for model in await self.list_models()]

    async def create_moderation(
        self, input: str | list[str] | list[dict[str, Any]], *, model: str
    ) -> ModerationResponse:
        return await self._call(ModerationResponse, "POST", "/moderations", json={"input": input, "model": model})

    # ---- images -------------------------------------------------------------------------------

    async def generate_image(self, *, prompt: str, model: str, size: str) -> ImagesResponse:
        """One image, paid for once: a lost answer is not re-sent (an image made and lost cannot be looked up)."""
        body = {"model": model, "prompt": prompt, "size": size, "n": 1}
        return await self._call(ImagesResponse, "POST", "/images/generations", json=body, retry_when_sent=False)

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch a file the API links to (a generated image), without our credentials: it lives on another host.

        Only https URLs of the expected hosts (or of the API's own origin) are fetched, redirects
        included, and at most ``max_bytes`` are read: the URL comes from an answer, not from us.
        """
        target = self._download_url(url)
        for _ in range(MAX_DOWNLOAD_REDIRECTS + 1):
            try:
                response = await self._downloads.send(self._downloads.build_request("GET", target), stream=True)
            except httpx.RequestError as exc:
                raise self._connection_error(exc) from exc
            try:
                if response.next_request is None:
                    return await self._read_download(response, max_bytes=max_bytes)
                target = self._download_url(str(response.next_request.url))
            except httpx.RequestError as exc:
                raise self._connection_error(exc, sent=True) from exc
            finally:
                await response.aclose()
        raise APIError(f"downloading a generated file was redirected more than {MAX_DOWNLOAD_REDIRECTS} times")

    def _download_url(self, url: str) -> httpx.URL:
        """The URL if the bot may fetch it; APIError naming only its host (the query may hold a signature)."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise APIError("the API linked to a file with a malformed URL") from exc
        same_origin = (target.scheme, target.host, target.port) == (
            self._api_origin.scheme,
            self._api_origin.host,
            self._api_origin.port,
        )
        if not same_origin and not (target.scheme == "https" and target.host in self._download_hosts):
            raise APIError(
                f"the API linked to a file at {target.scheme}://{target.host or '?'}, which the bot does not download from"
            )
        return target

    @staticmethod
    async def _read_download(response: httpx.Response, *, max_bytes: int) -> bytes:
        """The body of a final answer, refused as soon as it is known to exceed max_bytes."""
        if not response.is_success:
            raise APIStatusError(
                f"downloading a generated file failed (HTTP {response.status_code})", status_code=response.status_code
            )
        return await _read_capped(response, max_bytes=max_bytes, what="the generated file")

    # ---- for endpoint groups in other modules (files, vector stores, audio) --------------------

    async def request_model(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> ModelT:
        """Send one request (retried as needed) and parse its JSON answer as ``model``."""
        return await self._call(model, method, path, **kwargs)

    async def request_bytes(self, method: str, path: str, *, max_bytes: int) -> bytes:
        """Send one request (retried as needed) and return its raw body, e.g. a file's content.

        ContentTooLarge as soon as the body is known to exceed ``max_bytes``: a file the model made can
        be of any size, and nothing past the cap is read into memory.
        """
        response = await self._send(method, path, stream=True, accept="*/*")
        try:
            return await _read_capped(response, max_bytes=max_bytes, what="the file")
        except httpx.RequestError as exc:
            raise self._connection_error(exc, sent=True) from exc
        finally:
            await response.aclose()

    # ---- internals ----------------------------------------------------------------------------

    async def _call(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> ModelT:
        response = await self._send(method, path, **kwargs)
        return self._parse(model, self._json_object(response), request_id=response.headers.get("x-request-id"))

    async def _send(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        accept: str | None = None,
        retry_when_sent: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """The one request path: send, retry what may succeed later, raise a bot.errors exception otherwise.

        With ``stream`` the returned response is open (body unread); the caller must close it. A streamed
        request asks for server-sent events unless ``accept`` names what it wants instead.
        Without ``retry_when_sent`` a request that may have been carried out is not sent again: its
        answer was lost after sending, or was an ambiguous status. Creating twice would duplicate, so
        both raise APIConnectionError with ``request_sent`` and the caller checks what happened first.
        """
        accept = accept or ("text/event-stream" if stream else None)
        headers = {"Accept": accept} if accept else {}
        if path.startswith(ASSISTANTS_BETA_PATHS):
            headers.update(ASSISTANTS_BETA_HEADER)
        attempt = 0
        while True:
            request = self._http.build_request(method, path, headers=headers, **kwargs)
            cause: httpx.RequestError | None = None
            try:
                response = await self._open(request, stream=stream, route=route_family(path))
            except httpx.RequestError as exc:
                cause = exc
                connection_error = self._connection_error(exc)
                error: APIError = connection_error
                retryable = retry_when_sent or not connection_error.request_sent
                wait, kind = None, type(exc).__name__
            else:
                if response.is_success:
                    return response
                status_error = self._status_error(response)
                error = status_error
                retryable = self._is_retryable(status_error)
                if not retry_when_sent and self._is_ambiguous(status_error):
                    raise APIConnectionError(
                        f"{method} {request.url.path} answered HTTP {status_error.status_code} ({status_error.message}):"
                        " it may have been carried out",
                        request_id=status_error.request_id,
                        request_sent=True,
                    ) from status_error
                wait, kind = _retry_after(response.headers), f"HTTP {response.status_code}"
            if not retryable or attempt >= self._max_retries:
                raise error from cause
            attempt += 1
            delay = self._delay(attempt, retry_after=wait)
            logger.warning(
                "Retrying %s %s after %s (attempt %d of %d) in %.2f s",
                method,
                request.url.path,
                kind,
                attempt,
                self._max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    async def _open(self, request: httpx.Request, *, stream: bool, route: str) -> httpx.Response:
        """One attempt; an error answer comes back read and closed, a successful stream open.

        The observer is told how long the answer's headers took (a stream's first event, not its end).
        """
        started = time.monotonic()
        try:
            response = await self._http.send(request, stream=stream)
        except httpx.RequestError:
            if self._observer is not None:
                self._observer.request_finished(route=route, status=None, seconds=time.monotonic() - started)
            raise
        if self._observer is not None:
            self._observer.request_finished(
                route=route, status=response.status_code, seconds=time.monotonic() - started
            )
        if stream and not response.is_success:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response

    @staticmethod
    def _is_ambiguous(error: APIStatusError) -> bool:
        return error.status_code in AMBIGUOUS_STATUSES or error.status_code >= 500

    @staticmethod
    def _is_retryable(error: APIStatusError) -> bool:
        if isinstance(error, InsufficientQuotaError):
            return False
        return error.status_code in RETRYABLE_STATUSES or error.status_code >= 500

    def _delay(self, attempt: int, *, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._backoff_max)
        backoff = min(self._backoff_base * 2 ** (attempt - 1), self._backoff_max)
        # Jitter spreads the retries of many conversations hit by the same outage.
        return float(backoff * random.uniform(0.5, 1.0))

    def _redact(self, text: str) -> str:
        """The text with every configured secret (key, extra header and query values) masked."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _connection_error(self, exc: httpx.RequestError, *, sent: bool = False) -> APIConnectionError:
        """``sent``: the server had already answered, so the request certainly reached it."""
        error_class = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        where = f"{exc.request.method} {exc.request.url.path}"
        return error_class(
            self._redact(f"{where} {what}: {type(exc).__name__}: {str(exc) or 'no detail'}"),
            request_sent=sent or not isinstance(exc, NEVER_SENT),
        )

    def _status_error(self, response: httpx.Response) -> APIStatusError:
        status = response.status_code
        message, code, error_type = self._error_fields(response)
        if status == 429 and "insufficient_quota" in (code, error_type):
            error_class: type[APIStatusError] = InsufficientQuotaError
        elif status >= 500:
            error_class = ServerError
        else:
            error_class = STATUS_ERRORS.get(status, APIStatusError)
        return error_class(
            self._redact(message),
            status_code=status,
            code=code,
            error_type=error_type,
            request_id=response.headers.get("x-request-id"),
        )

    @staticmethod
    def _error_fields(response: httpx.Response) -> tuple[str, str | None, str | None]:
        """Message, code and type of an error body: OpenAI's {"error": {...}} or a gateway's variant."""
        reason = response.reason_phrase or "error"
        try:
            body = response.json()
        except ValueError:
            # A proxy's HTML page is noise in a chat message and may echo the request URL.
            content_type = response.headers.get("content-type", "").partition(";")[0] or "unknown"
            return f"{reason} (non-JSON {content_type} body)", None, None
        if not isinstance(body, dict):
            return reason, None, None
        error = body.get("error", body)
        if isinstance(error, str):
            return error, None, None
        if not isinstance(error, dict):
            return reason, None, None
        message = error.get("message") or error.get("detail") or reason
        code, error_type = error.get("code"), error.get("type")
        return (
            str(message),
            None if code is None else str(code),
            None if error_type is None else str(error_type),
        )

    @staticmethod
    def _json_object(response: httpx.Response) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise APIError(
                f"{response.request.method} {response.request.url.path}: the answer is not JSON",
                request_id=response.headers.get("x-request-id"),
            ) from exc
        if not isinstance(body, dict):
            raise APIError(
                f"{response.request.method} {response.request.url.path}: the answer is not a JSON object",
                request_id=response.headers.get("x-request-id"),
            )
        return body

    @staticmethod
    def _parse(model: type[ModelT], body: Any, *, request_id: str | None = None) -> ModelT:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            location = ".".join(str(part) for part in first["loc"]) or "body"
            raise APIError(
                f"the API answered with an unexpected {model.__name__}: {location}: {first['msg']}",
                request_id=request_id,
            ) from exc

"""Whether a server serves an API family, told by requests that cost no tokens."""

from __future__ import annotations

from typing import Any

from bot.errors import APIStatusError
from bot.openai_api.client import OpenAIClient

# What servers answer for a route they do not have: OpenAI's "Invalid URL (GET /v1/...)", FastAPI's
# {"detail": "Not Found"} (vLLM and most gateways), Go's plain text, or an HTML page.
UNKNOWN_ROUTE_MESSAGES = ("invalid url", "not found", "404 page not found", "unknown route", "no route")


def is_unknown_route(error: APIStatusError) -> bool:
    """A 404 or 405 that says the route is missing, as opposed to a missing object on a served route."""
    if error.status_code == 405:
        return False  # the path is served, for another method
    if error.status_code != 404:
        return False
    message = error.message.strip().lower()
    return "non-json" in message or any(message.startswith(words) for words in UNKNOWN_ROUTE_MESSAGES)


async def serves(
    client: OpenAIClient,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    files: dict[str, tuple[str, bytes, str]] | None = None,
) -> bool:
    """True when the route answers as a served one (any success, a 400 for our body, a missing object).

    With ``files`` the request is a multipart form of them and ``body``'s fields. Refused credentials
    (401/403) and connection failures propagate: they say nothing about routes.
    """
    try:
        if files is None:
            await client.request(method, path, json=body)
        else:
            await client.request(method, path, data=body, files=files)
    except APIStatusError as exc:
        if exc.status_code in (401, 403):
            raise
        return not is_unknown_route(exc)
    return True


async def serves_transcription(client: OpenAIClient, *, model: str) -> bool:
    """POST /audio/transcriptions with an empty file of a format no server transcribes: one that serves the
    route refuses it (OpenAI: 400 "Invalid file format") before any audio is heard, so nothing is billed."""
    empty = {"file": ("doctor-probe.txt", b"", "text/plain")}
    return await serves(client, "POST", "/audio/transcriptions", {"model": model}, files=empty)


async def serves_image_generation(client: OpenAIClient, *, model: str) -> bool:
    """POST /images/generations with an empty prompt and a size of no pixels: refused (400) before any image
    is drawn by a server that serves the route, and no image can come of it on one that checks neither."""
    return await serves(client, "POST", "/images/generations", {"model": model, "prompt": "", "size": "0x0"})

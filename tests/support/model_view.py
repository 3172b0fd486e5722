"""What each backend asked of the model, through the OpenAI double, for tests that run on every backend."""

from __future__ import annotations

import re
from typing import Any

# The requests that make the model produce an answer (or continue one after tool outputs).
ANSWER_REQUESTS = {
    "assistants": r"^/v1/threads(/[^/]+)?/runs$|/submit_tool_outputs$",
    "responses": r"^/v1/responses$",
    "chat": r"^/v1/chat/completions$",
}
# The requests that stop the model's work on the server (chat has none: closing the stream stops it).
CANCEL_REQUESTS = {
    "assistants": r"^/v1/threads/[^/]+/runs/[^/]+/cancel$",
    "responses": r"^/v1/responses/[^/]+/cancel$",
    "chat": r"$^",
}


def answer_requests(openai: Any, backend: str) -> list[Any]:
    return openai.requests_to("POST", ANSWER_REQUESTS[backend])


def first_answer_requests(openai: Any, backend: str) -> list[Any]:
    """The requests that started a model's answer (not those that only carried tool outputs back)."""
    pattern = re.compile(ANSWER_REQUESTS[backend])
    return [
        request for request in openai.requests
        if request.method == "POST" and pattern.search(request.path) and not _carries_tool_outputs(request, backend)
    ]


def cancel_requests(openai: Any, backend: str) -> list[Any]:
    return openai.requests_to("POST", CANCEL_REQUESTS[backend])


def function_tool_names(request: Any, backend: str) -> list[str]:
    """The names of our function tools a request offered the model."""
    tools = (request.body or {}).get("tools") or []
    if backend == "responses":
        return [tool["name"] for tool in tools if tool.get("type") == "function"]
    return [tool["function"]["name"] for tool in tools if tool.get("type") == "function"]


def _carries_tool_outputs(request: Any, backend: str) -> bool:
    body = request.body or {}
    if backend == "assistants":
        return request.path.endswith("/submit_tool_outputs")
    if backend == "responses":
        items = body.get("input") if isinstance(body.get("input"), list) else []
        return any(item.get("type") == "function_call_output" for item in items)
    messages = body.get("messages") or []
    return bool(messages) and messages[-1].get("role") == "tool"

"""The Assistants API v2 calls this backend makes: assistants, threads, messages, runs, over the one client."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Literal

from bot.openai_api.client import OpenAIClient, SSEvent, path_segment
from bot.openai_api.models import Assistant, Message, Page, Run, Thread, ToolOutput


def _without_none(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class AssistantsAPI:
    """Typed Assistants API requests; run streams come as plain SSEvents, parsed by the backend."""

    def __init__(self, client: OpenAIClient) -> None:
        self._client = client

    # ---- assistants ---------------------------------------------------------------------------

    async def create_assistant(self, body: Mapping[str, Any]) -> Assistant:
        return await self._client.request_model(Assistant, "POST", "/assistants", json=dict(body))

    async def retrieve_assistant(self, assistant_id: str) -> Assistant:
        return await self._client.request_model(Assistant, "GET", f"/assistants/{path_segment(assistant_id)}")

    async def update_assistant(self, assistant_id: str, fields: Mapping[str, Any]) -> Assistant:
        path = f"/assistants/{path_segment(assistant_id)}"
        return await self._client.request_model(Assistant, "POST", path, json=dict(fields))

    async def delete_assistant(self, assistant_id: str) -> None:
        await self._client.request("DELETE", f"/assistants/{path_segment(assistant_id)}")

    async def assistants(self) -> AsyncIterator[Assistant]:
        """Every assistant of the organisation, page after page."""
        after: str | None = None
        while True:
            params = _without_none(limit=100, after=after)
            page = await self._client.request_model(Page[Assistant], "GET", "/assistants", params=params)
            for assistant in page.data:
                yield assistant
            if not page.has_more or not page.last_id:
                return
            after = page.last_id

    # ---- threads and messages -----------------------------------------------------------------

    async def create_thread(self, messages: list[dict[str, Any]]) -> Thread:
        return await self._client.request_model(
            Thread, "POST", "/threads", json=_without_none(messages=messages or None)
        )

    async def delete_thread(self, thread_id: str) -> None:
        await self._client.request("DELETE", f"/threads/{path_segment(thread_id)}")

    async def use_vector_store(self, thread_id: str, vector_store_id: str) -> None:
        """Make file search on this thread read the vector store (a thread has at most one)."""
        body = {"tool_resources": {"file_search": {"vector_store_ids": [vector_store_id]}}}
        await self._client.request_model(Thread, "POST", f"/threads/{path_segment(thread_id)}", json=body)

    async def create_message(
        self, thread_id: str, *, content: str | list[dict[str, Any]], attachments: list[dict[str, Any]], key: str
    ) -> Message:
        """Add a user message tagged with its event key; a lost answer is settled by the caller, not re-sent."""
        body = _without_none(role="user", content=content, attachments=attachments or None, metadata={"event_id": key})
        path = f"/threads/{path_segment(thread_id)}/messages"
        return await self._client.request_model(Message, "POST", path, json=body, retry_when_sent=False)

    async def list_messages(
        self,
        thread_id: str,
        *,
        run_id: str | None = None,
        order: Literal["asc", "desc"] = "asc",
        limit: int = 100,
        after: str | None = None,
    ) -> Page[Message]:
        params = _without_none(run_id=run_id, order=order, limit=limit, after=after)
        path = f"/threads/{path_segment(thread_id)}/messages"
        return await self._client.request_model(Page[Message], "GET", path, params=params)

    # ---- runs ---------------------------------------------------------------------------------

    def stream_run(
        self, thread_id: str, *, assistant_id: str, tools: list[dict[str, Any]], reasoning_effort: str | None = None
    ) -> AsyncGenerator[SSEvent, None]:
        """Start a run and stream its events; never re-sent once sent (that could start a second run)."""
        body: dict[str, Any] = {"assistant_id": assistant_id, "tools": tools, "stream": True}
        if reasoning_effort:
            body["reasoning_effort"] = reasoning_effort
        path = f"/threads/{path_segment(thread_id)}/runs"
        return self._client.stream_sse("POST", path, json=body, retry_when_sent=False)

    def stream_tool_outputs(
        self, thread_id: str, run_id: str, outputs: list[ToolOutput]
    ) -> AsyncGenerator[SSEvent, None]:
        """Submit tool outputs and stream the run's further events; outputs submitted twice are refused."""
        path = f"/threads/{path_segment(thread_id)}/runs/{path_segment(run_id)}/submit_tool_outputs"
        body = {
            "tool_outputs": [output.model_dump(include={"tool_call_id", "output"}) for output in outputs],
            "stream": True,
        }
        return self._client.stream_sse("POST", path, json=body, retry_when_sent=False)

    async def retrieve_run(self, thread_id: str, run_id: str) -> Run:
        path = f"/threads/{path_segment(thread_id)}/runs/{path_segment(run_id)}"
        return await self._client.request_model(Run, "GET", path)

    async def newest_run(self, thread_id: str) -> Run | None:
        page = await self._client.request_model(
            Page[Run], "GET", f"/threads/{path_segment(thread_id)}/runs", params={"order": "desc", "limit": 1}
        )
        return page.data[0] if page.data else None

    async def cancel_run(self, thread_id: str, run_id: str) -> None:
        path = f"/threads/{path_segment(thread_id)}/runs/{path_segment(run_id)}/cancel"
        await self._client.request_model(Run, "POST", path)

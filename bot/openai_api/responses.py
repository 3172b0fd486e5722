"""Responses, Conversations and Containers endpoints of the OpenAI API, over the one client.

Items and stream events stay plain dicts: their shapes are many and growing, and a streamed answer
parses one event per text delta, where pydantic would only add cost.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from bot.openai_api.client import OpenAIClient, SSEvent, path_segment
from bot.openai_api.models import APIModel

MAX_ITEMS_PER_REQUEST = 20  # POST /conversations and POST /conversations/{id}/items take at most 20 items
MAX_ITEMS_PER_PAGE = 100


class Conversation(APIModel):
    id: str
    object: str = "conversation"


class ItemPage(APIModel):
    """One page of a conversation's items (each a dict in the API's shape)."""

    data: list[dict[str, Any]] = []
    has_more: bool = False
    last_id: str | None = None


class ResponsesAPI:
    """Conversations and their items, responses (streamed, background, followed by id) and container files."""

    def __init__(self, client: OpenAIClient) -> None:
        self._client = client

    # ---- conversations ------------------------------------------------------------------------

    async def create_conversation(self, items: Sequence[dict[str, Any]], *, metadata: dict[str, str]) -> Conversation:
        """A new conversation holding at most MAX_ITEMS_PER_REQUEST first items.

        A retry after a lost answer can at worst leave an empty, unused conversation behind, which
        costs nothing; so this one is retried like any idempotent call.
        """
        body = {"items": list(items[:MAX_ITEMS_PER_REQUEST]), "metadata": metadata}
        return await self._client.request_model(Conversation, "POST", "/conversations", json=body)

    async def add_items(self, conversation_id: str, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append items (at most MAX_ITEMS_PER_REQUEST); never re-sent blindly when the answer is lost."""
        path = f"/conversations/{path_segment(conversation_id)}/items"
        page = await self._client.request_model(
            ItemPage, "POST", path, json={"items": list(items)}, retry_when_sent=False
        )
        return page.data

    async def items_after(self, conversation_id: str, after: str | None) -> list[dict[str, Any]]:
        """Every item after ``after`` (all of them when None), oldest first."""
        path = f"/conversations/{path_segment(conversation_id)}/items"
        items: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"order": "asc", "limit": MAX_ITEMS_PER_PAGE}
            if after is not None:
                params["after"] = after
            page = await self._client.request_model(ItemPage, "GET", path, params=params)
            items += page.data
            if not page.has_more or not page.last_id:
                return items
            after = page.last_id

    async def delete_item(self, conversation_id: str, item_id: str) -> None:
        path = f"/conversations/{path_segment(conversation_id)}/items/{path_segment(item_id)}"
        await self._client.request("DELETE", path)

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._client.request("DELETE", f"/conversations/{path_segment(conversation_id)}")

    # ---- responses ----------------------------------------------------------------------------

    def stream_response(self, body: dict[str, Any]) -> AsyncGenerator[SSEvent, None]:
        """POST /responses as a stream; a lost answer is not re-sent (it would start a second response)."""
        return self._client.stream_sse("POST", "/responses", json={**body, "stream": True}, retry_when_sent=False)

    def follow_response(self, response_id: str, *, starting_after: int) -> AsyncGenerator[SSEvent, None]:
        """The events of a background response after sequence number ``starting_after``."""
        params = {"stream": "true", "starting_after": starting_after}
        return self._client.stream_sse("GET", f"/responses/{path_segment(response_id)}", params=params)

    async def retrieve_response(self, response_id: str) -> dict[str, Any]:
        return await self._client.request("GET", f"/responses/{path_segment(response_id)}")

    async def cancel_response(self, response_id: str) -> dict[str, Any]:
        return await self._client.request("POST", f"/responses/{path_segment(response_id)}/cancel")

    # ---- containers ---------------------------------------------------------------------------

    async def container_file_content(self, container_id: str, file_id: str, *, max_bytes: int) -> bytes:
        """The container file's bytes; ContentTooLarge past ``max_bytes``."""
        path = f"/containers/{path_segment(container_id)}/files/{path_segment(file_id)}/content"
        return await self._client.request_bytes("GET", path, max_bytes=max_bytes)

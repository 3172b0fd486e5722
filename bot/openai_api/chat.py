"""Chat completions (streamed) and embeddings: the two endpoints an OpenAI-compatible server is sure to have."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from pydantic import BaseModel

from bot.openai_api.client import OpenAIClient, SSEvent

# The API takes at most 2,048 inputs per embeddings request.
MAX_EMBEDDING_INPUTS = 2048


class EmbeddingItem(BaseModel):
    index: int
    embedding: list[float]


class EmbeddingList(BaseModel):
    data: list[EmbeddingItem]


class ChatCompletionsAPI:
    """POST /chat/completions as a stream of raw chunks, and POST /embeddings."""

    def __init__(self, client: OpenAIClient) -> None:
        self._client = client

    def stream(self, body: dict[str, Any]) -> AsyncGenerator[SSEvent, None]:
        """Stream one completion: chunks as dicts with event None (or one "json" event from a server that
        will not stream). The caller parses chunks itself: they come per token, too many for pydantic.

        A completion keeps nothing on the server, so a request whose answer was lost is simply asked
        again: there is nothing to look up and nothing that could be duplicated.
        """
        return self._client.stream_sse(
            "POST",
            "/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
            retry_when_sent=True,
        )

    async def embed(self, texts: Sequence[str], *, model: str) -> list[list[float]]:
        """One vector per text, in order."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_EMBEDDING_INPUTS):
            batch = list(texts[start : start + MAX_EMBEDDING_INPUTS])
            answer = await self._client.request_model(
                EmbeddingList, "POST", "/embeddings", json={"model": model, "input": batch}
            )
            vectors += [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
        return vectors

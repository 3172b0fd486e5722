"""The embeddings family of the OpenAI double: deterministic vectors that make texts sharing words similar."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from .server import ApiCall, ApiError, JsonReply, Route, ServerCore

# Small vectors are enough for hashed words to rarely collide in tests, and keep the JSON short.
DIMENSIONS = 256
_WORD = re.compile(r"\w+")


def embedding(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """A hashed bag of words, normalised: the cosine of two texts grows with the words they share."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return [round(value / norm, 6) for value in vector] if norm else vector


class EmbeddingsFamily:
    """POST /embeddings for strings; remembers what it embedded."""

    name = "embeddings"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [Route.of("POST", "/embeddings", self._create_embeddings)]

    def reset(self) -> None:
        self.inputs: list[str] = []

    def _create_embeddings(self, call: ApiCall) -> JsonReply:
        given = call.body["input"]
        texts: list[Any] = [given] if isinstance(given, str) else list(given)
        if not all(isinstance(text, str) for text in texts):
            raise ApiError(400, "The double embeds strings only, not token arrays.", param="input")
        if any(not text for text in texts):
            raise ApiError(400, "'$.input' is invalid. Please check the API reference.", param="input")
        self.inputs += texts
        dimensions = int(call.body.get("dimensions") or DIMENSIONS)
        words = sum(len(_WORD.findall(text)) for text in texts)
        return JsonReply(
            {
                "object": "list",
                "model": call.body["model"],
                "data": [
                    {"object": "embedding", "index": index, "embedding": embedding(text, dimensions)}
                    for index, text in enumerate(texts)
                ],
                "usage": {"prompt_tokens": words, "total_tokens": words},
            }
        )

"""Shared documents for a chat model: their passages, and the passages a question needs (their text comes from
bot.conversations.documents)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bot.conversations.backends.chat.history import estimate_text_tokens
from bot.store.chat import Passage

# Up to this many characters a document goes into the message whole; a longer one is searched instead.
INLINE_DOCUMENT_CHARS = 12_000
# Passages are whole paragraphs packed up to this size, so that each is about one topic.
PASSAGE_CHARS = 1_500
# What the retrieved passages may take of a prompt, and how many there are at most.
RETRIEVAL_TOKEN_BUDGET = 3_000
MAX_PASSAGES = 6


def passages_of(text: str, *, limit: int = PASSAGE_CHARS) -> list[str]:
    """The text cut into passages of whole paragraphs up to `limit` characters (longer paragraphs are cut)."""
    pieces: list[str] = []
    for paragraph in (part.strip() for part in text.split("\n\n")):
        pieces += [paragraph[start : start + limit] for start in range(0, len(paragraph), limit)]
    passages: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > limit:
            passages.append(current)
            current = piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        passages.append(current)
    return passages


def cosine(left: Sequence[float], right: Sequence[float]) -> float:
    norms = math.sqrt(sum(value * value for value in left)) * math.sqrt(sum(value * value for value in right))
    return sum(a * b for a, b in zip(left, right, strict=False)) / norms if norms else 0.0


def best_passages(passages: Sequence[Passage], query: Sequence[float]) -> list[Passage]:
    """The passages most similar to the query, best first, within the retrieval budget."""
    ranked = sorted(passages, key=lambda passage: cosine(passage.embedding, query), reverse=True)
    chosen: list[Passage] = []
    used = 0
    for passage in ranked[:MAX_PASSAGES]:
        cost = estimate_text_tokens(passage.text)
        if chosen and used + cost > RETRIEVAL_TOKEN_BUDGET:
            break
        chosen.append(passage)
        used += cost
    return chosen


def context_message(passages: Sequence[Passage]) -> str:
    """The system message that hands the model the retrieved passages, naming their files."""
    names = ", ".join(dict.fromkeys(passage.file_name for passage in passages))
    quoted = "\n\n".join(
        f'<passage file="{passage.file_name}" part="{passage.position + 1}">\n{passage.text}\n</passage>'
        for passage in passages
    )
    return (
        f"Passages from documents shared in this conversation ({names}), most relevant first. "
        f"Use them to answer when they help, and say which file you used.\n\n{quoted}"
    )

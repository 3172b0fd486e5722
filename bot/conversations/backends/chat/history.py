"""The chat history as chat-completions messages: offline token estimates and trimming to a budget."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from bot.store.chat import HistoryEntry

# Why an estimate and not a tokenizer: the server may run any model (a gateway, a local Llama), whose
# tokenizer we cannot know offline, and tokenizer packages download their encodings on first use. Byte-pair
# tokenizers give about 4 bytes of English or 3 bytes of other UTF-8 text per token; counting 3 bytes per
# token overestimates English and matches CJK, so the trimmed history errs on the short side.
BYTES_PER_TOKEN = 3
# Role markers and separators the API adds around every message (about 4 tokens; doubled for safety).
MESSAGE_OVERHEAD_TOKENS = 8
# A high-detail image costs at most ~1,100 tokens on OpenAI's vision models; other servers vary.
IMAGE_TOKENS = 1500


def estimate_text_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def estimate_tokens(fields: dict[str, Any]) -> int:
    """The tokens one message (its chat-completions fields, role aside) takes in a prompt, erring high."""
    tokens = MESSAGE_OVERHEAD_TOKENS
    content = fields.get("content")
    if isinstance(content, str):
        tokens += estimate_text_tokens(content)
    elif isinstance(content, list):
        for part in content:
            tokens += IMAGE_TOKENS if part.get("type") == "image_url" else estimate_text_tokens(part.get("text", ""))
    if fields.get("tool_calls"):
        tokens += estimate_text_tokens(json.dumps(fields["tool_calls"]))
    return tokens


def entry(key: str, role: str, fields: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(key=key, role=role, fields=fields, tokens=estimate_tokens(fields))


def as_message(history_entry: HistoryEntry) -> dict[str, Any]:
    return {"role": history_entry.role, **history_entry.fields}


def trimmed(entries: Sequence[HistoryEntry], *, budget: int) -> list[HistoryEntry]:
    """The newest entries that fit in `budget` tokens, oldest first; the newest exchange is always kept.

    An assistant message that calls tools and the tool messages answering it go or stay together: the
    API refuses a tool message whose call it cannot see, and a call without its outputs.
    """
    blocks: list[list[HistoryEntry]] = []
    for item in entries:
        if item.role == "tool" and blocks and blocks[-1][0].fields.get("tool_calls"):
            blocks[-1].append(item)
        else:
            blocks.append([item])
    kept: list[list[HistoryEntry]] = []
    used = 0
    for block in reversed(blocks):
        cost = sum(item.tokens for item in block)
        if kept and used + cost > budget:
            break
        kept.append(block)
        used += cost
    return [item for block in reversed(kept) for item in block]

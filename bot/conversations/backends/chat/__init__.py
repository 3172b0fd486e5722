"""The `chat` backend: any OpenAI-compatible server's /chat/completions, the history kept by the bot."""

from __future__ import annotations

from bot.conversations.backends import BackendDeps, BackendPlugin, Probe
from bot.conversations.backends.chat.backend import ChatBackend
from bot.openai_api.chat import ChatCompletionsAPI
from bot.store.chat import ChatHistoryRecords


def build(deps: BackendDeps) -> ChatBackend:
    return ChatBackend(
        api=ChatCompletionsAPI(deps.client),
        records=ChatHistoryRecords(deps.store),
        profiles=deps.table_profiles,
        max_history_tokens=deps.settings.chat_max_history_tokens,
        embedding_model=deps.settings.embedding_model,
        reasoning_effort=deps.settings.assistant_reasoning_effort,
    )


PLUGIN = BackendPlugin(
    name="chat",
    build=build,
    # The stored-completions list: free, and a server that only takes POST answers 405, which counts as served.
    probes=(Probe("GET", "/chat/completions?limit=1"),),
    summary="chat: POST /chat/completions (and /embeddings for long documents); the bot keeps the history",
    capabilities=ChatBackend.capabilities,
)

__all__ = ["PLUGIN", "ChatBackend"]

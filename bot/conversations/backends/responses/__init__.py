"""The `responses` backend (the default): Responses + Conversations API, background responses followed by id."""

from __future__ import annotations

from bot.conversations.backends import BackendDeps, BackendPlugin, Probe
from bot.conversations.backends.responses.backend import ResponsesBackend
from bot.conversations.backends.responses.mcp import McpSteps
from bot.conversations.backends.responses.profiles import import_assistant_profile
from bot.openai_api.responses import ResponsesAPI


def build(deps: BackendDeps) -> ResponsesBackend:
    profiles = deps.table_profiles
    assistant_id = deps.settings.openai_assistant_id
    if assistant_id:
        profiles = profiles.importing(assistant_id, lambda: import_assistant_profile(deps.client, assistant_id))
    return ResponsesBackend(
        ResponsesAPI(deps.client),
        files=deps.files,
        file_records=deps.file_records,
        max_answer_file_mb=deps.settings.max_file_mb,
        profiles=profiles,
        mcp=McpSteps(deps.mcp) if deps.mcp is not None else None,
        queued_deadline_seconds=deps.settings.run_queued_deadline_seconds,
        deadline_seconds=deps.settings.run_deadline_seconds,
        poll_max_seconds=deps.settings.run_poll_max_seconds,
        reasoning_effort=deps.settings.assistant_reasoning_effort,
    )


PLUGIN = BackendPlugin(
    name="responses",
    build=build,
    probes=(Probe("GET", "/responses/resp_probe"), Probe("GET", "/conversations/conv_probe")),
    summary="needs /responses, /conversations, /files and /vector_stores (api.openai.com serves them)",
    capabilities=ResponsesBackend.capabilities,
)

__all__ = ["PLUGIN", "ResponsesBackend", "build", "import_assistant_profile"]

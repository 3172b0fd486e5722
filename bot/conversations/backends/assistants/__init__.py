"""The `assistants` backend: conversations on Assistants API v2 threads, profiles as the server's assistants."""

from __future__ import annotations

from bot.conversations.backends import BackendDeps, BackendPlugin, Probe
from bot.conversations.backends.assistants.api import AssistantsAPI
from bot.conversations.backends.assistants.backend import AssistantsBackend
from bot.conversations.backends.assistants.files import MessageFiles
from bot.conversations.backends.assistants.profiles import AssistantsProfiles
from bot.conversations.backends.openai_files import ConversationFiles


def build(deps: BackendDeps) -> AssistantsBackend:
    api = AssistantsAPI(deps.client)
    files = ConversationFiles(deps.files, deps.file_records, max_answer_file_mb=deps.settings.max_file_mb)
    settings = deps.settings
    return AssistantsBackend(
        api,
        profiles=AssistantsProfiles(
            api,
            store=deps.store,
            settings=settings,
            table_profiles=deps.table_profiles,
            default_tools=deps.table_profiles.configured_default.tools,
        ),
        files=files,
        message_files=MessageFiles(files),
        poll_max_seconds=settings.run_poll_max_seconds,
        deadline_seconds=settings.run_deadline_seconds,
        queued_deadline_seconds=settings.run_queued_deadline_seconds,
        reasoning_effort=settings.assistant_reasoning_effort,
    )


PLUGIN = BackendPlugin(
    name="assistants",
    build=build,
    probes=(Probe("GET", "/assistants?limit=1"),),
    summary="the Assistants API v2 (/assistants, /threads, /files, /vector_stores)",
    capabilities=AssistantsBackend.capabilities,
)

__all__ = ["PLUGIN", "AssistantsBackend", "AssistantsProfiles", "build"]

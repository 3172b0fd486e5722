"""The model backends, one folder each; the wiring picks one by name from ``bot.app.BACKENDS``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.conversations.backend import Backend, Capabilities
from bot.conversations.mcp import McpApprovals
from bot.conversations.profiles import TableProfileCatalog
from bot.openai_api.client import OpenAIClient
from bot.openai_api.files import FilesAPI
from bot.settings import Settings
from bot.store.files import ApiFileRecords
from bot.store.repositories import Store


@dataclass(frozen=True)
class BackendDeps:
    """What the wiring hands every backend's ``build``."""

    client: OpenAIClient
    files: FilesAPI
    store: Store
    file_records: ApiFileRecords
    # Profiles kept in our own table (with the settings' default); backends without their own use it.
    table_profiles: TableProfileCatalog
    settings: Settings
    # Remote MCP tools and their approvals; a backend that has no MCP tools ignores it.
    mcp: McpApprovals | None = None


@dataclass(frozen=True)
class Probe:
    """A request that tells, at no cost in tokens, whether the server serves an API family."""

    method: str
    path: str
    body: dict[str, object] | None = None


@dataclass(frozen=True)
class BackendPlugin:
    name: str
    build: Callable[[BackendDeps], Backend]
    # What the server must serve for this backend; checked at start (and by `doctor`).
    probes: tuple[Probe, ...]
    summary: str  # one line for the start-up check and the README: what the backend needs
    # What its backend can do, known before it is built: the settings' default profile is checked against it.
    capabilities: Capabilities = Capabilities()

"""Assistant profiles: the neutral description of an assistant, and where a backend keeps them."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from bot.errors import ProfileNotFound

BUILTIN_TOOLS = ("file_search", "code_interpreter", "web_search", "image_generation")
"""The built-in tools a profile may switch on; our own function tools are offered on every backend."""
TOOL_LABELS = {
    "file_search": "File search",
    "code_interpreter": "Code interpreter",
    "web_search": "Web search",
    "image_generation": "Image generation",
}

MCP_TOOL_PREFIX = "mcp:"
"""A profile's tools also name the workspace MCP servers it enables, as ``mcp:<label>`` (no column of their own)."""

REASONING_EFFORTS = ("minimal", "low", "medium", "high")
"""How hard a reasoning model may think before it answers (ASSISTANT_REASONING_EFFORT, a profile's own)."""

# Models that reason before they answer, by name: they take a reasoning effort and refuse the sampling
# parameters (temperature, top_p), while every other model refuses a reasoning effort. The one such list.
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def is_reasoning_model(model: str) -> bool:
    """Whether the model reasons first; gateways' "vendor/model" names and fine-tunes ("ft:o4-mini:...") count."""
    name = model.rpartition("/")[2].removeprefix("ft:").lower()
    return any(
        name == prefix or name.startswith((f"{prefix}-", f"{prefix}.", f"{prefix}:"))
        for prefix in REASONING_MODEL_PREFIXES
    )


@dataclass(frozen=True)
class Profile:
    """An assistant as people choose it: the same on every backend."""

    id: str
    name: str
    model: str
    instructions: str
    tools: tuple[str, ...] = ()  # names from BUILTIN_TOOLS
    vector_store_ids: tuple[str, ...] = ()  # knowledge the profile's file search reads on every turn
    reasoning_effort: str | None = None  # from REASONING_EFFORTS; None: ASSISTANT_REASONING_EFFORT

    @property
    def builtin_tools(self) -> tuple[str, ...]:
        """The built-in tools this profile switches on (its tools but the MCP servers)."""
        return tuple(tool for tool in self.tools if not tool.startswith(MCP_TOOL_PREFIX))

    @property
    def mcp_servers(self) -> tuple[str, ...]:
        """The labels of the workspace MCP servers this profile enables."""
        return tuple(tool.removeprefix(MCP_TOOL_PREFIX) for tool in self.tools if tool.startswith(MCP_TOOL_PREFIX))

    def with_mcp_servers(self, labels: tuple[str, ...]) -> Profile:
        return replace(self, tools=self.builtin_tools + tuple(f"{MCP_TOOL_PREFIX}{label}" for label in labels))

    def edited(self, spec: ProfileSpec) -> Profile:
        return replace(
            self,
            name=spec.name,
            model=spec.model,
            instructions=self.instructions if spec.instructions is None else spec.instructions,
            tools=spec.tools,
            reasoning_effort=spec.reasoning_effort,
        ).with_mcp_servers(self.mcp_servers if spec.mcp_servers is None else spec.mcp_servers)

    def effort(self, configured: str | None) -> str | None:
        """The reasoning effort to ask of this profile's model: its own, else the configured one; None for
        models that do not reason (they refuse the parameter) and when neither is set (the model's default)."""
        return (self.reasoning_effort or configured) if is_reasoning_model(self.model) else None


@dataclass(frozen=True)
class ProfileSpec:
    """What a person fills in to create or edit a profile."""

    name: str
    model: str
    instructions: str | None  # None when the form could not hold them: they stay as they are
    tools: tuple[str, ...]
    reasoning_effort: str | None = None  # None: the configured default (ASSISTANT_REASONING_EFFORT)
    mcp_servers: tuple[str, ...] | None = None  # labels; None when the form offered none: they stay as they are


@dataclass(frozen=True)
class ProfileChoices:
    """What a create/edit form offers, wherever it is shown: what a filled-in spec must keep to."""

    backend_name: str
    tools: tuple[str, ...]  # the built-in tools the backend can run
    mcp_servers: tuple[str, ...] | None = None  # the workspace's server labels; None: the backend has no MCP tools
    models: tuple[str, ...] = ()  # the models to choose from; empty: the form's own picker keeps to them


def spec_problems(spec: ProfileSpec, choices: ProfileChoices) -> dict[str, str]:
    """What is wrong with a filled-in spec, by field ("name", "model", "tools", "mcp_servers",
    "reasoning_effort"); empty when it may be saved. A stale or forged form may name what is not offered."""
    problems = {}
    if not spec.name.strip():
        problems["name"] = "Give the assistant a name."
    if not spec.model:
        problems["model"] = "Choose a model."
    elif choices.models and spec.model not in choices.models:
        problems["model"] = f"{spec.model} is not one of the models listed."
    unavailable = [TOOL_LABELS[tool] for tool in spec.tools if tool in BUILTIN_TOOLS and tool not in choices.tools]
    if unavailable:
        problems["tools"] = not_available(unavailable, choices.backend_name)
    elif any(tool not in choices.tools for tool in spec.tools):
        problems["tools"] = "Choose only the tools listed."
    if spec.mcp_servers and choices.mcp_servers is None:
        problems["mcp_servers"] = f"MCP servers are not available on the {choices.backend_name} backend."
    elif spec.mcp_servers and any(label not in (choices.mcp_servers or ()) for label in spec.mcp_servers):
        problems["mcp_servers"] = "Choose only the servers listed."
    if spec.reasoning_effort is not None and spec.reasoning_effort not in REASONING_EFFORTS:
        problems["reasoning_effort"] = "Choose one of the efforts listed."
    return problems


def not_available(labels: list[str], backend_name: str) -> str:
    """'Web search and Image generation are not available on the chat backend.'"""
    listed = labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"
    return f"{listed} {'is' if len(labels) == 1 else 'are'} not available on the {backend_name} backend."


@dataclass(frozen=True)
class ProfileOrigin:
    """Who created a profile, and from where."""

    team_id: str
    channel_id: str
    user_id: str


class ProfileCatalog(Protocol):
    """The profiles a backend can answer with. Missing ids raise ``bot.errors.ProfileNotFound``."""

    async def default(self) -> Profile: ...

    async def get(self, profile_id: str) -> Profile: ...

    async def list(self) -> list[Profile]: ...

    async def create(self, spec: ProfileSpec, *, origin: ProfileOrigin) -> Profile: ...

    async def update(self, profile_id: str, spec: ProfileSpec) -> Profile: ...

    async def purge(self, profile_ids: Sequence[str]) -> None:
        """Delete what the server keeps of these profiles, made in a workspace that is being purged (one already
        gone is no error). The bot's own rows of them go with the workspace's other rows."""
        ...


class ProfileRecords(Protocol):
    """Where a table catalog keeps its profiles (bot.store.profiles.ProfileRecords)."""

    async def get(self, profile_id: str) -> Profile | None: ...

    async def list(self) -> list[Profile]: ...

    async def save(self, profile: Profile, *, origin: ProfileOrigin | None = None) -> None: ...


DEFAULT_PROFILE_ID = "default"


class TableProfileCatalog:
    """Profiles in the bot's own table, for backends whose server keeps none (Responses, chat).

    The default profile comes from the settings, unless ``import_default`` finds one once at first use
    (OPENAI_ASSISTANT_ID on a server that still serves that assistant); a failed import falls back to
    the settings' default for good, so it never fails a turn. An admin's edit of the default is stored
    under its id and wins over the settings from then on.
    """

    def __init__(
        self,
        records: ProfileRecords,
        *,
        configured_default: Profile,
        import_default: tuple[str, Callable[[], Awaitable[Profile | None]]] | None = None,
    ) -> None:
        self._records = records
        self._default = configured_default
        self._import_default = import_default

    @property
    def configured_default(self) -> Profile:
        """The default profile as the settings describe it (for backends that create their own from it)."""
        return self._default

    def importing(self, profile_id: str, fetch: Callable[[], Awaitable[Profile | None]]) -> TableProfileCatalog:
        """This catalog, with a default imported once (as ``profile_id``) by ``fetch`` if not stored yet."""
        return TableProfileCatalog(self._records, configured_default=self._default, import_default=(profile_id, fetch))

    async def default(self) -> Profile:
        if self._import_default is not None:
            (profile_id, fetch), self._import_default = self._import_default, None
            # Imported once ever: a stored copy (perhaps edited by an admin since) wins over the server's.
            imported = await self._records.get(profile_id)
            if imported is None:
                imported = await fetch()
                if imported is not None:
                    await self._records.save(imported)
            if imported is not None:
                self._default = imported
        return await self._records.get(self._default.id) or self._default

    async def get(self, profile_id: str) -> Profile:
        default = await self.default()
        if profile_id in (DEFAULT_PROFILE_ID, default.id):
            return default
        found = await self._records.get(profile_id)
        if found is None:
            raise ProfileNotFound(f"no profile {profile_id!r}")
        return found

    async def list(self) -> list[Profile]:
        default = await self.default()
        return [default, *(profile for profile in await self._records.list() if profile.id != default.id)]

    async def create(self, spec: ProfileSpec, *, origin: ProfileOrigin) -> Profile:
        profile = Profile(
            id=f"prof_{secrets.token_hex(8)}",
            name=spec.name,
            model=spec.model,
            instructions=spec.instructions or "",
            tools=spec.tools,
            reasoning_effort=spec.reasoning_effort,
        ).with_mcp_servers(spec.mcp_servers or ())
        await self._records.save(profile, origin=origin)
        return profile

    async def update(self, profile_id: str, spec: ProfileSpec) -> Profile:
        edited = (await self.get(profile_id)).edited(spec)
        await self._records.save(edited)
        return edited

    async def purge(self, profile_ids: Sequence[str]) -> None:
        """Nothing to do: these profiles live only in the bot's table, whose rows go with the workspace's."""

    async def save(self, profile: Profile, *, origin: ProfileOrigin | None = None) -> None:
        """Keep a copy of a profile another catalog owns (the Assistants API's), so switching keeps it."""
        await self._records.save(profile, origin=origin)

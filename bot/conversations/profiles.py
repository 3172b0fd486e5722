"""Assistant profiles: the neutral description of an assistant, and where a backend keeps them."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from bot.errors import ProfileNotFound

BUILTIN_TOOLS = ("file_search", "code_interpreter", "web_search", "image_generation")
"""The built-in tools a profile may switch on; our own function tools are offered on every backend."""


@dataclass(frozen=True)
class Profile:
    """An assistant as people choose it: the same on every backend."""

    id: str
    name: str
    model: str
    instructions: str
    tools: tuple[str, ...] = ()  # names from BUILTIN_TOOLS
    vector_store_ids: tuple[str, ...] = ()  # knowledge the profile's file search reads on every turn

    def edited(self, spec: ProfileSpec) -> Profile:
        return replace(
            self,
            name=spec.name,
            model=spec.model,
            instructions=self.instructions if spec.instructions is None else spec.instructions,
            tools=spec.tools,
        )


@dataclass(frozen=True)
class ProfileSpec:
    """What a person fills in to create or edit a profile."""

    name: str
    model: str
    instructions: str | None  # None when the form could not hold them: they stay as they are
    tools: tuple[str, ...]


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
        )
        await self._records.save(profile, origin=origin)
        return profile

    async def update(self, profile_id: str, spec: ProfileSpec) -> Profile:
        edited = (await self.get(profile_id)).edited(spec)
        await self._records.save(edited)
        return edited

    async def save(self, profile: Profile, *, origin: ProfileOrigin | None = None) -> None:
        """Keep a copy of a profile another catalog owns (the Assistants API's), so switching keeps it."""
        await self._records.save(profile, origin=origin)

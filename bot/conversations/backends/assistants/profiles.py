"""The Assistants API's assistants as profiles: the default one, lookups (cached), creation and edits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from bot.conversations.backends.assistants.api import AssistantsAPI
from bot.conversations.backends.openai_files import unless_gone
from bot.conversations.profiles import (
    BUILTIN_TOOLS,
    REASONING_EFFORTS,
    Profile,
    ProfileCatalog,
    ProfileOrigin,
    ProfileSpec,
    is_reasoning_model,
)
from bot.errors import NotFoundError, ProfileNotFound, StoreError
from bot.openai_api.models import Assistant
from bot.settings import Settings
from bot.store.repositories import Store

log = logging.getLogger(__name__)

DEFAULT_ASSISTANT_KEY = "default_assistant_id"
MATERIALISED_KEY_PREFIX = "assistant_for_profile:"
ASSISTANT_ID_PREFIX = "asst_"
# The built-in tools the Assistants API runs; a profile's others (web search...) are not sent to it.
SERVED_TOOLS = ("file_search", "code_interpreter")
# Every run needs its assistant's tools; a few minutes' staleness after an edit elsewhere is fine.
ASSISTANT_CACHE_SECONDS = 300.0


def profile_of(assistant: Assistant) -> Profile:
    file_search = (assistant.tool_resources or {}).get("file_search") or {}
    return Profile(
        id=assistant.id,
        name=assistant.name or assistant.id,
        model=assistant.model or "",
        instructions=assistant.instructions or "",
        tools=tuple(tool["type"] for tool in assistant.tools if tool.get("type") in BUILTIN_TOOLS),
        vector_store_ids=tuple(file_search.get("vector_store_ids") or ()),
        reasoning_effort=assistant.reasoning_effort if assistant.reasoning_effort in REASONING_EFFORTS else None,
    )


def _reasoning_fields(model: str, effort: str | None) -> dict[str, Any]:
    """An assistant's own reasoning effort; only reasoning models take the field (None clears it)."""
    return {"reasoning_effort": effort} if is_reasoning_model(model) else {}


class AssistantsProfiles:
    """A ProfileCatalog over the server's assistants; each one read is copied into our own table too.

    The copy keeps channels' choices meaningful after a switch to a backend without assistants.
    """

    def __init__(
        self,
        api: AssistantsAPI,
        *,
        store: Store,
        settings: Settings,
        table_profiles: ProfileCatalog,
        default_tools: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._default_tools = default_tools  # ASSISTANT_TOOLS, for the default assistant the bot creates
        self._store = store
        self._settings = settings
        self._table_profiles = table_profiles
        self._clock = clock
        self._cache: dict[str, tuple[float, Assistant]] = {}
        self._default_lock = asyncio.Lock()

    async def assistant(self, assistant_id: str) -> Assistant:
        """The assistant as the API has it, at most ASSISTANT_CACHE_SECONDS old; ProfileNotFound if none."""
        cached = self._cache.get(assistant_id)
        if cached is not None and self._clock() - cached[0] <= ASSISTANT_CACHE_SECONDS:
            return cached[1]
        try:
            assistant = await self._api.retrieve_assistant(assistant_id)
        except NotFoundError as exc:
            self._cache.pop(assistant_id, None)
            raise ProfileNotFound(f"no assistant {assistant_id} on this server") from exc
        await self._remember(assistant)
        return assistant

    async def default_id(self) -> str:
        """OPENAI_ASSISTANT_ID, or the assistant the bot created once and remembered."""
        if self._settings.openai_assistant_id:
            return self._settings.openai_assistant_id
        async with self._default_lock:
            remembered = await self._store.get_state(DEFAULT_ASSISTANT_KEY)
            if remembered:
                return remembered
            created = await self._api.create_assistant(
                {
                    "model": self._settings.assistant_model,
                    "name": self._settings.assistant_name,
                    "instructions": self._settings.assistant_instructions,
                    "tools": [{"type": tool} for tool in self._default_tools if tool in SERVED_TOOLS],
                }
            )
            log.info("created default assistant %s (model %s)", created.id, self._settings.assistant_model)
            await self._remember(created)
            return await self._store.put_state_once(DEFAULT_ASSISTANT_KEY, created.id)

    async def default(self) -> Profile:
        return await self.get(await self.default_id())

    async def get(self, profile_id: str) -> Profile:
        return profile_of(await self.assistant(await self._assistant_id(profile_id)))

    async def _assistant_id(self, profile_id: str) -> str:
        """The assistant behind a profile id: itself, or, for a profile made on another backend (kept in our
        own table), an assistant created from it once and remembered, so a channel keeps its choice."""
        if profile_id.startswith(ASSISTANT_ID_PREFIX):
            return profile_id
        key = f"{MATERIALISED_KEY_PREFIX}{profile_id}"
        known = await self._store.get_state(key)
        if known:
            return known
        stored = await self._table_profiles.get(profile_id)  # ProfileNotFound when there is none
        body: dict[str, Any] = {
            "model": stored.model,
            "name": stored.name,
            "tools": [{"type": tool} for tool in stored.tools if tool in SERVED_TOOLS],
            "metadata": {"profile": profile_id},
            **_reasoning_fields(stored.model, stored.reasoning_effort),
        }
        if stored.instructions:
            body["instructions"] = stored.instructions
        created = await self._api.create_assistant(body)
        winner = await self._store.put_state_once(key, created.id)
        if winner != created.id:
            # Another replica made one at the same moment: theirs stays, ours goes.
            await self._api.delete_assistant(created.id)
        else:
            log.info("profile %s now has assistant %s on this server", profile_id, created.id)
            await self._remember(created)
        return winner

    async def list(self) -> list[Profile]:
        found = []
        async for assistant in self._api.assistants():
            self._cache[assistant.id] = (self._clock(), assistant)
            found.append(profile_of(assistant))
        return found

    async def create(self, spec: ProfileSpec, *, origin: ProfileOrigin) -> Profile:
        body: dict[str, Any] = {
            "model": spec.model,
            "name": spec.name,
            "tools": [{"type": tool} for tool in spec.tools],
            "metadata": {"created_by": origin.user_id, "channel": origin.channel_id},
            **_reasoning_fields(spec.model, spec.reasoning_effort),
        }
        if spec.instructions:
            body["instructions"] = spec.instructions
        assistant = await self._api.create_assistant(body)
        log.info("user %s created assistant %s for channel %s", origin.user_id, assistant.id, origin.channel_id)
        # The copy records the workspace it was made in: only that workspace sees it among its own.
        await self._remember(assistant, origin=origin)
        return profile_of(assistant)

    async def update(self, profile_id: str, spec: ProfileSpec) -> Profile:
        try:
            current = await self._api.retrieve_assistant(profile_id)
        except NotFoundError as exc:
            raise ProfileNotFound(f"no assistant {profile_id} on this server") from exc
        # Only the built-in tools are edited; function tools the assistant has stay as they are.
        kept = [tool for tool in current.tools if tool.get("type") not in BUILTIN_TOOLS]
        fields: dict[str, Any] = {
            "name": spec.name,
            "model": spec.model,
            "tools": kept + [{"type": tool} for tool in spec.tools],
            **_reasoning_fields(spec.model, spec.reasoning_effort),
        }
        if spec.instructions is not None:
            fields["instructions"] = spec.instructions
        assistant = await self._api.update_assistant(profile_id, fields)
        await self._remember(assistant)
        return profile_of(assistant)

    async def purge(self, profile_ids: Sequence[str]) -> None:
        """The assistants a workspace made (`/assistant create`) are deleted from the server; the ones made from
        another backend's profiles are kept, as other workspaces' channels may use them."""
        for profile_id in profile_ids:
            if profile_id.startswith(ASSISTANT_ID_PREFIX):
                await unless_gone(self._api.delete_assistant(profile_id))
                self._cache.pop(profile_id, None)
                log.info("assistant %s deleted with the workspace that made it", profile_id)

    async def _remember(self, assistant: Assistant, *, origin: ProfileOrigin | None = None) -> None:
        self._cache[assistant.id] = (self._clock(), assistant)
        save = getattr(self._table_profiles, "save", None)
        if save is None:
            return
        try:
            await save(profile_of(assistant), origin=origin)
        except StoreError as exc:
            # The copy only matters after a switch of backend; this answer must not fail for it.
            log.warning("could not copy assistant %s into the profiles table: %s", assistant.id, exc)

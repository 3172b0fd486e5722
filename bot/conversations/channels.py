"""Per-channel assistants (who may choose, choosing, the audit trail, usage) and conversation control (new, forget)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.conversations.retention import ApiObjects
from bot.conversations.service import AssistantDirectory
from bot.errors import ConversationBusy
from bot.openai_api.client import OpenAIClient
from bot.openai_api.models import Assistant
from bot.store.channels import ApiObjectIds, ChannelStore, TokenUsage
from bot.store.models import Conversation
from bot.store.repositories import Store, utcnow

log = logging.getLogger(__name__)

# The tools a channel's assistant may be given from Slack; our own functions are added to every run anyway.
BUILTIN_TOOLS = ("file_search", "code_interpreter")
USAGE_WINDOWS_DAYS = (7, 30)
# Models no assistant can run on, left out of the model picker.
NON_CHAT_MODEL_WORDS = (
    "moderation", "embedding", "whisper", "tts", "dall-e", "image", "transcribe", "audio", "realtime"
)
DM_THREAD_KEY = "dm"
# Long enough for one conversation's API deletions, each bounded by the API client's own timeout.
FORGET_LEASE_SECONDS = 600.0


@dataclass(frozen=True)
class AssistantSpec:
    """What a person fills in to create or edit an assistant."""

    name: str
    model: str
    instructions: str | None  # None when the form could not hold them: they stay as they are
    tools: tuple[str, ...]


@dataclass(frozen=True)
class AssistantProfile:
    """An assistant as people see and choose it, independent of the API's object."""

    id: str
    name: str | None
    model: str
    instructions: str | None
    tools: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, assistant: Assistant) -> AssistantProfile:
        return cls(
            id=assistant.id,
            name=assistant.name,
            model=assistant.model,
            instructions=assistant.instructions,
            tools=tuple(assistant.tools),
        )


@dataclass(frozen=True)
class ChannelAssistant:
    """The assistant a channel talks to, and whether it is the bot's default."""

    assistant: AssistantProfile
    is_default: bool

    @property
    def tool_types(self) -> list[str]:
        return [tool.get("type", "?") for tool in self.assistant.tools]


@dataclass(frozen=True)
class ModelGroup:
    title: str
    model_ids: tuple[str, ...]


@dataclass(frozen=True)
class UsageWindow:
    days: int
    by_user: TokenUsage
    by_channel: TokenUsage


def is_fine_tuned(model_id: str) -> bool:
    return model_id.startswith("ft:")


def assistant_models(model_ids: Sequence[str]) -> list[str]:
    """Models an assistant can use: fine-tuned ones first, then the rest by name."""
    usable = [model for model in model_ids if not any(word in model for word in NON_CHAT_MODEL_WORDS)]
    return sorted(usable, key=lambda model: (not is_fine_tuned(model), model))


def group_models(model_ids: Sequence[str]) -> list[ModelGroup]:
    """Fine-tuned models, chat models and the rest (embeddings, moderation, audio, images), each sorted."""
    chat = set(assistant_models(model_ids))
    groups = [
        ModelGroup("Fine-tuned", tuple(sorted(m for m in model_ids if is_fine_tuned(m)))),
        ModelGroup("Chat models", tuple(sorted(m for m in chat if not is_fine_tuned(m)))),
        ModelGroup("Other models", tuple(sorted(m for m in model_ids if m not in chat))),
    ]
    return [group for group in groups if group.model_ids]


class ChannelAssistants:
    """Choosing the assistant a channel talks to: lookups, the permission rule, and audited changes."""

    def __init__(
        self,
        *,
        client: OpenAIClient,
        directory: AssistantDirectory,
        store: Store,
        channel_store: ChannelStore,
        admin_user_ids: Collection[str],
    ) -> None:
        self._client = client
        self._directory = directory
        self._store = store
        self._channel_store = channel_store
        self._admin_user_ids = frozenset(admin_user_ids)

    def may_change(self, *, user_id: str, is_workspace_admin: bool) -> bool:
        """Workspace admins and owners, and the operator's ADMIN_USER_IDS, may change a channel's assistant."""
        return is_workspace_admin or user_id in self._admin_user_ids

    async def current(self, *, team_id: str, channel_id: str) -> ChannelAssistant:
        chosen = await self._store.channel_assistant(team_id=team_id, channel_id=channel_id)
        assistant_id = chosen or await self._directory.default_assistant()
        assistant = AssistantProfile.of(await self._client.retrieve_assistant(assistant_id))
        return ChannelAssistant(assistant, is_default=chosen is None)

    async def default(self) -> AssistantProfile:
        return AssistantProfile.of(await self._client.retrieve_assistant(await self._directory.default_assistant()))

    async def available(self) -> list[AssistantProfile]:
        return [AssistantProfile.of(assistant) async for assistant in self._client.iterate_assistants()]

    async def find(self, reference: str) -> list[AssistantProfile]:
        """The assistant with this id (NotFoundError if none), or every assistant with this name."""
        if reference.startswith("asst_"):
            return [AssistantProfile.of(await self._client.retrieve_assistant(reference))]
        wanted = reference.casefold()
        return [assistant for assistant in await self.available() if (assistant.name or "").casefold() == wanted]

    async def model_ids(self) -> list[str]:
        return [model.id for model in await self._client.list_models()]

    async def use(self, *, team_id: str, channel_id: str, user_id: str, assistant_id: str) -> None:
        await self._bind(team_id=team_id, channel_id=channel_id, user_id=user_id, action="use", to_id=assistant_id)

    async def create(self, *, team_id: str, channel_id: str, user_id: str, spec: AssistantSpec) -> AssistantProfile:
        assistant = await self._client.create_assistant(
            model=spec.model,
            name=spec.name,
            instructions=spec.instructions or None,
            tools=[{"type": tool} for tool in spec.tools],
            metadata={"created_by": user_id, "channel": channel_id},
        )
        log.info("user %s created assistant %s for channel %s", user_id, assistant.id, channel_id)
        await self._bind(team_id=team_id, channel_id=channel_id, user_id=user_id, action="create", to_id=assistant.id)
        return AssistantProfile.of(assistant)

    async def edit(
        self, *, team_id: str, channel_id: str, user_id: str, assistant_id: str, spec: AssistantSpec
    ) -> AssistantProfile:
        current = await self._client.retrieve_assistant(assistant_id)
        # Only the built-in tools are edited here; function tools the assistant has stay as they are.
        kept = [tool for tool in current.tools if tool.get("type") not in BUILTIN_TOOLS]
        fields = {"name": spec.name, "model": spec.model, "tools": kept + [{"type": tool} for tool in spec.tools]}
        if spec.instructions is not None:
            fields["instructions"] = spec.instructions
        assistant = await self._client.update_assistant(assistant_id, **fields)
        log.info("user %s edited assistant %s from channel %s", user_id, assistant_id, channel_id)
        # The channel keeps using what it used (its own choice, or the default that was just edited).
        await self._channel_store.record_assistant_change(
            team_id=team_id, channel_id=channel_id, user_id=user_id, action="edit",
            from_id=assistant_id, to_id=assistant_id,
        )
        return AssistantProfile.of(assistant)

    async def reset(self, *, team_id: str, channel_id: str, user_id: str) -> None:
        await self._bind(team_id=team_id, channel_id=channel_id, user_id=user_id, action="reset", to_id=None)

    async def _bind(self, *, team_id: str, channel_id: str, user_id: str, action: str, to_id: str | None) -> None:
        """Point the channel at to_id (None: the default) and record who did it, from what, to what."""
        default_id = await self._directory.default_assistant()
        from_id = await self._store.channel_assistant(team_id=team_id, channel_id=channel_id) or default_id
        await self._store.set_channel_assistant(
            team_id=team_id, channel_id=channel_id, assistant_id=to_id, updated_by=user_id
        )
        await self._channel_store.record_assistant_change(
            team_id=team_id, channel_id=channel_id, user_id=user_id, action=action,
            from_id=from_id, to_id=to_id or default_id,
        )
        log.info(
            "channel %s/%s: %s by %s, %s -> %s", team_id, channel_id, action, user_id, from_id, to_id or default_id
        )

    async def usage(self, *, team_id: str, user_id: str, channel_id: str | None) -> list[UsageWindow]:
        """Tokens by this user (everywhere) and in this channel, over each window of USAGE_WINDOWS_DAYS."""
        windows = []
        for days in USAGE_WINDOWS_DAYS:
            since = utcnow() - timedelta(days=days)
            by_user = await self._channel_store.token_usage(team_id=team_id, since=since, user_id=user_id)
            by_channel = (
                await self._channel_store.token_usage(team_id=team_id, since=since, channel_id=channel_id)
                if channel_id is not None
                else TokenUsage()
            )
            windows.append(UsageWindow(days=days, by_user=by_user, by_channel=by_channel))
        return windows


class ConversationControl:
    """`new` and `forget` for the conversation a command means (see `conversation_for`)."""

    def __init__(
        self, *, client: OpenAIClient, api_objects: ApiObjects, store: Store, channel_store: ChannelStore
    ) -> None:
        self._client = client
        self._api_objects = api_objects
        self._store = store
        self._channel_store = channel_store
        self._owner = f"command-{uuid.uuid4().hex[:12]}"

    async def conversation_for(self, *, team_id: str, channel_id: str, is_dm: bool) -> Conversation | None:
        """In a DM, its rolling top-level conversation; elsewhere, the channel's most recently active one."""
        if is_dm:
            return await self._store.find_conversation(team_id=team_id, channel_id=channel_id, thread_key=DM_THREAD_KEY)
        return await self._channel_store.most_recent_conversation(team_id=team_id, channel_id=channel_id)

    async def get(self, conversation_id: int) -> Conversation | None:
        async with self._store.transaction() as session:
            return await session.get(Conversation, conversation_id)

    async def start_fresh(self, conversation: Conversation) -> str:
        """Give the conversation a new, empty API thread; the old one is kept as retired. Returns the new id."""
        thread = await self._client.create_thread(metadata={"conversation": str(conversation.id)})
        await self._channel_store.replace_api_thread(conversation, new_thread_id=thread.id)
        log.info("conversation %s: new API thread %s (was %s)", conversation.id, thread.id, conversation.api_thread_id)
        return thread.id

    async def forget(self, conversation_id: int) -> ApiObjectIds:
        """Delete the conversation's API threads, vector stores and files, then its rows.

        The lease keeps workers away meanwhile; if the API refuses a deletion the rows stay, so
        that nothing is left on the API without a record, and forgetting can be tried again.
        """
        if not await self._store.claim_conversation(
            conversation_id, owner=self._owner, lease_seconds=FORGET_LEASE_SECONDS
        ):
            raise ConversationBusy(f"conversation {conversation_id} is being answered")
        try:
            objects = await self._channel_store.api_objects(conversation_id)
            for thread_id in objects.thread_ids:
                await self._api_objects.delete_thread(thread_id)
            for vector_store_id in objects.vector_store_ids:
                await self._api_objects.delete_vector_store(vector_store_id)
            for file_id in objects.file_ids:
                await self._api_objects.delete_file(file_id)
        except BaseException:
            await self._store.release_conversation(conversation_id, owner=self._owner)
            raise
        await self._channel_store.delete_conversation(conversation_id)
        log.info(
            "conversation %s forgotten: %d threads, %d vector stores, %d files deleted",
            conversation_id, len(objects.thread_ids), len(objects.vector_store_ids), len(objects.file_ids),
        )
        return objects

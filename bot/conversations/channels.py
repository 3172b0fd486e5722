"""Per-channel assistant profiles (who may choose, choosing, the audit trail, usage) and conversation control."""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from bot.conversations.backend import Backend
from bot.conversations.profiles import BUILTIN_TOOLS, Profile, ProfileOrigin, ProfileSpec
from bot.conversations.retention import forget_memories
from bot.conversations.service import ChannelProfiles
from bot.errors import ConversationBusy, ProfileNotFound
from bot.store.channels import ChannelOptions, ChannelStore, TokenUsage
from bot.store.models import Conversation
from bot.store.repositories import Store, utcnow

log = logging.getLogger(__name__)

USAGE_WINDOWS_DAYS = (7, 30)
# Models no assistant can run on, left out of the model picker.
NON_CHAT_MODEL_WORDS = (
    "moderation",
    "embedding",
    "whisper",
    "tts",
    "dall-e",
    "image",
    "transcribe",
    "audio",
    "realtime",
)
DM_THREAD_KEY = "dm"
# Long enough for one conversation's API deletions, each bounded by the API client's own timeout.
FORGET_LEASE_SECONDS = 600.0


@dataclass(frozen=True)
class ChannelAssistant:
    """The profile a channel talks to, and whether it is the bot's default."""

    assistant: Profile
    is_default: bool


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
    """Choosing the profile a channel talks to: lookups, the permission rule, and audited changes."""

    def __init__(
        self,
        *,
        backend: Backend,
        models: ModelLister,
        profiles: ChannelProfiles,
        store: Store,
        channel_store: ChannelStore,
        admin_user_ids: Collection[str],
        allowed_profile_ids: Collection[str],
    ) -> None:
        self._backend = backend
        self._models = models
        self._profiles = profiles
        self._store = store
        self._channel_store = channel_store
        self._admin_user_ids = frozenset(admin_user_ids)
        self._allowed_profile_ids = frozenset(allowed_profile_ids)

    @property
    def backend_name(self) -> str:
        return self._backend.name

    def builtin_tools(self) -> tuple[str, ...]:
        """The built-in tools the backend in use can run, which a profile may switch on."""
        return tuple(tool for tool in BUILTIN_TOOLS if self._backend.capabilities.supports(tool))

    def is_admin(self, *, user_id: str, is_workspace_admin: bool) -> bool:
        """Workspace admins and owners, and the operator's ADMIN_USER_IDS: they may change a channel's
        assistant, see every profile of the backend, and start afresh or forget any conversation."""
        return is_workspace_admin or user_id in self._admin_user_ids

    async def current(self, *, team_id: str, channel_id: str) -> ChannelAssistant:
        profile, is_default = await self._profiles.for_channel(team_id=team_id, channel_id=channel_id)
        return ChannelAssistant(profile, is_default=is_default)

    async def default(self) -> Profile:
        return await self._backend.profiles.default()

    async def available(self) -> list[Profile]:
        """Every profile of the backend: on `assistants`, every assistant of the API organisation."""
        return await self._backend.profiles.list()

    async def of_workspace(self, profiles: list[Profile], *, team_id: str) -> list[Profile]:
        """Those of the profiles the workspace may see and bind a channel to: the default, those its
        channels use, those made in it, and the operator's ALLOWED_PROFILE_IDS.

        The API organisation (and our table, in a deployment serving several workspaces) holds other
        teams' assistants, whose instructions are theirs.
        """
        ids = {(await self.default()).id, *self._allowed_profile_ids}
        ids |= await self._channel_store.workspace_profile_ids(team_id)
        return [profile for profile in profiles if profile.id in ids]

    async def find(self, reference: str) -> list[Profile]:
        """The profile with this id, else every profile with this name (case-insensitive)."""
        try:
            return [await self._backend.profiles.get(reference)]
        except ProfileNotFound:
            wanted = reference.casefold()
            return [profile for profile in await self.available() if profile.name.casefold() == wanted]

    async def model_ids(self) -> list[str]:
        return await self._models.model_ids()

    async def use(self, *, team_id: str, channel_id: str, user_id: str, assistant_id: str) -> None:
        await self._bind(team_id=team_id, channel_id=channel_id, user_id=user_id, action="use", to_id=assistant_id)

    async def create(self, *, team_id: str, channel_id: str, user_id: str, spec: ProfileSpec) -> Profile:
        profile = await self._backend.profiles.create(
            spec, origin=ProfileOrigin(team_id=team_id, channel_id=channel_id, user_id=user_id)
        )
        log.info("user %s created profile %s for channel %s", user_id, profile.id, channel_id)
        await self._bind(team_id=team_id, channel_id=channel_id, user_id=user_id, action="create", to_id=profile.id)
        return profile

    async def edit(
        self, *, team_id: str, channel_id: str, user_id: str, assistant_id: str, spec: ProfileSpec
    ) -> Profile:
        profile = await self._backend.profiles.update(assistant_id, spec)
        log.info("user %s edited profile %s from channel %s", user_id, assistant_id, channel_id)
        # The channel keeps using what it used (its own choice, or the default that was just edited).
        await self._channel_store.record_assistant_change(
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            action="edit",
            from_id=assistant_id,
            to_id=assistant_id,
        )
        return profile

    async def reset(self, *, team_id: str, channel_id: str, user_id: str) -> None:
        await self._bind(team_id=team_id, channel_id=channel_id, user_id=user_id, action="reset", to_id=None)

    async def _bind(self, *, team_id: str, channel_id: str, user_id: str, action: str, to_id: str | None) -> None:
        """Point the channel at to_id (None: the default) and record who did it, from what, to what."""
        default_id = (await self.default()).id
        from_id = await self._profiles.chosen_id(team_id=team_id, channel_id=channel_id) or default_id
        await self._store.set_channel_profile(
            team_id=team_id, channel_id=channel_id, profile_id=to_id, updated_by=user_id
        )
        await self._channel_store.record_assistant_change(
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            action=action,
            from_id=from_id,
            to_id=to_id or default_id,
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


class ModelLister(Protocol):
    async def model_ids(self) -> list[str]: ...


@dataclass(frozen=True)
class Forgotten:
    """What forgetting a conversation deleted."""

    memories: int  # backend states (current and retired) whose server objects were deleted


class ConversationControl:
    """`new` and `forget` for the conversation a command means (see `conversation_for`)."""

    def __init__(self, *, backend: Backend, store: Store, channel_store: ChannelStore) -> None:
        self._backend = backend
        self._store = store
        self._channel_store = channel_store
        self._owner = f"command-{uuid.uuid4().hex[:12]}"

    async def may_control(self, conversation_id: int, *, user_id: str, is_admin: bool) -> bool:
        """`new` and `forget` are for the people who wrote to the bot in the conversation, and for admins:
        anyone else in the channel could otherwise wipe a memory that is not theirs."""
        return is_admin or await self._channel_store.took_part(conversation_id, user_id=user_id)

    async def conversation_for(self, *, team_id: str, channel_id: str, is_dm: bool) -> Conversation | None:
        """In a DM, its rolling top-level conversation; elsewhere, the channel's most recently active one."""
        if is_dm:
            return await self._store.find_conversation(team_id=team_id, channel_id=channel_id, thread_key=DM_THREAD_KEY)
        return await self._channel_store.most_recent_conversation(team_id=team_id, channel_id=channel_id)

    async def get(self, conversation_id: int) -> Conversation | None:
        async with self._store.transaction() as session:
            return await session.get(Conversation, conversation_id)

    async def start_fresh(self, conversation: Conversation, *, since_ts: str) -> bool:
        """The conversation's next answer starts a fresh memory knowing only what is said after ``since_ts``;
        the old one is kept as retired. False when it had no memory yet."""
        if not conversation.backend_state:
            return False
        await self._channel_store.retire_state(conversation.id, since_ts=since_ts)
        log.info("conversation %s: memory on %s retired; starting fresh", conversation.id, conversation.backend)
        return True

    async def forget(self, conversation_id: int) -> Forgotten:
        """Delete what the backend keeps for the conversation (current and retired), then its rows.

        The lease keeps workers away meanwhile; if the API refuses a deletion the rows stay, so
        that nothing is left on the API without a record, and forgetting can be tried again. A
        conversation with a message still unanswered is refused: its turns are answered first.
        """
        if not await self._store.claim_conversation(
            conversation_id, owner=self._owner, lease_seconds=FORGET_LEASE_SECONDS
        ):
            raise ConversationBusy(f"conversation {conversation_id} is being answered")
        try:
            if await self._channel_store.has_open_turns(conversation_id):
                raise ConversationBusy(f"conversation {conversation_id} has messages waiting for an answer")
            memories = await self._channel_store.backend_states(conversation_id)
            await forget_memories(self._backend, memories, conversation_id=conversation_id)
            deleted = await self._channel_store.delete_conversation(conversation_id)
        except BaseException:
            await self._store.release_conversation(conversation_id, owner=self._owner)
            raise
        if not deleted:
            # A message came in while the memory was being deleted: it is answered afresh, then forget again.
            await self._store.release_conversation(conversation_id, owner=self._owner)
            raise ConversationBusy(f"conversation {conversation_id} got a message while being forgotten")
        log.info("conversation %s forgotten: %d backend memories deleted", conversation_id, len(memories))
        return Forgotten(memories=len(memories))


class ReplyMode(str, enum.Enum):
    """When the bot speaks in a channel."""

    MENTION = "mention"  # only when mentioned
    THREAD = "thread"  # when mentioned, and to follow-ups in threads it is in
    ALL = "all"  # to every top-level message (each becomes a thread), and to follow-ups in its threads


# How long a replica trusts what it read of a channel's settings: every channel message asks, and a change
# made on another replica reaches this one within this time (one made here, at once).
SETTINGS_CACHE_SECONDS = 30.0


class ChannelSettings:
    """A channel's reply mode and feedback switch: cached reads, and audited changes."""

    def __init__(
        self,
        *,
        channel_store: ChannelStore,
        reply_without_mention: bool,
        cache_seconds: float = SETTINGS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channel_store = channel_store
        self.default_reply_mode = ReplyMode.THREAD if reply_without_mention else ReplyMode.MENTION
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: dict[tuple[str, str], tuple[float, ChannelOptions]] = {}

    async def _options(self, team_id: str, channel_id: str) -> ChannelOptions:
        key = (team_id, channel_id)
        cached = self._cached.get(key)
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        options = await self._channel_store.channel_options(team_id=team_id, channel_id=channel_id)
        self._cached[key] = (self._clock() + self._cache_seconds, options)
        return options

    async def reply_mode(self, *, team_id: str, channel_id: str) -> ReplyMode:
        chosen = (await self._options(team_id, channel_id)).reply_mode
        try:
            return ReplyMode(chosen) if chosen is not None else self.default_reply_mode
        except ValueError:
            log.warning("channel %s/%s has an unknown reply mode %r; using the default", team_id, channel_id, chosen)
            return self.default_reply_mode

    async def feedback_enabled(self, *, team_id: str, channel_id: str) -> bool:
        """Whether answers in the channel carry the feedback buttons (they do unless it was switched off)."""
        return (await self._options(team_id, channel_id)).feedback_enabled is not False

    async def set_reply_mode(self, *, team_id: str, channel_id: str, user_id: str, mode: ReplyMode) -> ReplyMode:
        """Change the channel's reply mode (the caller checked the person may); returns the mode before."""
        before = await self.reply_mode(team_id=team_id, channel_id=channel_id)
        await self._channel_store.change_channel_options(
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            changed=ChannelOptions(reply_mode=mode.value),
            setting="reply_mode",
            from_value=before.value,
            to_value=mode.value,
        )
        self._cached.pop((team_id, channel_id), None)
        log.info("channel %s/%s: reply mode %s -> %s by %s", team_id, channel_id, before.value, mode.value, user_id)
        return before

    async def set_feedback_enabled(self, *, team_id: str, channel_id: str, user_id: str, enabled: bool) -> None:
        """Switch the channel's feedback buttons on or off (the caller checked the person may)."""
        before = await self.feedback_enabled(team_id=team_id, channel_id=channel_id)
        await self._channel_store.change_channel_options(
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            changed=ChannelOptions(feedback_enabled=enabled),
            setting="feedback",
            from_value=_on_off(before),
            to_value=_on_off(enabled),
        )
        self._cached.pop((team_id, channel_id), None)
        log.info(
            "channel %s/%s: feedback %s -> %s by %s", team_id, channel_id, _on_off(before), _on_off(enabled), user_id
        )


def _on_off(enabled: bool) -> str:
    return "on" if enabled else "off"

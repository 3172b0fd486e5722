"""Repository for the command surface: assistant changes, conversation lookups, retiring and forgetting, usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, union, update

from bot.store.files import drop_file_records_of
from bot.store.models import (
    AssistantChange,
    ChannelSetting,
    ChannelSettingChange,
    Conversation,
    RetiredState,
    StoredProfile,
    TurnRecord,
)
from bot.store.repositories import OPEN_STATUSES, Store


@dataclass(frozen=True)
class BackendMemory:
    """One state a conversation has (or had) on a backend, which forgetting it must delete."""

    backend: str
    state: dict[str, Any]


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChannelOptions:
    """A channel's own choices; None where it made none (the bot's defaults apply)."""

    reply_mode: str | None = None
    feedback_enabled: bool | None = None


def _open_turn_of(conversation_id: int) -> Select[int]:
    return select(TurnRecord.id).where(
        TurnRecord.conversation_id == conversation_id, TurnRecord.status.in_(OPEN_STATUSES)
    )


class ChannelStore:
    """The reads and writes behind slash commands, over the shared Store's transactions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record_assistant_change(
        self, *, team_id: str, channel_id: str, user_id: str, action: str, from_id: str | None, to_id: str | None
    ) -> None:
        async with self._store.transaction() as session:
            session.add(
                AssistantChange(
                    team_id=team_id,
                    channel_id=channel_id,
                    user_id=user_id,
                    action=action,
                    from_profile_id=from_id,
                    to_profile_id=to_id,
                )
            )

    async def assistant_changes(self, *, team_id: str, channel_id: str) -> list[AssistantChange]:
        """The channel's changes, oldest first."""
        async with self._store.transaction() as session:
            rows = await session.scalars(
                select(AssistantChange)
                .where(AssistantChange.team_id == team_id, AssistantChange.channel_id == channel_id)
                .order_by(AssistantChange.id)
            )
            return list(rows)

    async def channel_options(self, *, team_id: str, channel_id: str) -> ChannelOptions:
        async with self._store.transaction() as session:
            setting = await session.get(ChannelSetting, (team_id, channel_id))
            if setting is None:
                return ChannelOptions()
            return ChannelOptions(reply_mode=setting.reply_mode, feedback_enabled=setting.feedback_enabled)

    async def change_channel_options(
        self,
        *,
        team_id: str,
        channel_id: str,
        user_id: str,
        changed: ChannelOptions,
        setting: str,
        from_value: str,
        to_value: str,
    ) -> None:
        """Store the channel's new reply mode or feedback switch (the fields of ``changed`` that are set) and
        record who changed ``setting`` from what to what, in one transaction."""
        async with self._store.transaction() as session:
            row = await session.get(ChannelSetting, (team_id, channel_id), with_for_update=True)
            if row is None:
                row = ChannelSetting(team_id=team_id, channel_id=channel_id)
                session.add(row)
            if changed.reply_mode is not None:
                row.reply_mode = changed.reply_mode
            if changed.feedback_enabled is not None:
                row.feedback_enabled = changed.feedback_enabled
            row.updated_by = user_id
            session.add(
                ChannelSettingChange(
                    team_id=team_id,
                    channel_id=channel_id,
                    user_id=user_id,
                    setting=setting,
                    from_value=from_value,
                    to_value=to_value,
                )
            )

    async def setting_changes(self, *, team_id: str, channel_id: str) -> list[ChannelSettingChange]:
        """The channel's reply-mode and feedback changes, oldest first."""
        async with self._store.transaction() as session:
            rows = await session.scalars(
                select(ChannelSettingChange)
                .where(ChannelSettingChange.team_id == team_id, ChannelSettingChange.channel_id == channel_id)
                .order_by(ChannelSettingChange.id)
            )
            return list(rows)

    async def workspace_profile_ids(self, team_id: str) -> set[str]:
        """The profiles a workspace uses or made: its channels' choices, and the profiles created in it."""
        chosen = select(ChannelSetting.profile_id).where(
            ChannelSetting.team_id == team_id, ChannelSetting.profile_id.is_not(None)
        )
        created = select(StoredProfile.id).where(StoredProfile.team_id == team_id)
        async with self._store.transaction() as session:
            return {str(profile_id) for profile_id in await session.scalars(union(chosen, created))}

    async def took_part(self, conversation_id: int, *, user_id: str) -> bool:
        """Whether the person wrote in the conversation to the bot (a turn of theirs is recorded there)."""
        query = select(TurnRecord.id).where(
            TurnRecord.conversation_id == conversation_id, TurnRecord.user_id == user_id
        )
        async with self._store.transaction() as session:
            return await session.scalar(query.exists().select()) or False

    async def most_recent_conversation(self, *, team_id: str, channel_id: str) -> Conversation | None:
        """The channel's conversation with the latest message (conversations without one come last)."""
        async with self._store.transaction() as session:
            return await session.scalar(
                select(Conversation)
                .where(Conversation.team_id == team_id, Conversation.channel_id == channel_id)
                .order_by(Conversation.last_message_at.desc().nulls_last(), Conversation.id.desc())
                .limit(1)
            )

    async def retire_state(self, conversation_id: int, *, since_ts: str) -> None:
        """Keep the conversation's backend state as retired (forgetting deletes it later); it starts afresh,
        remembering only what is said in the chat after ``since_ts``."""
        async with self._store.transaction() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None or conversation.backend is None or not conversation.backend_state:
                return
            session.add(
                RetiredState(
                    conversation_id=conversation.id,
                    team_id=conversation.team_id,
                    backend=conversation.backend,
                    state=conversation.backend_state,
                )
            )
            conversation.backend_state = None
            conversation.history_since = since_ts

    async def backend_states(self, conversation_id: int) -> list[BackendMemory]:
        """Every state the conversation has on a backend: its current one, then the retired ones."""
        async with self._store.transaction() as session:
            conversation = await session.get(Conversation, conversation_id)
            retired = await session.scalars(
                select(RetiredState).where(RetiredState.conversation_id == conversation_id).order_by(RetiredState.id)
            )
            memories = [BackendMemory(row.backend, row.state) for row in retired]
        if conversation is not None and conversation.backend and conversation.backend_state:
            memories.insert(0, BackendMemory(conversation.backend, conversation.backend_state))
        return memories

    async def has_open_turns(self, conversation_id: int) -> bool:
        async with self._store.transaction() as session:
            return await session.scalar(_open_turn_of(conversation_id).exists().select()) or False

    async def delete_conversation(self, conversation_id: int) -> bool:
        """The conversation's rows: its turns, retired states, uploaded-file records and itself.

        Not while a turn is unanswered: then (False) only its memory is dropped, since its server objects
        are deleted by now, and the unanswered turns are answered afresh.
        """
        async with self._store.transaction() as session:
            # FOR UPDATE (PostgreSQL): a message being recorded updates this row first, so it is either seen
            # here or waits for the delete, fails, and is delivered again by Slack into a new conversation.
            await session.scalar(select(Conversation.id).where(Conversation.id == conversation_id).with_for_update())
            if await session.scalar(_open_turn_of(conversation_id).exists().select()):
                await session.execute(delete(RetiredState).where(RetiredState.conversation_id == conversation_id))
                await session.execute(
                    update(Conversation).where(Conversation.id == conversation_id).values(backend_state=None)
                )
                return False
            await session.execute(delete(TurnRecord).where(TurnRecord.conversation_id == conversation_id))
            await session.execute(delete(RetiredState).where(RetiredState.conversation_id == conversation_id))
            await drop_file_records_of(session, conversation_id)
            await session.execute(delete(Conversation).where(Conversation.id == conversation_id))
            return True

    async def token_usage(
        self, *, team_id: str, since: datetime, user_id: str | None = None, channel_id: str | None = None
    ) -> TokenUsage:
        """Tokens of the answers to matching turns (an answer to a batch counts on the batch's last turn)."""
        query = select(
            func.coalesce(func.sum(TurnRecord.prompt_tokens), 0),
            func.coalesce(func.sum(TurnRecord.completion_tokens), 0),
        ).where(
            TurnRecord.team_id == team_id,
            TurnRecord.created_at >= since,
            TurnRecord.prompt_tokens.is_not(None),
        )
        if user_id is not None:
            query = query.where(TurnRecord.user_id == user_id)
        if channel_id is not None:
            query = query.where(TurnRecord.channel_id == channel_id)
        async with self._store.transaction() as session:
            prompt, completion = (await session.execute(query)).one()
        return TokenUsage(prompt_tokens=int(prompt or 0), completion_tokens=int(completion or 0))

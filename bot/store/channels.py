"""Repository for the command surface: assistant changes, conversation lookups, retiring and forgetting, usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from bot.store.models import ApiFile, AssistantChange, Conversation, RetiredThread, TurnRecord
from bot.store.repositories import Store


@dataclass(frozen=True)
class ApiObjectIds:
    """Everything a conversation created on the API, which forgetting it must delete."""

    thread_ids: tuple[str, ...]
    vector_store_ids: tuple[str, ...]
    file_ids: tuple[str, ...]


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


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
                    from_assistant_id=from_id,
                    to_assistant_id=to_id,
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

    async def most_recent_conversation(self, *, team_id: str, channel_id: str) -> Conversation | None:
        """The channel's conversation with the latest message (conversations without one come last)."""
        async with self._store.transaction() as session:
            return await session.scalar(
                select(Conversation)
                .where(Conversation.team_id == team_id, Conversation.channel_id == channel_id)
                .order_by(Conversation.last_message_at.desc().nulls_last(), Conversation.id.desc())
                .limit(1)
            )

    async def replace_api_thread(self, conversation: Conversation, *, new_thread_id: str) -> None:
        """Keep the conversation's current thread (and its vector store) as retired; use the new one from now on."""
        async with self._store.transaction() as session:
            if conversation.api_thread_id:
                session.add(
                    RetiredThread(
                        conversation_id=conversation.id,
                        team_id=conversation.team_id,
                        api_thread_id=conversation.api_thread_id,
                        vector_store_id=conversation.vector_store_id,
                    )
                )
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation.id)
                .values(api_thread_id=new_thread_id, vector_store_id=None)
            )

    async def api_objects(self, conversation_id: int) -> ApiObjectIds:
        async with self._store.transaction() as session:
            conversation = await session.get(Conversation, conversation_id)
            retired = list(
                await session.scalars(select(RetiredThread).where(RetiredThread.conversation_id == conversation_id))
            )
            file_ids = list(
                await session.scalars(select(ApiFile.api_file_id).where(ApiFile.conversation_id == conversation_id))
            )
        current_thread = [conversation.api_thread_id] if conversation and conversation.api_thread_id else []
        current_store = [conversation.vector_store_id] if conversation and conversation.vector_store_id else []
        return ApiObjectIds(
            thread_ids=tuple(dict.fromkeys(current_thread + [row.api_thread_id for row in retired])),
            vector_store_ids=tuple(
                dict.fromkeys(current_store + [row.vector_store_id for row in retired if row.vector_store_id])
            ),
            file_ids=tuple(dict.fromkeys(file_ids)),
        )

    async def delete_conversation(self, conversation_id: int) -> None:
        """The conversation's rows: its turns, retired threads, uploaded-file records and itself."""
        async with self._store.transaction() as session:
            await session.execute(delete(TurnRecord).where(TurnRecord.conversation_id == conversation_id))
            await session.execute(delete(RetiredThread).where(RetiredThread.conversation_id == conversation_id))
            await session.execute(delete(ApiFile).where(ApiFile.conversation_id == conversation_id))
            await session.execute(delete(Conversation).where(Conversation.id == conversation_id))

    async def token_usage(
        self, *, team_id: str, since: datetime, user_id: str | None = None, channel_id: str | None = None
    ) -> TokenUsage:
        """Tokens of the runs that answered matching turns; a run that answered several turns counts once."""
        query = select(TurnRecord.run_id, TurnRecord.prompt_tokens, TurnRecord.completion_tokens).where(
            TurnRecord.team_id == team_id,
            TurnRecord.created_at >= since,
            TurnRecord.run_id.is_not(None),
            TurnRecord.prompt_tokens.is_not(None),
        )
        if user_id is not None:
            query = query.where(TurnRecord.user_id == user_id)
        if channel_id is not None:
            query = query.where(TurnRecord.channel_id == channel_id)
        async with self._store.transaction() as session:
            rows = (await session.execute(query)).all()
        per_run = {run_id: (prompt or 0, completion or 0) for run_id, prompt, completion in rows}
        return TokenUsage(
            prompt_tokens=sum(prompt for prompt, _ in per_run.values()),
            completion_tokens=sum(completion for _, completion in per_run.values()),
        )

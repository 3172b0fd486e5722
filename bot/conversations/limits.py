"""The first input stage: messages that are too long, carry too many files or come too fast are refused."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.conversations.backend import ConversationRef
from bot.conversations.inputs import PreparedInput
from bot.conversations.ports import ReplyStream
from bot.store.limits import LimitsRepository

log = logging.getLogger(__name__)

RATE_WINDOW = timedelta(minutes=1)
TOO_LONG = (
    "Your message is {length:,} characters long; I can read at most {limit:,}. "
    "Please shorten it or send it in parts."
)
TOO_MANY_FILES = "You shared {count} files in one message; I can take at most {limit}. Please send fewer at a time."
TOO_FAST = "You've sent me more than {limit} messages in the last minute. Please wait a moment, then try again."


class LimitsStage:
    """Refuses a message before anything of it reaches the API, and says why in plain words."""

    def __init__(self, repository: LimitsRepository, *, max_chars: int, max_files: int, per_minute: int) -> None:
        self._repository = repository
        self._max_chars = max_chars
        self._max_files = max_files
        self._per_minute = per_minute

    async def process(self, item: PreparedInput, *, conversation: ConversationRef, reply: ReplyStream) -> None:
        refusal = await self.refusal(item)
        if refusal is None:
            return
        turn = item.turn
        log.info(
            "refused event %s from %s in %s/%s: %s", turn.event_id, turn.user_id, turn.team_id, turn.channel_id, refusal
        )
        item.blocked = True
        await reply.notice(refusal)

    async def refusal(self, item: PreparedInput) -> str | None:
        """Why this message may not go to the assistant, or None when it may."""
        turn = item.turn
        if len(turn.text) > self._max_chars:
            return TOO_LONG.format(length=len(turn.text), limit=self._max_chars)
        if len(turn.files) > self._max_files:
            return TOO_MANY_FILES.format(count=len(turn.files), limit=self._max_files)
        earlier = await self._repository.messages_before(team_id=turn.team_id, event_id=turn.event_id, window=RATE_WINDOW)
        if earlier is not None and earlier >= self._per_minute:
            return TOO_FAST.format(limit=self._per_minute)
        return None

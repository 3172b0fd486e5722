"""The first input stage: messages that are too long, carry too many files or come too fast are refused."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.conversations.backend import ConversationRef
from bot.conversations.inputs import PreparedInput
from bot.conversations.ports import ReplyStream
from bot.conversations.turn import PersonalNotice
from bot.store.limits import LimitsRepository

log = logging.getLogger(__name__)

RATE_WINDOW = timedelta(minutes=1)
TOO_LONG = (
    "Your message is {length:,} characters long; I can read at most {limit:,}. Please shorten it or send it in parts."
)
TOO_MANY_FILES = "You shared {count} files in one message; I can take at most {limit}. Please send fewer at a time."
TOO_FAST = (
    "You've sent me more than {limit} messages in the last minute, so I'm skipping your messages until you slow "
    "down. Please wait a moment, then try again."
)


class LimitsStage:
    """Refuses a message before anything of it reaches the API, and says why in plain words.

    Someone over the rate limit is told once per window, and only them: a public refusal for each
    message of a flood would flood the channel in turn (and spend the bot's own Slack rate limit).
    """

    def __init__(self, repository: LimitsRepository, *, max_chars: int, max_files: int, per_minute: int) -> None:
        self._repository = repository
        self._max_chars = max_chars
        self._max_files = max_files
        self._per_minute = per_minute

    async def process(self, item: PreparedInput, *, conversation: ConversationRef, reply: ReplyStream) -> None:
        turn = item.turn
        refusal = self.size_refusal(item)
        if refusal is not None:
            self._log_refusal(item, refusal)
            item.blocked = True
            await reply.notice(refusal)
            return
        if not await self.too_fast(item):
            return
        item.blocked = True
        told = await self._repository.claim_rate_notice(
            team_id=turn.team_id, event_id=turn.event_id, window=RATE_WINDOW
        )
        self._log_refusal(item, "too fast" if told else "too fast (already told)")
        if told:
            await reply.send(PersonalNotice(turn.user_id, TOO_FAST.format(limit=self._per_minute)))

    def size_refusal(self, item: PreparedInput) -> str | None:
        """Why this message is too big for the assistant, or None when it is not."""
        turn = item.turn
        if len(turn.text) > self._max_chars:
            return TOO_LONG.format(length=len(turn.text), limit=self._max_chars)
        if len(turn.files) > self._max_files:
            return TOO_MANY_FILES.format(count=len(turn.files), limit=self._max_files)
        return None

    async def too_fast(self, item: PreparedInput) -> bool:
        """Whether the person sent more than the limit in the window before this message."""
        turn = item.turn
        earlier = await self._repository.messages_before(
            team_id=turn.team_id, event_id=turn.event_id, window=RATE_WINDOW
        )
        return earlier is not None and earlier >= self._per_minute

    @staticmethod
    def _log_refusal(item: PreparedInput, reason: str) -> None:
        turn = item.turn
        log.info(
            "refused event %s from %s in %s/%s: %s", turn.event_id, turn.user_id, turn.team_id, turn.channel_id, reason
        )

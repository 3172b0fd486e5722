"""Surviving a worker's death: where an answer is shown is stored the moment the platform has it."""

from __future__ import annotations

from collections.abc import Sequence

from bot.conversations.ports import ReplyStream
from bot.conversations.turn import ReplyPart
from bot.store.models import TurnRecord
from bot.store.repositories import Store

GAVE_UP = "I tried to answer this several times and kept failing, so I've stopped. Please ask again."


def earlier_reply_ts(records: Sequence[TurnRecord]) -> str | None:
    """Where an earlier attempt at these turns began showing its answer, if it got that far."""
    return next((record.reply_ts for record in reversed(records) if record.reply_ts), None)


class RememberedReply:
    """A reply stream that stores its message's ts as soon as one is posted.

    A worker that takes over after a crash then updates that message instead of leaving it
    half-written and posting a second answer beside it.
    """

    def __init__(self, reply: ReplyStream, *, store: Store, turn_ids: Sequence[int], stored_ts: str | None) -> None:
        self._reply = reply
        self._store = store
        self._turn_ids = list(turn_ids)
        self._stored_ts = stored_ts

    @property
    def reply_ts(self) -> str | None:
        return self._reply.reply_ts

    async def remember(self) -> None:
        """Store the reply's ts if it changed (first post, or a deleted message replaced)."""
        ts = self._reply.reply_ts
        if ts is not None and ts != self._stored_ts:
            await self._store.update_turns(self._turn_ids, reply_ts=ts)
            self._stored_ts = ts

    async def send(self, part: ReplyPart) -> None:
        await self._reply.send(part)
        await self.remember()

    async def notice(self, text: str) -> None:
        await self._reply.notice(text)

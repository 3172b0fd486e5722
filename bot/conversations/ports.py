"""What the conversation service needs from the chat platform, as protocols the platform implements."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from bot.conversations.turn import HistoryMessage, ReplyPart, Turn

# The most earlier messages (the newest ones) that seed a new conversation: the platform reads no more, so
# moderation checks no more, and a thread of thousands costs a few calls.
HISTORY_LIMIT = 100


class ReplyStream(Protocol):
    """One answer being shown to people while it is written."""

    async def send(self, part: ReplyPart) -> None: ...

    async def notice(self, text: str) -> None:
        """A short note beside the answer (e.g. about a file that could not be read).

        Notices (and PersonalNotice, ReplyFailed and ReplyWithdrawn texts) are the bot's words with names
        and text people chose in them, as they are: the platform shows them as text, never as its markup.
        """
        ...

    @property
    def reply_ts(self) -> str | None:
        """Where the answer begins, once something was posted."""
        ...


class PlatformReply(ReplyStream, Protocol):
    """The platform's own stream of one answer, which the service may abandon."""

    def abandon(self) -> None:
        """Another worker owns this answer now: write nothing more, not even the note that it was cut off."""
        ...


class Platform(Protocol):
    """The chat platform as the conversation service sees it."""

    async def history(self, turn: Turn, *, since_ts: str | None = None) -> list[HistoryMessage]:
        """Messages of the conversation before this turn (and after ``since_ts``), to seed a new memory.

        The newest HISTORY_LIMIT at most; none when the platform cannot say (the answer goes on without them).
        """
        ...

    async def prepare(self, turn: Turn) -> Turn:
        """A raw turn as the assistant reads it: the speaker named, mentions as names, plain text."""
        ...

    def reply(
        self, turn: Turn, *, resume_ts: str | None = None, unrecorded_after: str | None = None
    ) -> AbstractAsyncContextManager[PlatformReply]:
        """Open the place where the answer to this turn is shown.

        ``resume_ts`` is where an earlier attempt (perhaps by a process that died) began showing
        this answer: that message is taken over instead of a new one being posted. Without it,
        ``unrecorded_after`` (the ts of the first message of a batch being retried) asks to look
        for a message an earlier attempt posted after it but died before recording.
        """
        ...

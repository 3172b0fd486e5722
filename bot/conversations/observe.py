"""What the service tells an observer about answers as people see them: timings and takeovers, in neutral terms.

The domain knows no metrics library: wiring passes an AnswerObserver (bot.metrics implements one for
Prometheus); without one, nothing is observed. Counts the database already holds (turns by outcome,
tokens, flags) are not observed here: they are read from the database when metrics are scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from bot.conversations.ports import ReplyStream
from bot.conversations.turn import ReplyCompleted, ReplyPart, TextDelta, Turn
from bot.logs import CONTENT, set_log_fields

log = logging.getLogger(__name__)


class AnswerObserver(Protocol):
    """Told how long answers take to show, and when a worker takes over an unfinished answer."""

    def first_text(self, *, surface: str, seconds: float) -> None:
        """The answer's first text was handed to the platform, ``seconds`` after the worker started on it."""
        ...

    def completed(self, *, surface: str, seconds: float) -> None:
        """The complete answer was handed to the platform, ``seconds`` after the worker started on it."""
        ...

    def lease_taken_over(self) -> None:
        """A worker took up turns an earlier attempt left unfinished (its worker died, stalled or lost the lease)."""
        ...


class NoObserver:
    """Observes nothing: the default."""

    def first_text(self, *, surface: str, seconds: float) -> None:
        return None

    def completed(self, *, surface: str, seconds: float) -> None:
        return None

    def lease_taken_over(self) -> None:
        return None


class WatchedReply:
    """A reply stream that tells the observer when text first shows and when the answer is complete.

    It sits inside the output stages (answer moderation), so it sees only text people are shown.
    """

    def __init__(
        self,
        reply: ReplyStream,
        *,
        observer: AnswerObserver,
        surface: str,
        clock: Callable[[], float],
    ) -> None:
        self._reply = reply
        self._observer = observer
        self._surface = surface
        self._clock = clock
        self._started = clock()
        self._first_text_seconds: float | None = None

    @property
    def reply_ts(self) -> str | None:
        return self._reply.reply_ts

    async def send(self, part: ReplyPart) -> None:
        await self._reply.send(part)
        if isinstance(part, TextDelta | ReplyCompleted) and part.text and self._first_text_seconds is None:
            self._first_text_seconds = self._clock() - self._started
            self._observer.first_text(surface=self._surface, seconds=self._first_text_seconds)
        if isinstance(part, ReplyCompleted):
            seconds = self._clock() - self._started
            self._observer.completed(surface=self._surface, seconds=seconds)
            first = f"{self._first_text_seconds:.2f} s" if self._first_text_seconds is not None else "never"
            log.info("answered in %.2f s (first text after %s)", seconds, first)
            log.info("answer: %s", part.text, extra=CONTENT)

    async def notice(self, text: str) -> None:
        await self._reply.notice(text)


def watch_answer(
    reply: ReplyStream,
    *,
    conversation_id: int,
    turn_ids: Sequence[int],
    turns: Sequence[Turn],
    observer: AnswerObserver,
    clock: Callable[[], float],
) -> WatchedReply:
    """Bind the batch's ids to this worker's log records, log what people wrote (as content), and watch the answer."""
    latest = turns[-1]
    set_log_fields(
        team=latest.team_id,
        channel=latest.channel_id,
        conversation=conversation_id,
        turn=",".join(str(turn_id) for turn_id in turn_ids),
    )
    for turn_id, turn in zip(turn_ids, turns, strict=True):
        log.info("message of turn %s from %s: %s", turn_id, turn.user_id, turn.text, extra=CONTENT)
    return WatchedReply(reply, observer=observer, surface=latest.surface.value, clock=clock)

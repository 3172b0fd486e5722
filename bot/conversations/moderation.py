"""Moderation: messages are checked before they reach the assistant, answers before people see them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bot.conversations.backend import ConversationRef, FileKind, InputFile
from bot.conversations.documents import document_text
from bot.conversations.files import refusal
from bot.conversations.inputs import PreparedInput
from bot.conversations.ports import Platform, PlatformReply, ReplyStream
from bot.conversations.turn import (
    HistoryMessage,
    PersonalNotice,
    ReplyCompleted,
    ReplyPart,
    ReplyWithdrawn,
    TextDelta,
    Turn,
)
from bot.errors import AnswerWithheld, APIError, ConfigurationError
from bot.openai_api.models import ModerationResponse, ModerationResult
from bot.store.moderation_log import Flag, ModerationLog

log = logging.getLogger(__name__)

# Plain words for the categories the Moderations API reports, for the people who were refused.
CATEGORY_WORDS = {
    "harassment": "harassment",
    "harassment/threatening": "threats",
    "hate": "hate",
    "hate/threatening": "hateful threats",
    "illicit": "illicit activity",
    "illicit/violent": "violent illicit activity",
    "self-harm": "self-harm",
    "self-harm/intent": "intent of self-harm",
    "self-harm/instructions": "self-harm instructions",
    "sexual": "sexual content",
    "sexual/minors": "sexual content involving minors",
    "violence": "violence",
    "violence/graphic": "graphic violence",
}
TOP_SCORES_KEPT = 3
# Each check of an answer also sends up to this much of the text before it, so that words split
# across two checks are still judged together.
ANSWER_CONTEXT_CHARS = 200

INPUT_FLAGGED = (
    ":no_entry: I didn't pass {what} to the assistant: content moderation flagged it for {categories}. "
    "Nothing of it was sent; you can keep talking to me."
)
INPUT_UNCHECKED = (
    ":warning: I couldn't check your message with content moderation just now, so I didn't send it on. "
    "Please try again in a moment."
)
ANSWER_FLAGGED = ":no_entry: I stopped this answer: content moderation flagged it for {categories}."
ANSWER_UNCHECKED = (
    ":warning: I couldn't check this answer with content moderation just now, so I'm not showing it. "
    "Please try again in a moment."
)
# What the person is told was refused, by the kind of content that was flagged.
REFUSED_CONTENT = {
    "text": "your message",
    "transcript": "your message or voice clip",
    "image": "an image you shared",
    "text+image": "your message or an image you shared",
    "transcript+image": "your message, voice clip or an image you shared",
    "document": "a file you shared",
}
# The text inside documents and data files is checked in pieces (overlapping, so that words split between
# two are still judged together), several pieces per request, up to a budget per message: a file past the
# budget is refused rather than passed on partly unchecked.
DOCUMENT_PIECE_CHARS = 8_000
DOCUMENT_PIECE_OVERLAP_CHARS = 200
DOCUMENT_PIECES_PER_REQUEST = 16
DOCUMENT_CHARS_PER_MESSAGE = 200_000
TOO_LONG_TO_CHECK = (
    f"it holds more text than content moderation checks for one message ({DOCUMENT_CHARS_PER_MESSAGE:,} characters)"
)

ModerationMode = Literal["off", "input", "output", "both"]
# A text, several texts judged one by one, or one multi-modal input (text and images) judged as a whole.
ModerationContent = str | list[str] | list[dict[str, Any]]


class ModerationAPI(Protocol):
    """The Moderations endpoint; `OpenAIClient` implements it."""

    async def create_moderation(self, input: ModerationContent, *, model: str) -> ModerationResponse: ...


@dataclass(frozen=True)
class Verdict:
    """What moderation said about one piece of content."""

    categories: tuple[str, ...] = ()  # flagged by the API or by a threshold
    top_scores: dict[str, float] = field(default_factory=dict)
    input_types: frozenset[str] = frozenset()  # what the flagged categories applied to: "text", "image"
    unavailable: bool = False  # the API failed after its retries; nothing was checked

    @property
    def flagged(self) -> bool:
        return bool(self.categories)

    def in_plain_words(self) -> str:
        words = list(dict.fromkeys(CATEGORY_WORDS.get(category, category) for category in self.categories))
        return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


@dataclass(frozen=True)
class ModerationPolicy:
    """The operator's choices: what is checked, how strictly, and what a moderation outage means."""

    mode: ModerationMode = "both"
    model: str = "omni-moderation-latest"
    thresholds: Mapping[str, float] = field(default_factory=dict)  # category -> score that flags it
    block_on_error: bool = True
    keep_text: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.thresholds) - set(CATEGORY_WORDS))
        if unknown:
            raise ConfigurationError(f"MODERATION_THRESHOLDS names unknown categories: {', '.join(unknown)}")

    @property
    def checks_input(self) -> bool:
        return self.mode in ("input", "both")

    @property
    def checks_output(self) -> bool:
        return self.mode in ("output", "both")

    def judge(self, results: Sequence[ModerationResult]) -> Verdict:
        """The API's own flags, tightened by the thresholds; several results count together."""
        flagged: set[str] = set()
        scores: dict[str, float] = {}
        input_types: set[str] = set()
        for result in results:
            hits = {category for category, hit in result.categories.items() if hit}
            hits |= {
                category
                for category, score in result.category_scores.items()
                if category in self.thresholds and score >= self.thresholds[category]
            }
            applied = result.category_applied_input_types or {}
            for category in hits:
                input_types.update(applied.get(category, ()))
            flagged |= hits
            for category, score in result.category_scores.items():
                scores[category] = max(score, scores.get(category, 0.0))
        top = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:TOP_SCORES_KEPT]
        return Verdict(
            categories=tuple(sorted(flagged)),
            top_scores={category: round(score, 4) for category, score in top},
            input_types=frozenset(input_types),
        )

    def refuses(self, verdict: Verdict) -> bool:
        return verdict.flagged or (verdict.unavailable and self.block_on_error)


class Moderator:
    """Asks the Moderations API, judges by the policy, and logs every flag."""

    def __init__(self, api: ModerationAPI, policy: ModerationPolicy, moderation_log: ModerationLog) -> None:
        self._api = api
        self.policy = policy
        self._log = moderation_log

    async def check(self, content: ModerationContent) -> Verdict:
        """One verdict on the content as a whole."""
        response = await self._ask(content)
        return Verdict(unavailable=True) if response is None else self.policy.judge(response.results)

    async def check_each(self, texts: list[str]) -> list[Verdict]:
        """One verdict per text, from one request."""
        response = await self._ask(texts)
        if response is None or len(response.results) != len(texts):
            return [Verdict(unavailable=True)] * len(texts)
        return [self.policy.judge([result]) for result in response.results]

    async def _ask(self, content: ModerationContent) -> ModerationResponse | None:
        try:
            return await self._api.create_moderation(content, model=self.policy.model)
        except APIError as exc:
            outcome = "refusing" if self.policy.block_on_error else "letting through unchecked"
            log.warning("moderation failed (%s); %s (MODERATION_ON_ERROR)", exc, outcome)
            return None

    async def record(self, verdict: Verdict, *, turn: Turn, direction: str, source: str, text: str) -> None:
        log.info(
            "moderation flagged %s %s in %s/%s from %s: %s",
            direction,
            source,
            turn.team_id,
            turn.channel_id,
            turn.user_id,
            ", ".join(verdict.categories),
        )
        await self._log.record(
            Flag(
                team_id=turn.team_id,
                channel_id=turn.channel_id,
                user_id=turn.user_id,
                direction=direction,
                source=source,
                categories=verdict.categories,
                top_scores=verdict.top_scores,
                flagged_text=text if self.policy.keep_text and text else None,
            )
        )


def moderation_content(text: str, images: list[InputFile]) -> ModerationContent | None:
    """One request's input: the text alone, or text and images together; None if there is nothing."""
    if not images:
        return text if text.strip() else None
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
    return [*parts, *({"type": "image_url", "image_url": {"url": image.data_url()}} for image in images)]


def _pieces_of(text: str) -> list[str]:
    """The text in overlapping pieces of at most DOCUMENT_PIECE_CHARS, for moderation."""
    step = DOCUMENT_PIECE_CHARS - DOCUMENT_PIECE_OVERLAP_CHARS
    starts = range(0, max(len(text) - DOCUMENT_PIECE_OVERLAP_CHARS, 1), step)
    return [text[start : start + DOCUMENT_PIECE_CHARS] for start in starts]


class ModerationStage:
    """Input stage: a message (text, transcripts, images) is checked in one call before it goes anywhere,
    then the text inside its documents and data files."""

    def __init__(self, moderator: Moderator) -> None:
        self._moderator = moderator

    async def process(self, item: PreparedInput, *, conversation: ConversationRef, reply: ReplyStream) -> None:
        if not self._moderator.policy.checks_input:
            return
        content = moderation_content(item.text, item.images)
        if content is not None:
            verdict = await self._moderator.check(content)
            if self._moderator.policy.refuses(verdict):
                # One request judges text and images together; the API only says which kinds the flags applied to.
                kinds = [
                    *(["transcript" if item.transcripts else "text"] if "text" in verdict.input_types else []),
                    *(["image"] if "image" in verdict.input_types else []),
                ]
                await self._block(item, verdict, source="+".join(kinds) or "text", text=item.text, reply=reply)
                return
        await self._check_documents(item, reply=reply)

    async def _check_documents(self, item: PreparedInput, *, reply: ReplyStream) -> None:
        """The text of the message's documents and data files, within the budget; files without text (a scan,
        a spreadsheet) have nothing to check here."""
        pieces: list[str] = []
        budget = DOCUMENT_CHARS_PER_MESSAGE
        for file in [file for file in item.files if file.kind is not FileKind.IMAGE]:
            text = (await document_text(file)).text
            if len(text) > budget:
                log.info("file %s not moderated in full (%d characters); refused", file.key, len(text))
                item.files.remove(file)
                await reply.notice(refusal(file.name, TOO_LONG_TO_CHECK))
                continue
            budget -= len(text)
            pieces += _pieces_of(text) if text.strip() else []
        for start in range(0, len(pieces), DOCUMENT_PIECES_PER_REQUEST):
            batch = pieces[start : start + DOCUMENT_PIECES_PER_REQUEST]
            for piece, verdict in zip(batch, await self._moderator.check_each(batch), strict=True):
                if self._moderator.policy.refuses(verdict):
                    await self._block(item, verdict, source="document", text=piece, reply=reply)
                    return

    async def _block(
        self, item: PreparedInput, verdict: Verdict, *, source: str, text: str, reply: ReplyStream
    ) -> None:
        """Nothing of the message goes on; its author is told why, privately, and a flag is logged."""
        item.blocked = True
        if not verdict.flagged:
            await reply.send(PersonalNotice(item.turn.user_id, INPUT_UNCHECKED))
            return
        await self._moderator.record(verdict, turn=item.turn, direction="input", source=source, text=text)
        notice = INPUT_FLAGGED.format(what=REFUSED_CONTENT[source], categories=verdict.in_plain_words())
        await reply.send(PersonalNotice(item.turn.user_id, notice))


class ScreenedHistory:
    """The platform, with the earlier messages that seed a new conversation moderated like any input.

    The platform already capped them (HISTORY_LIMIT, the newest), so a thread of thousands costs one
    moderation request of that many texts, not one of thousands of which most would be dropped anyway.
    """

    def __init__(self, platform: Platform, moderator: Moderator) -> None:
        self._platform = platform
        self._moderator = moderator

    async def history(self, turn: Turn, *, since_ts: str | None = None) -> list[HistoryMessage]:
        history = await self._platform.history(turn, since_ts=since_ts)
        said = [index for index, message in enumerate(history) if message.role == "user" and message.text.strip()]
        if not said or not self._moderator.policy.checks_input:
            return history
        verdicts = await self._moderator.check_each([history[index].text for index in said])
        refused = {
            index for index, verdict in zip(said, verdicts, strict=True) if self._moderator.policy.refuses(verdict)
        }
        if refused:
            log.info(
                "left %d of %d earlier messages out of a new conversation (moderation)", len(refused), len(history)
            )
        return [message for index, message in enumerate(history) if index not in refused]

    async def prepare(self, turn: Turn) -> Turn:
        return await self._platform.prepare(turn)

    def reply(
        self, turn: Turn, *, resume_ts: str | None = None, unrecorded_after: str | None = None
    ) -> AbstractAsyncContextManager[PlatformReply]:
        return self._platform.reply(turn, resume_ts=resume_ts, unrecorded_after=unrecorded_after)


class ModeratedAnswers:
    """Output stage: answers reach people only in pieces that passed moderation."""

    def __init__(
        self, moderator: Moderator, *, update_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._moderator = moderator
        self._update_seconds = update_seconds
        self._clock = clock

    def wrap(self, reply: ReplyStream, *, turn: Turn) -> ReplyStream:
        if not self._moderator.policy.checks_output:
            return reply
        return ModeratedReplyStream(
            reply, moderator=self._moderator, turn=turn, update_seconds=self._update_seconds, clock=self._clock
        )


class ModeratedReplyStream:
    """Holds streamed text back until it passed moderation; at most one check per update interval."""

    def __init__(
        self,
        inner: ReplyStream,
        *,
        moderator: Moderator,
        turn: Turn,
        update_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self._inner = inner
        self._moderator = moderator
        self._turn = turn
        self._update_seconds = update_seconds
        self._clock = clock
        self._received = ""  # all streamed text so far
        self._passed = ""  # the prefix of it that passed moderation and went on
        self._last_check = float("-inf")

    @property
    def reply_ts(self) -> str | None:
        return self._inner.reply_ts

    async def notice(self, text: str) -> None:
        await self._inner.notice(text)

    async def send(self, part: ReplyPart) -> None:
        if isinstance(part, TextDelta):
            self._received += part.text
            if self._clock() - self._last_check >= self._update_seconds:
                unchecked = self._received[len(self._passed) :]
                await self._check(unchecked, after=self._passed)
                self._passed = self._received
                await self._inner.send(TextDelta(unchecked))
                # Taken after the update, so the renderer's own interval has passed too when the next one is due.
                self._last_check = self._clock()
        elif isinstance(part, ReplyCompleted):
            # The final text normally repeats what streamed; only what was not checked yet is checked now.
            checked = self._passed if part.text.startswith(self._passed) else ""
            await self._check(part.text[len(checked) :], after=checked)
            await self._inner.send(part)
        else:
            await self._inner.send(part)

    async def _check(self, unchecked: str, *, after: str) -> None:
        """Check new text, led by the end of the text that passed before it; withhold the answer if refused."""
        if not unchecked.strip():
            return
        tail = after[-ANSWER_CONTEXT_CHARS:]
        context = tail if len(after) <= ANSWER_CONTEXT_CHARS else tail.partition(" ")[2]  # from a word's start
        text = context + unchecked
        verdict = await self._moderator.check(text)
        if not self._moderator.policy.refuses(verdict):
            return
        if verdict.flagged:
            await self._moderator.record(verdict, turn=self._turn, direction="output", source="answer", text=text)
            await self._inner.send(ReplyWithdrawn(ANSWER_FLAGGED.format(categories=verdict.in_plain_words())))
            raise AnswerWithheld(f"moderation flagged the answer ({', '.join(verdict.categories)})")
        await self._inner.send(ReplyWithdrawn(ANSWER_UNCHECKED))
        raise AnswerWithheld("the answer could not be moderated")

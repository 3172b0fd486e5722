"""Showing answers in Slack: one message updated in place while it streams, split when long."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations.ports import HISTORY_LIMIT
from bot.conversations.turn import (
    HistoryMessage,
    PersonalNotice,
    ReplyCompleted,
    ReplyFailed,
    ReplyPart,
    ReplyWithdrawn,
    Surface,
    TextDelta,
    Turn,
)
from bot.errors import DeliveryError, PlatformUnavailable
from bot.slack.directory import UserDirectory
from bot.slack.files import share_answer_files
from bot.slack.render import footnotes, notice_mrkdwn, render_reply
from bot.slack.text import mentioned_user_ids, to_plain_text

log = logging.getLogger(__name__)

THINKING = "_Thinking…_"
EMPTY_ANSWER = "_(The assistant returned an empty answer.)_"
INTERRUPTED = ":warning: Something went wrong while I was answering. I'll try again shortly."
ASSISTANT_STATUS = "is thinking…"
# How many messages after an interrupted batch's first one are searched for its unrecorded answer.
UNRECORDED_SEARCH_LIMIT = 100
# Metadata on the second and later messages of a long answer, naming the answer's first message,
# so a worker taking over after a crash finds every message of the answer, not just the first.
ANSWER_PART_EVENT = "assistant_answer_part"
# Errors of Slack's own that pass, as opposed to refusals (channel_not_found, not_in_channel, missing_scope)
# that the same call meets again. `ratelimited` arrives only after the SDK's retry handler gave up waiting.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)
HISTORY_PAGE_SIZE = 200
# A thread is read oldest first (Slack has no newest-first replies), so an enormous one costs this many
# calls at most; past them the newest HISTORY_LIMIT messages read so far seed the conversation.
HISTORY_MAX_PAGES = 10
# What the connection retry handler lets through once its retries are spent.
CONNECTION_ERRORS = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class BotIdentity:
    user_id: str
    bot_id: str


def _slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")


def _delivery_failure(exc: SlackApiError, method: str) -> DeliveryError | PlatformUnavailable:
    """A refusal that the same call would meet again ends the answer; a failure of Slack's that passes does not."""
    error = _slack_error(exc)
    if error in TRANSIENT_ERRORS or exc.response.status_code >= 500:
        return PlatformUnavailable(f"{method}: {error}")
    return DeliveryError(f"{method}: {error}")


class SlackReplyStream:
    """The Slack messages that show one answer; updated no more often than `update_seconds`."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str | None,
        in_assistant_pane: bool,
        message_chars: int,
        update_seconds: float,
        resume_ts: str | None = None,
        resumed_parts: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._in_assistant_pane = in_assistant_pane
        self._message_chars = message_chars
        self._update_seconds = update_seconds
        self._clock = clock
        # (ts, text) of each message, in order; a resumed answer takes over the messages already shown.
        self._posted: list[tuple[str, str]] = [(ts, "") for ts in (resume_ts, *resumed_parts)] if resume_ts else []
        self._markdown = ""
        self._last_shown = float("-inf")
        self.finished = False
        self._abandoned = False

    @property
    def reply_ts(self) -> str | None:
        return self._posted[0][0] if self._posted else None

    async def open(self) -> None:
        if self._in_assistant_pane and self._thread_ts:
            await self._set_status(ASSISTANT_STATUS)
        elif not self._posted:
            await self._show([THINKING])
        # A resumed answer keeps what people already see until the new text replaces it.

    async def _set_status(self, status: str) -> None:
        if self._thread_ts is None:
            return  # Slack shows a status only on a thread
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._channel, thread_ts=self._thread_ts, status=status
            )
        except SlackApiError as exc:
            log.info("could not set the assistant status: %s", exc.response.get("error"))

    async def send(self, part: ReplyPart) -> None:
        if isinstance(part, TextDelta):
            self._markdown += part.text
            if self._clock() - self._last_shown >= self._update_seconds:
                try:
                    # Growing text never needs fewer messages; a resumed answer streamed again from its start
                    # keeps the later messages it took over, so they are updated in place and not reposted.
                    await self._show(render_reply(self._markdown, limit=self._message_chars), keep_rest=True)
                except PlatformUnavailable as exc:
                    # A later update, or the final one (which must get through), shows this text too.
                    log.info("skipped an update of a streaming answer: %s", exc)
        elif isinstance(part, ReplyCompleted):
            text = await self._share_files(part) if part.files or part.withheld else part.text
            text += footnotes(part.citations)
            self._markdown = text
            await self._show(render_reply(text, limit=self._message_chars) or [EMPTY_ANSWER])
            self.finished = True
        elif isinstance(part, ReplyFailed):
            shown = render_reply(self._markdown, limit=self._message_chars)
            await self._show([*shown, f":warning: {notice_mrkdwn(part.reason)}"])
            self.finished = True
        elif isinstance(part, ReplyWithdrawn):
            await self._withdraw(part.notice)
        elif isinstance(part, PersonalNotice):
            await self._personal_notice(part.user_id, part.text)

    async def _withdraw(self, notice: str) -> None:
        self._markdown = ""
        await self._show([notice_mrkdwn(notice)] if notice else [])
        self.finished = True
        if not notice and self._in_assistant_pane and self._thread_ts:
            # Nothing was posted, so Slack would keep showing "is thinking…" in the pane.
            await self._set_status("")

    async def _share_files(self, answer: ReplyCompleted) -> str:
        """Share the files the assistant made in this conversation first, so the answer can link to them."""
        text, refused = await share_answer_files(
            self._client, channel=self._channel, thread_ts=self._thread_ts, answer=answer
        )
        for name in refused:
            await self.notice(f":warning: I couldn't share *{name}*, a file the assistant made, here.")
        for withheld in answer.withheld:
            await self.notice(
                f":warning: I couldn't share *{withheld.name}*, a file the assistant made: {withheld.reason}."
            )
        return text

    async def notice(self, text: str) -> None:
        await self._call("chat_postMessage", channel=self._channel, thread_ts=self._thread_ts, text=notice_mrkdwn(text))

    async def _personal_notice(self, user_id: str, text: str) -> None:
        # The assistant pane is a private conversation with the bot already: a plain reply is private there.
        if not self._in_assistant_pane:
            try:
                await self._client.chat_postEphemeral(
                    channel=self._channel, user=user_id, thread_ts=self._thread_ts, text=notice_mrkdwn(text)
                )
                return
            except SlackApiError as exc:
                log.info("could not post an ephemeral notice (%s); posting it in the thread", exc.response.get("error"))
        await self.notice(text)

    def abandon(self) -> None:
        """Another worker took this answer over: what this stream would still write is stale."""
        self._abandoned = True

    async def close(self) -> None:
        """An answer cut off by an unexpected error must not leave 'Thinking…' behind."""
        if not self.finished and self._posted and not self._abandoned:
            shown = render_reply(self._markdown, limit=self._message_chars)
            # In the answer's own message when it fits, so that the worker resuming it takes over one message.
            chunks = (
                [*shown[:-1], f"{shown[-1]}\n\n{INTERRUPTED}"]
                if shown and len(shown[-1]) + len(INTERRUPTED) + 2 <= self._message_chars
                else [*shown, INTERRUPTED]
            )
            try:
                await self._show(chunks)
            except (DeliveryError, PlatformUnavailable) as exc:
                # Best effort: whatever cut the answer off (a cancellation too) must go on, not this.
                log.warning("could not mark an interrupted answer: %s", exc)

    async def _show(self, chunks: list[str], *, keep_rest: bool = False) -> None:
        """Show chunks in the posted messages (posting more as needed); the ones left over are deleted unless
        ``keep_rest``."""
        if self._abandoned:
            return  # over the new owner's text, or its finished answer
        self._last_shown = self._clock()
        for index, chunk in enumerate(chunks):
            if index < len(self._posted):
                ts, text = self._posted[index]
                if text != chunk:
                    self._posted[index] = (await self._update(ts, chunk), chunk)
            else:
                self._posted.append((await self._post(chunk), chunk))
        if keep_rest:
            return
        for ts, _ in self._posted[len(chunks) :]:
            await self._call("chat_delete", channel=self._channel, ts=ts, ignore=("message_not_found",))
        del self._posted[len(chunks) :]

    async def _post(self, text: str) -> str:
        metadata = (
            {"event_type": ANSWER_PART_EVENT, "event_payload": {"answer_ts": self._posted[0][0]}}
            if self._posted
            else None
        )
        response = await self._call(
            "chat_postMessage", channel=self._channel, thread_ts=self._thread_ts, text=text, metadata=metadata
        )
        ts: str = response["ts"]
        return ts

    async def _update(self, ts: str, text: str) -> str:
        response = await self._call(
            "chat_update", channel=self._channel, ts=ts, text=text, ignore=("message_not_found",)
        )
        if response.get("error") == "message_not_found":
            # Someone deleted the message we were updating: show the text in a new one.
            return await self._post(text)
        return ts

    async def _call(self, method: str, *, ignore: tuple[str, ...] = (), **arguments: Any) -> Any:
        try:
            return await getattr(self._client, method)(**arguments)
        except SlackApiError as exc:
            if exc.response.get("error") in ignore:
                return exc.response
            raise _delivery_failure(exc, method.replace("_", ".")) from exc
        except CONNECTION_ERRORS as exc:
            raise PlatformUnavailable(f"{method.replace('_', '.')}: {type(exc).__name__}") from exc


def _is_answer_part(message: dict[str, Any], *, of: str | None = None) -> bool:
    """A later message of a long answer (of the answer starting at `of`, when given)."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != ANSWER_PART_EVENT:
        return False
    return of is None or (metadata.get("event_payload") or {}).get("answer_ts") == of


class SlackPlatform:
    """The conversation service's view of Slack: thread history in, answers out."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        identity: BotIdentity,
        users: UserDirectory,
        message_chars: int,
        update_seconds: float,
    ) -> None:
        self._client = client
        self._identity = identity
        self._users = users
        self._message_chars = message_chars
        self._update_seconds = update_seconds

    async def history(self, turn: Turn, *, since_ts: str | None = None) -> list[HistoryMessage]:
        if turn.surface is Surface.DM or turn.thread_key == turn.message_ts:
            return []  # nothing was said before this message in this conversation
        try:
            earlier = await self._earlier_messages(turn, since_ts=since_ts)
        except (SlackApiError, *CONNECTION_ERRORS) as exc:
            # A thread gone, a scope missing, a rate limit outlasting the retries: the question still deserves
            # an answer, and failing here would only fail again on every retry.
            log.warning(
                "could not read the earlier messages of thread %s in %s (%s); answering without the earlier messages",
                turn.thread_key,
                turn.channel_id,
                _slack_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__,
            )
            return []
        speakers = {m["user"] for m in earlier if m.get("user")}
        for m in earlier:
            speakers.update(mentioned_user_ids(m["text"]))
        names = await self._users.names(sorted(speakers), team_id=turn.team_id)
        history = []
        for message in earlier:
            text = to_plain_text(message["text"], user_names=names)
            if self._is_ours(message):
                history.append(HistoryMessage(role="assistant", text=text))
            else:
                speaker = names.get(message.get("user", ""), message.get("username") or "someone")
                history.append(HistoryMessage(role="user", text=f"{speaker}: {text}"))
        return history

    async def _earlier_messages(self, turn: Turn, *, since_ts: str | None) -> list[dict[str, Any]]:
        """The thread's newest HISTORY_LIMIT messages with text before the turn (and after since_ts), oldest first.

        Slack lists replies oldest first only, so the thread is paged through, keeping the newest so far.
        """
        after = float(since_ts) if since_ts else 0.0
        kept: deque[dict[str, Any]] = deque(maxlen=HISTORY_LIMIT)
        cursor = None
        for _ in range(HISTORY_MAX_PAGES):
            response = await self._client.conversations_replies(
                channel=turn.channel_id,
                ts=turn.thread_key,
                oldest=since_ts,
                latest=turn.message_ts,
                limit=HISTORY_PAGE_SIZE,
                cursor=cursor,
            )
            page: list[dict[str, Any]] = response.get("messages", [])
            kept.extend(
                message
                for message in page
                if after < float(message.get("ts", "0")) < float(turn.message_ts) and message.get("text")
            )
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor or not response.get("has_more", True):
                return list(kept)
        log.info(
            "thread %s in %s is longer than %d pages; the newest messages of those seed the conversation",
            turn.thread_key,
            turn.channel_id,
            HISTORY_MAX_PAGES,
        )
        return list(kept)

    async def _answer_parts(self, turn: Turn, *, answer_ts: str) -> tuple[str, ...]:
        """The later messages of a long answer an earlier attempt was showing, in order."""
        messages = await self._messages_after(turn, after_ts=answer_ts)
        parts = [
            message["ts"]
            for message in messages or []
            if self._is_ours(message) and _is_answer_part(message, of=answer_ts)
        ]
        return tuple(sorted(parts, key=float))

    async def _messages_after(self, turn: Turn, *, after_ts: str) -> list[dict[str, Any]] | None:
        """Messages of the turn's reply place posted after `after_ts`; None when Slack would not say."""
        try:
            if turn.reply_thread_ts:
                response = await self._client.conversations_replies(
                    channel=turn.channel_id,
                    ts=turn.reply_thread_ts,
                    oldest=after_ts,
                    limit=UNRECORDED_SEARCH_LIMIT,
                    include_all_metadata=True,
                )
            else:
                response = await self._client.conversations_history(
                    channel=turn.channel_id,
                    oldest=after_ts,
                    limit=UNRECORDED_SEARCH_LIMIT,
                    include_all_metadata=True,
                )
        except SlackApiError as exc:
            log.info("could not look for an interrupted answer: %s", exc.response.get("error"))
            return None
        return response.get("messages", [])

    async def _unrecorded_answer(self, turn: Turn, *, after_ts: str) -> str | None:
        """The first message an earlier attempt posted but died before recording: 'Thinking…' or a cut-off answer.

        A finished answer never looks like either, and only one worker answers a conversation at a
        time, so such a message of ours after the batch's first message is this answer's to take over.
        """
        messages = await self._messages_after(turn, after_ts=after_ts)
        if messages is None:
            return None
        found = [
            message["ts"]
            for message in messages
            if self._is_ours(message)
            and not _is_answer_part(message)
            and (message.get("text") == THINKING or message.get("text", "").endswith(INTERRUPTED))
        ]
        return min(found, key=float) if found else None

    def _is_ours(self, message: dict[str, Any]) -> bool:
        return message.get("user") == self._identity.user_id or message.get("bot_id") == self._identity.bot_id

    @asynccontextmanager
    async def reply(
        self, turn: Turn, *, resume_ts: str | None = None, unrecorded_after: str | None = None
    ) -> AsyncIterator[SlackReplyStream]:
        if resume_ts is None and unrecorded_after is not None:
            resume_ts = await self._unrecorded_answer(turn, after_ts=unrecorded_after)
        resumed_parts = await self._answer_parts(turn, answer_ts=resume_ts) if resume_ts else ()
        stream = SlackReplyStream(
            self._client,
            channel=turn.channel_id,
            thread_ts=turn.reply_thread_ts,
            in_assistant_pane=turn.surface is Surface.ASSISTANT,
            message_chars=self._message_chars,
            update_seconds=self._update_seconds,
            resume_ts=resume_ts,
            resumed_parts=resumed_parts,
        )
        await stream.open()
        try:
            yield stream
        finally:
            await stream.close()

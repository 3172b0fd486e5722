"""Showing answers in Slack: one message updated in place while it streams, split when long."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations.ports import HISTORY_LIMIT
from bot.conversations.turn import (
    DraftImage,
    HistoryMessage,
    PersonalNotice,
    ReasoningNote,
    ReplyCompleted,
    ReplyFailed,
    ReplyPart,
    ReplyStopped,
    ReplyWithdrawn,
    Surface,
    TextDelta,
    ToolActivity,
    Turn,
)
from bot.errors import DeliveryError, PlatformUnavailable
from bot.slack.api_errors import CONNECTION_ERRORS, delivery_failure, slack_error
from bot.slack.clients import BotIdentity, SlackClients
from bot.slack.directory import UserDirectory
from bot.slack.files import DraftImages, EarlierShares, delete_files, earlier_shares, share_answer_files
from bot.slack.progress import STATUS_REFRESH_SECONDS, AgentSession, Refusals, ThreadStatus
from bot.slack.render import (
    STOP_ACTION,
    STOPPED_NOTE,
    feedback_block,
    footnotes,
    message_blocks,
    notice_mrkdwn,
    render_reply,
    stop_button,
)
from bot.slack.streaming import STREAMING_REFUSALS, NativeStream
from bot.slack.text import mentioned_user_ids, to_plain_text

log = logging.getLogger(__name__)

THINKING = "_Thinking…_"
EMPTY_ANSWER = "_(The assistant returned an empty answer.)_"
INTERRUPTED = ":warning: Something went wrong while I was answering. I'll try again shortly."
# What a message taken over from a native stream is known to show: never a rendered chunk, so it is updated.
STREAMED = "\0streamed"
# How many messages after an interrupted batch's first one are searched for its unrecorded answer.
UNRECORDED_SEARCH_LIMIT = 100
# Metadata on the second and later messages of a long answer, naming the answer's first message,
# so a worker taking over after a crash finds every message of the answer, not just the first.
ANSWER_PART_EVENT = "assistant_answer_part"
HISTORY_PAGE_SIZE = 200
# A thread is read oldest first (Slack has no newest-first replies), so an enormous one costs this many
# calls at most; past them the newest HISTORY_LIMIT messages read so far seed the conversation.
HISTORY_MAX_PAGES = 10
# A pane thread is titled when no one but the bot spoke in it before: a few messages tell.
TITLE_CHECK_LIMIT = 5
TITLE_CHARS = 60


class SlackReplyStream:
    """The Slack messages that show one answer, streamed natively in a thread where Slack allows it.

    Elsewhere, and from the moment Slack stops a native stream (refused, idle too long, or full), the answer goes
    on by post-and-update: its messages are updated in place no more often than `update_seconds`, split when long.
    """

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
        native: NativeStream | None = None,
        status: ThreadStatus | None = None,
        agent_session: AgentSession | None = None,
        stop_key: str | None = None,
        feedback: bool = False,
        on_stream_refused: Callable[[], None] = lambda: None,
        earlier: EarlierShares | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._in_assistant_pane = in_assistant_pane
        self._message_chars = message_chars
        self._update_seconds = update_seconds
        self._clock = clock
        # (ts, text, blocks) of each message, in order; a resumed answer takes over the messages already shown.
        self._posted: list[tuple[str, str, list[dict[str, Any]] | None]] = (
            [(ts, "", None) for ts in (resume_ts, *resumed_parts)] if resume_ts else []
        )
        self._native = native
        self._status = status
        self._agent_session = agent_session
        self._stop_key = stop_key
        self._feedback = feedback
        self._on_stream_refused = on_stream_refused
        self._drafts = DraftImages(client, channel=channel, thread_ts=thread_ts, clock=clock)
        self._earlier = earlier or EarlierShares()
        self._markdown = ""
        self._last_shown = float("-inf")
        self.finished = False
        self._abandoned = False

    @property
    def reply_ts(self) -> str | None:
        if self._posted:
            return self._posted[0][0]
        return self._native.ts if self._native is not None else None

    async def open(self) -> None:
        if self._agent_session is not None and await self._agent_session.start():
            self._stop_key = None  # Slack shows its own stop button on an agent session
        if self._native is not None and self._stop_key:
            # A streamed message takes no blocks of its own until it stops: the Stop button is streamed into it, and
            # the final update, which says every block, takes it away.
            self._native.add_blocks([stop_button(self._stop_key)])
        # The status is shown where nothing else says the bot is at work: Slack drops it as soon as a reply is
        # posted, so under a 'Thinking…' message it would only flicker.
        shows_status = (self._native is not None or self._in_assistant_pane) and (
            self._status is not None and await self._status.show()
        )
        if self._native is not None:
            if not shows_status:
                # Nothing else would say the bot is at work: the message starts now, with its Stop button.
                await self._start_native()
                await self._after_native_call()
        elif not self._posted and not shows_status:
            await self._show([THINKING], in_progress=True)
        elif self._posted and self._thread_ts is not None:
            await self._stop_earlier_stream(self._posted[0][0])
        # A resumed answer keeps what people already see until the new text replaces it.

    async def _stop_earlier_stream(self, ts: str) -> None:
        """A worker that died while streaming left its message streaming: stopped, it is updated like any other."""
        try:
            await self._client.chat_stopStream(channel=self._channel, ts=ts)
        except SlackApiError as exc:
            # message_not_in_streaming_state: it was posted and updated, or Slack ended its stream already.
            log.debug("the resumed answer's message was not streaming: %s", slack_error(exc))
        except CONNECTION_ERRORS as exc:
            log.info("could not stop the resumed answer's stream: %s", type(exc).__name__)

    async def send(self, part: ReplyPart) -> None:
        if self._abandoned:
            return  # over the new owner's text, or its finished answer
        if self.finished and isinstance(part, (TextDelta, ToolActivity, ReasoningNote, DraftImage)):
            return  # a stopped (or otherwise ended) answer shows nothing more
        if isinstance(part, TextDelta):
            self._markdown += part.text
            if self._native is not None:
                await self._stream_text(part.text)
            if self._native is None and self._clock() - self._last_shown >= self._update_seconds:
                await self._show_progress()
        elif isinstance(part, ToolActivity):
            if self._status is not None:
                await self._status.follow(part)
            if self._native is not None:
                await self._stream_task(part)
        elif isinstance(part, ReasoningNote):
            if self._status is not None:
                await self._status.follow(part)
        elif isinstance(part, DraftImage):
            await self._drafts.show(part)
        elif isinstance(part, ReplyCompleted):
            text = await self._share_files(part) if part.files or part.withheld else part.text
            await self._drafts.clear()  # the finished image is in the thread now
            text += footnotes(part.citations)
            self._markdown = text
            await self._leave_native_stream()
            await self._show(render_reply(text, limit=self._message_chars) or [EMPTY_ANSWER], finished_answer=True)
            self.finished = True
        elif isinstance(part, ReplyFailed):
            await self._leave_native_stream()
            shown = render_reply(self._markdown, limit=self._message_chars)
            await self._show([*shown, f":warning: {notice_mrkdwn(part.reason)}"])
            self.finished = True
        elif isinstance(part, ReplyStopped):
            await self._leave_native_stream()
            await self._show(self._with_ending(render_reply(self._markdown, limit=self._message_chars), STOPPED_NOTE))
            self.finished = True
        elif isinstance(part, ReplyWithdrawn):
            await self._leave_native_stream()
            await self._withdraw(part.notice)
        elif isinstance(part, PersonalNotice):
            await self._personal_notice(part.user_id, part.text)

    async def _stream_text(self, text: str) -> None:
        """Text into the native stream; a stream that cannot take it (full, stopped by Slack) is left behind."""
        assert self._native is not None
        if not self._native.has_room(text):
            # The rest continues in messages of its own, posted and updated, where the crash recovery's metadata
            # can mark them (a streamed message takes metadata only when it stops).
            await self._leave_native_stream()
            return
        if self._native.ts is None:
            # The first words start the message, so they show at once rather than an interval later. A worker
            # dying before the message is recorded leaves it with its Stop button, which the next one takes over.
            self._native.queue_text(text)
            await self._start_native()
        else:
            await self._native.add_text(text)
        await self._after_native_call(placeholder=False)  # the text itself follows at once

    async def _stream_task(self, activity: ToolActivity) -> None:
        assert self._native is not None
        if self._native.ts is None:
            self._native.queue_task(activity)
            await self._start_native()
        else:
            await self._native.add_task(activity)
        await self._after_native_call()

    async def _replying(self) -> None:
        """A message is about to be posted in the thread, and Slack drops the thread's status when it is: the
        status is no longer refreshed (a refresh landing after the post would bring it back)."""
        if self._status is not None:
            await self._status.replied()

    async def _start_native(self) -> None:
        assert self._native is not None
        if self._native.ts is None:
            await self._replying()
            await self._native.start()

    async def _after_native_call(self, *, placeholder: bool = True) -> None:
        if self._native is None:
            return
        if self._native.ended is not None:
            if self._native.ended in STREAMING_REFUSALS:
                self._on_stream_refused()
            await self._leave_native_stream(placeholder=placeholder)

    async def _leave_native_stream(self, *, placeholder: bool = False) -> None:
        """Stop the native stream; its message is taken over and shown again, as rendered, by post-and-update.

        With ``placeholder``, an answer that showed nothing yet (and has no status saying it is at work) shows
        'Thinking…' until its text comes.
        """
        native, self._native = self._native, None
        if native is None:
            return
        try:
            await native.stop()
        except (DeliveryError, PlatformUnavailable) as exc:
            log.info("could not stop a streaming answer (%s); updating it anyway", exc)
        if native.ts is not None:
            # Never equal to a rendered chunk, so the next show updates it with the answer as rendered.
            self._posted = [(native.ts, STREAMED, None)]
        self._last_shown = float("-inf")
        if placeholder and not self._posted and not (self._status is not None and self._status.shown):
            await self._show([THINKING], in_progress=True)

    async def _show_progress(self) -> None:
        try:
            # Growing text never needs fewer messages; a resumed answer streamed again from its start
            # keeps the later messages it took over, so they are updated in place and not reposted.
            await self._show(render_reply(self._markdown, limit=self._message_chars), keep_rest=True, in_progress=True)
        except PlatformUnavailable as exc:
            # A later update, or the final one (which must get through), shows this text too.
            log.info("skipped an update of a streaming answer: %s", exc)

    def _with_ending(self, shown: list[str], ending: str) -> list[str]:
        """The ending in the answer's last message when it fits, so a worker resuming it takes over one message."""
        if shown and len(shown[-1]) + len(ending) + 2 <= self._message_chars:
            return [*shown[:-1], f"{shown[-1]}\n\n{ending}"]
        return [*shown, ending]

    async def _withdraw(self, notice: str) -> None:
        self._markdown = ""
        await self._show([notice_mrkdwn(notice)] if notice else [])
        self.finished = True

    async def _share_files(self, answer: ReplyCompleted) -> str:
        """Share the files the assistant made in this conversation first, so the answer can link to them."""
        text, refused = await share_answer_files(
            self._client,
            channel=self._channel,
            thread_ts=self._thread_ts,
            answer=answer,
            already_shared=self._earlier.finished,
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
        """An answer cut off by an unexpected error must not leave 'Thinking…' (or a live stream) behind."""
        try:
            if not self.finished and not self._abandoned:
                await self._leave_native_stream()
                if self._posted:
                    shown = render_reply(self._markdown, limit=self._message_chars)
                    await self._show(self._with_ending(shown, INTERRUPTED))
        except (DeliveryError, PlatformUnavailable) as exc:
            # Best effort: whatever cut the answer off (a cancellation too) must go on, not this.
            log.warning("could not mark an interrupted answer: %s", exc)
        finally:
            await self._drafts.clear()  # however the answer ended, a draft is not left behind
            if self._status is not None:
                await self._status.clear(quietly=self._abandoned)
            if self._agent_session is not None and not self._abandoned:
                await self._agent_session.end()

    def _buttons(self, *, in_progress: bool, finished_answer: bool) -> list[dict[str, Any]]:
        """Buttons under the answer's last message: Stop while it is written, feedback once it is done."""
        if finished_answer and self._feedback and self._posted:
            return [feedback_block(self._posted[0][0])]
        if in_progress and self._stop_key:
            return [stop_button(self._stop_key)]
        return []

    async def _show(
        self, chunks: list[str], *, keep_rest: bool = False, in_progress: bool = False, finished_answer: bool = False
    ) -> None:
        """Show chunks in the posted messages (posting more as needed); the ones left over are deleted unless
        ``keep_rest``. The last one carries the answer's buttons."""
        if self._abandoned:
            return  # over the new owner's text, or its finished answer
        self._last_shown = self._clock()
        first_posted_now = not self._posted
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            buttons = self._buttons(in_progress=in_progress, finished_answer=finished_answer) if last else []
            await self._show_chunk(index, chunk, buttons)
        if finished_answer and self._feedback and first_posted_now and len(chunks) == 1:
            # The answer's one message was posted just now, and its feedback names it: it is updated once more.
            await self._show_chunk(0, chunks[0], self._buttons(in_progress=False, finished_answer=True))
        if chunks and self._status is not None:
            await self._status.clear()  # the answer shows now (a no-op once a post in the thread dropped it)
        if keep_rest:
            return
        for ts, _, _ in self._posted[len(chunks) :]:
            await self._call("chat_delete", channel=self._channel, ts=ts, ignore=("message_not_found",))
        del self._posted[len(chunks) :]

    async def _show_chunk(self, index: int, chunk: str, extra: list[dict[str, Any]]) -> None:
        blocks = message_blocks(chunk, extra=extra)
        if index < len(self._posted):
            ts, text, shown_blocks = self._posted[index]
            if (text, shown_blocks) != (chunk, blocks):
                self._posted[index] = (await self._update(ts, chunk, blocks), chunk, blocks)
        else:
            self._posted.append((await self._post(chunk, blocks), chunk, blocks))

    async def _post(self, text: str, blocks: list[dict[str, Any]]) -> str:
        await self._replying()
        metadata = (
            {"event_type": ANSWER_PART_EVENT, "event_payload": {"answer_ts": self._posted[0][0]}}
            if self._posted
            else None
        )
        response = await self._call(
            "chat_postMessage",
            channel=self._channel,
            thread_ts=self._thread_ts,
            text=text,
            blocks=blocks,
            metadata=metadata,
        )
        ts: str = response["ts"]
        return ts

    async def _update(self, ts: str, text: str, blocks: list[dict[str, Any]]) -> str:
        response = await self._call(
            "chat_update", channel=self._channel, ts=ts, text=text, blocks=blocks, ignore=("message_not_found",)
        )
        if response.get("error") == "message_not_found":
            # Someone deleted the message we were updating: show the text in a new one.
            return await self._post(text, blocks)
        return ts

    async def _call(self, method: str, *, ignore: tuple[str, ...] = (), **arguments: Any) -> Any:
        try:
            return await getattr(self._client, method)(**arguments)
        except SlackApiError as exc:
            if exc.response.get("error") in ignore:
                return exc.response
            raise delivery_failure(exc, method.replace("_", ".")) from exc
        except CONNECTION_ERRORS as exc:
            raise PlatformUnavailable(f"{method.replace('_', '.')}: {type(exc).__name__}") from exc


def pane_title(question: str) -> str:
    """A pane thread's title: its first question on one line, cut at a word near TITLE_CHARS."""
    title = " ".join(question.split())
    if len(title) <= TITLE_CHARS:
        return title
    cut = title.rfind(" ", 0, TITLE_CHARS)
    return title[: cut if cut > TITLE_CHARS // 2 else TITLE_CHARS].rstrip() + "…"


def _is_ours(message: dict[str, Any], identity: BotIdentity) -> bool:
    return message.get("user") == identity.user_id or message.get("bot_id") == identity.bot_id


def _has_stop_button(message: dict[str, Any]) -> bool:
    return any(
        element.get("action_id") == STOP_ACTION
        for block in message.get("blocks") or []
        if block.get("type") == "actions"
        for element in block.get("elements") or []
    )


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
        clients: SlackClients,
        *,
        users: UserDirectory,
        message_chars: int,
        update_seconds: float,
        status_refresh_seconds: float = STATUS_REFRESH_SECONDS,
        feedback_enabled: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self._clients = clients  # each workspace's own client and bot (one in single-workspace mode)
        self._users = users
        self._message_chars = message_chars
        self._update_seconds = update_seconds
        self._status_refresh_seconds = status_refresh_seconds
        # Whether a channel's answers carry feedback buttons (team, channel); without it, every channel's do.
        self._feedback_enabled = feedback_enabled
        # Refusals remembered per workspace (per surface, for a status): see REFUSAL_MEMORY_SECONDS.
        self._stream_refusals: Refusals[str] = Refusals()
        self._status_refusals: Refusals[tuple[str, str]] = Refusals()
        self._session_refusals: Refusals[str] = Refusals()

    async def prepare(self, turn: Turn) -> Turn:
        """Name the speaker and the people mentioned; off the ack path, where Slack wants an answer at once."""
        if not turn.raw:
            return turn
        speaker = await self._users.get(turn.user_id, team_id=turn.team_id)
        names = await self._users.names(mentioned_user_ids(turn.text), team_id=turn.team_id)
        return dataclasses.replace(
            turn,
            user_name=speaker.display_name,
            user_timezone=speaker.timezone,
            text=to_plain_text(turn.text, user_names=names),
            raw=False,
        )

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
                slack_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__,
            )
            return []
        speakers = {m["user"] for m in earlier if m.get("user")}
        for m in earlier:
            speakers.update(mentioned_user_ids(m["text"]))
        names = await self._users.names(sorted(speakers), team_id=turn.team_id)
        identity = await self._clients.identity(turn.team_id)
        history = []
        for message in earlier:
            text = to_plain_text(message["text"], user_names=names)
            if _is_ours(message, identity):
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
        client = await self._clients.for_team(turn.team_id)
        cursor = None
        for _ in range(HISTORY_MAX_PAGES):
            response = await client.conversations_replies(
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
        identity = await self._clients.identity(turn.team_id)
        parts = [
            message["ts"]
            for message in messages or []
            if _is_ours(message, identity) and _is_answer_part(message, of=answer_ts)
        ]
        return tuple(sorted(parts, key=float))

    async def _messages_after(self, turn: Turn, *, after_ts: str) -> list[dict[str, Any]] | None:
        """Messages of the turn's reply place posted after `after_ts`; None when Slack would not say."""
        client = await self._clients.for_team(turn.team_id)
        try:
            if turn.reply_thread_ts:
                response = await client.conversations_replies(
                    channel=turn.channel_id,
                    ts=turn.reply_thread_ts,
                    oldest=after_ts,
                    limit=UNRECORDED_SEARCH_LIMIT,
                    include_all_metadata=True,
                )
            else:
                response = await client.conversations_history(
                    channel=turn.channel_id,
                    oldest=after_ts,
                    limit=UNRECORDED_SEARCH_LIMIT,
                    include_all_metadata=True,
                )
        except SlackApiError as exc:
            log.info("could not look for an interrupted answer: %s", exc.response.get("error"))
            return None
        return response.get("messages", [])

    async def _earlier_shares(self, turn: Turn, *, after_ts: str, answer_ts: str | None) -> EarlierShares:
        """The files an earlier attempt at this batch shared in its reply place (see bot/slack/files.py)."""
        messages = await self._messages_after(turn, after_ts=after_ts)
        identity = await self._clients.identity(turn.team_id)
        return earlier_shares((m for m in messages or [] if _is_ours(m, identity)), answer_ts=answer_ts)

    async def _unrecorded_answer(self, turn: Turn, *, after_ts: str) -> str | None:
        """The first message an earlier attempt posted but died before recording: 'Thinking…', a cut-off answer,
        or one still showing its Stop button (a stream the dead worker had just started).

        A finished answer never looks like any of them, and only one worker answers a conversation at a
        time, so such a message of ours after the batch's first message is this answer's to take over.
        """
        messages = await self._messages_after(turn, after_ts=after_ts)
        if messages is None:
            return None
        identity = await self._clients.identity(turn.team_id)
        found = [
            message["ts"]
            for message in messages
            if _is_ours(message, identity)
            and not _is_answer_part(message)
            and (
                message.get("text") == THINKING
                or message.get("text", "").endswith(INTERRUPTED)
                or _has_stop_button(message)
            )
        ]
        return min(found, key=float) if found else None

    @asynccontextmanager
    async def reply(
        self, turn: Turn, *, resume_ts: str | None = None, unrecorded_after: str | None = None
    ) -> AsyncIterator[SlackReplyStream]:
        if resume_ts is None and unrecorded_after is not None:
            resume_ts = await self._unrecorded_answer(turn, after_ts=unrecorded_after)
        resumed_parts = await self._answer_parts(turn, answer_ts=resume_ts) if resume_ts else ()
        client = await self._clients.for_team(turn.team_id)
        earlier = EarlierShares()
        if unrecorded_after is not None:
            earlier = await self._earlier_shares(turn, after_ts=unrecorded_after, answer_ts=resume_ts)
            await delete_files(client, earlier.drafts, why="a draft an earlier attempt left")
        if resume_ts is None and turn.surface is Surface.ASSISTANT:
            await self._title_pane_thread(client, turn)
        stream = SlackReplyStream(
            client,
            channel=turn.channel_id,
            thread_ts=turn.reply_thread_ts,
            in_assistant_pane=turn.surface is Surface.ASSISTANT,
            message_chars=self._message_chars,
            update_seconds=self._update_seconds,
            resume_ts=resume_ts,
            resumed_parts=resumed_parts,
            **self._thread_features(client, turn, streams=resume_ts is None),
            feedback=await self._feedback_enabled(turn.team_id, turn.channel_id) if self._feedback_enabled else True,
            earlier=earlier,
        )
        await stream.open()
        try:
            yield stream
        finally:
            await stream.close()

    def _thread_features(self, client: AsyncWebClient, turn: Turn, *, streams: bool) -> dict[str, Any]:
        """What an answer in a thread shows besides its text: a native stream, a status, an agent session, Stop.

        A resumed answer is not streamed: the message an earlier attempt left (perhaps still streaming) is
        taken over with chat.update, so it is finished exactly once.
        """
        thread_ts = turn.reply_thread_ts
        if thread_ts is None:
            return {}  # the top level of a DM: post-and-update, no status
        native = None
        if streams and not self._stream_refusals.refused(turn.team_id):
            native = NativeStream(
                client,
                channel=turn.channel_id,
                thread_ts=thread_ts,
                recipient_user_id=turn.user_id,
                recipient_team_id=turn.team_id,
                update_seconds=self._update_seconds,
            )
        return {
            "native": native,
            "status": ThreadStatus(
                client,
                channel=turn.channel_id,
                thread_ts=thread_ts,
                refusals=self._status_refusals,
                refusal_key=(turn.team_id, turn.surface.value),
                refresh_seconds=self._status_refresh_seconds,
            ),
            "agent_session": AgentSession(
                client,
                channel=turn.channel_id,
                thread_ts=thread_ts,
                team_id=turn.team_id,
                refusals=self._session_refusals,
            ),
            "stop_key": turn.thread_key,
            "on_stream_refused": lambda: self._stream_refusals.refuse(turn.team_id),
        }

    async def _title_pane_thread(self, client: AsyncWebClient, turn: Turn) -> None:
        """Title a pane thread after its first question: one small read says whether anyone spoke in it before."""
        try:
            response = await client.conversations_replies(
                channel=turn.channel_id, ts=turn.thread_key, latest=turn.message_ts, limit=TITLE_CHECK_LIMIT
            )
            messages: list[dict[str, Any]] = response.get("messages", [])
            identity = await self._clients.identity(turn.team_id)
            if any(
                m.get("ts") not in (turn.thread_key, turn.message_ts) and not _is_ours(m, identity) for m in messages
            ):
                return
            await client.assistant_threads_setTitle(
                channel_id=turn.channel_id, thread_ts=turn.thread_key, title=pane_title(turn.text)
            )
        except SlackApiError as exc:
            log.info("could not title the assistant thread: %s", slack_error(exc))
        except CONNECTION_ERRORS as exc:
            log.info("could not title the assistant thread: %s", type(exc).__name__)

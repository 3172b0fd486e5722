"""One answer message streamed with Slack's chat.startStream, appendStream and stopStream.

slack_sdk's AsyncChatStream buffers by size and raises on any refusal, after which its state is unknown; this
answer needs appends spaced in time, a refusal told apart from a failure that passes (so the answer can carry on
with post-and-update in the same messages), and a message that stops at Slack's size limit. So the methods are
called here directly, with the SDK's chunk models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import BlocksChunk, Chunk, MarkdownTextChunk, TaskUpdateChunk
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations.turn import ToolActivity, ToolStatus
from bot.slack.api_errors import CONNECTION_ERRORS, delivery_failure, is_transient, slack_error
from bot.slack.progress import task_title

log = logging.getLogger(__name__)

# The most Markdown one streamed message holds: Slack's limit on a markdown_text argument and on the markdown
# block a streamed message becomes (2025-10). Each call stays within it because the whole message does.
STREAM_MESSAGE_CHARS = 12_000
# Answers of Slack's that mean it streams nothing in this workspace (or this kind of channel): the answer goes on
# with post-and-update, and the workspace is not asked to stream again for a while.
STREAMING_REFUSALS = frozenset(
    {
        "unknown_method",
        "not_allowed",
        "not_allowed_token_type",
        "channel_type_not_supported",
        "method_not_supported_for_channel_type",
        "feature_disabled",
        "missing_scope",
    }
)
# This message cannot stream any more (Slack stopped it after it sat idle, or someone deleted it); the next answer
# may stream again.
STREAM_GONE = frozenset({"message_not_in_streaming_state", "message_not_found"})
_TASK_STATUS = {ToolStatus.STARTED: "in_progress", ToolStatus.COMPLETED: "complete", ToolStatus.FAILED: "error"}


def task_update(activity: ToolActivity) -> TaskUpdateChunk:
    return TaskUpdateChunk(id=activity.call_id, title=task_title(activity), status=_TASK_STATUS[activity.status])


class NativeStream:
    """A streaming message: text and task updates are buffered and sent no more often than `update_seconds`.

    The message starts with its buttons (Stop, where Slack shows no stop of its own) and the first of the answer,
    so the first words show at once. Until its stream stops, the Stop button marks it as an answer in progress:
    a worker taking over after a crash that came before the message was recorded finds it by that, and finishes
    it rather than posting another.

    When Slack refuses or ends the stream, `ended` says why and every later call is a no-op returning False:
    the caller takes the message over with chat.update.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        recipient_user_id: str,
        recipient_team_id: str,
        update_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._recipient_user_id = recipient_user_id
        self._recipient_team_id = recipient_team_id
        self._update_seconds = update_seconds
        self._clock = clock
        self._opening: list[Chunk] = []
        self._pending: list[Chunk] = []
        self._last_call = float("-inf")
        self.ts: str | None = None
        self.chars = 0  # Markdown given to this message, sent or pending
        self.ended: str | None = None
        self.stopped = False

    @property
    def live(self) -> bool:
        return self.ended is None and not self.stopped

    def has_room(self, text: str) -> bool:
        return self.chars + len(text) <= STREAM_MESSAGE_CHARS

    def add_blocks(self, blocks: Sequence[dict[str, Any]]) -> None:
        """Blocks (buttons) the message starts with."""
        self._opening.append(BlocksChunk(blocks=list(blocks)))

    async def start(self) -> bool:
        """Start the message with its buttons and whatever is pending; False if Slack would not, and `ended`
        says why (what was pending stays pending)."""
        if self.ts is not None or not self.live:
            return self.live
        pending, self._pending = self._pending, []
        response = await self._call(
            "chat_startStream",
            channel=self._channel,
            thread_ts=self._thread_ts,
            recipient_user_id=self._recipient_user_id,
            recipient_team_id=self._recipient_team_id,
            task_display_mode="timeline",
            chunks=[*self._opening, *pending] or None,
        )
        if response is not None:
            self.ts = str(response["ts"])
        else:
            self._pending = pending + self._pending
        return self.live

    def queue_text(self, text: str) -> None:
        """Text for the next call."""
        self.chars += len(text)
        if self._pending and isinstance(self._pending[-1], MarkdownTextChunk):
            self._pending[-1].text += text
        else:
            self._pending.append(MarkdownTextChunk(text=text))

    def queue_task(self, activity: ToolActivity) -> None:
        """A task's new state for the next call."""
        self._pending.append(task_update(activity))

    async def add_text(self, text: str) -> bool:
        self.queue_text(text)
        return await self.flush(due_only=True)

    async def add_task(self, activity: ToolActivity) -> bool:
        self.queue_task(activity)
        return await self.flush(due_only=True)

    async def flush(self, *, due_only: bool = False) -> bool:
        """Send what is pending to the started message (only if the last call was `update_seconds` ago, with
        due_only)."""
        if not self.live:
            return False
        if self.ts is None or not self._pending:
            return True
        if due_only and self._clock() - self._last_call < self._update_seconds:
            return True
        chunks, self._pending = self._pending, []
        response = await self._call("chat_appendStream", channel=self._channel, ts=self.ts, chunks=chunks)
        if response is None and self.live:
            self._pending = chunks + self._pending  # a failure that passes: sent with the next call
        return self.live

    async def stop(self) -> None:
        """End the stream with whatever is pending; the message is then the caller's to update."""
        if not self.live:
            return
        if self.ts is None:
            self.stopped = True  # nothing was ever shown; the caller shows the answer
            return
        chunks, self._pending = self._pending, []
        await self._call("chat_stopStream", channel=self._channel, ts=self.ts, chunks=chunks or None)
        self.stopped = True

    async def _call(self, method: str, **arguments: Any) -> Any:
        """Slack's answer; None when the call failed but the stream may go on (or `ended` says it cannot)."""
        self._last_call = self._clock()
        name = method.replace("_", ".")
        try:
            return await getattr(self._client, method)(**arguments)
        except SlackApiError as exc:
            error = slack_error(exc)
            if error in STREAMING_REFUSALS or error in STREAM_GONE:
                log.info("%s: %s; showing the answer by updating messages instead", name, error)
                self.ended = error
                return None
            if is_transient(exc):
                log.info("%s failed for now (%s); sending it again with the next call", name, error)
                return None
            raise delivery_failure(exc, name) from exc
        except CONNECTION_ERRORS as exc:
            log.info("%s failed for now (%s); sending it again with the next call", name, type(exc).__name__)
            return None

"""Feedback on answers: clicks on Slack's feedback buttons, and the optional comment modal after a 👎.

Every listener acks first (Slack wants an answer within 3 s) and hands the rest to `BackgroundWork`.
A 👎 opens the comment modal at once, while the click's trigger_id is still valid (Slack allows 3 s).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.background import BackgroundWork
from bot.slack.interactions import Interaction
from bot.slack.render import FEEDBACK_ACTION
from bot.slack.stop import tell_privately
from bot.store.feedback import BAD, GOOD, RATINGS, FeedbackStore

log = logging.getLogger(__name__)

COMMENT_CALLBACK = "feedback_comment"
FEEDBACK_BLOCK_PREFIX = "feedback:"
# Slack's limit on a plain_text_input.
MAX_COMMENT_CHARS = 3000
THANKS = {
    GOOD: "Thanks for the feedback!",
    BAD: "Thanks for telling me. A comment on what was wrong helps whoever runs this bot improve it.",
}
ANSWER_GONE = "I couldn't find that answer any more, so your feedback was not recorded."
COMMENT_SAVED = "Thanks, your comment was saved with your feedback."
COMMENT_LOST = "Your comment could not be saved: your rating of that answer is gone. Please rate it again."


class FeedbackListeners:
    """`answer_feedback` clicks and the comment modal's submission, to the feedback table."""

    def __init__(self, *, feedback: FeedbackStore, background: BackgroundWork) -> None:
        self._feedback = feedback
        self._background = background

    def register(self, app: AsyncApp) -> None:
        app.action(FEEDBACK_ACTION)(self.on_feedback)
        app.view(COMMENT_CALLBACK)(self.on_comment)

    async def on_feedback(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        clicked = Interaction.of(body)
        value, block_id = action.get("value"), action.get("block_id") or ""
        answer_ts = block_id.removeprefix(FEEDBACK_BLOCK_PREFIX) if block_id.startswith(FEEDBACK_BLOCK_PREFIX) else ""
        if not (clicked.team_id and clicked.channel_id and clicked.user_id and answer_ts and value in RATINGS):
            log.warning("feedback click without team, channel, user, answer or a known value; ignored")
            return
        target = Target(
            team_id=clicked.team_id, channel_id=clicked.channel_id, answer_ts=answer_ts, thread_ts=clicked.thread_ts
        )
        trigger_id = body.get("trigger_id") or ""
        work = self._rate(client, target, user_id=clicked.user_id, value=str(value), trigger_id=trigger_id)
        self._background.start(work, name="feedback")

    async def on_comment(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        submitted = Interaction.of(body)
        team_id, user_id = submitted.team_id, submitted.user_id
        target = Target.from_metadata(view.get("private_metadata") or "")
        values = (view.get("state") or {}).get("values") or {}
        comment = (((values.get("comment") or {}).get("value") or {}).get("value") or "").strip()
        if target is None or target.team_id != team_id or not user_id:
            log.warning("feedback comment without its answer, or from another workspace; ignored")
            return
        if comment:
            self._background.start(
                self._save_comment(client, target, user_id=user_id, comment=comment), name="feedback"
            )

    async def _rate(self, client: AsyncWebClient, target: Target, *, user_id: str, value: str, trigger_id: str) -> None:
        if value == BAD and trigger_id:
            await _open_comment_modal(client, trigger_id, target)
        rated = await self._feedback.rate(
            team_id=target.team_id,
            channel_id=target.channel_id,
            answer_ts=target.answer_ts,
            user_id=user_id,
            value=value,
        )
        if not rated:
            log.info("feedback on %s/%s: no answer of the bot begins there", target.channel_id, target.answer_ts)
        text = THANKS[value] if rated else ANSWER_GONE
        await tell_privately(client, target.channel_id, user_id, target.thread_ts, text)

    async def _save_comment(self, client: AsyncWebClient, target: Target, *, user_id: str, comment: str) -> None:
        saved = await self._feedback.comment(
            team_id=target.team_id,
            channel_id=target.channel_id,
            answer_ts=target.answer_ts,
            user_id=user_id,
            comment=comment[:MAX_COMMENT_CHARS],
        )
        await tell_privately(
            client, target.channel_id, user_id, target.thread_ts, COMMENT_SAVED if saved else COMMENT_LOST
        )


@dataclass(frozen=True)
class Target:
    """The answer a rating is about, and where its thanks go; carried through the modal as its metadata."""

    team_id: str
    channel_id: str
    answer_ts: str
    thread_ts: str | None

    def to_metadata(self) -> str:
        return json.dumps(
            {"team": self.team_id, "channel": self.channel_id, "answer": self.answer_ts, "thread": self.thread_ts}
        )

    @classmethod
    def from_metadata(cls, metadata: str) -> Target | None:
        try:
            fields = json.loads(metadata)
        except ValueError:
            return None
        if not isinstance(fields, dict):
            return None
        team_id, channel_id, answer_ts, thread_ts = (fields.get(key) for key in ("team", "channel", "answer", "thread"))
        if not all(isinstance(value, str) and value for value in (team_id, channel_id, answer_ts)):
            return None
        return cls(
            team_id=str(team_id),
            channel_id=str(channel_id),
            answer_ts=str(answer_ts),
            thread_ts=thread_ts if isinstance(thread_ts, str) else None,
        )


def comment_view(target: Target) -> dict[str, Any]:
    """The modal asking what was wrong with an answer; the comment is optional."""
    return {
        "type": "modal",
        "callback_id": COMMENT_CALLBACK,
        "title": _plain("Feedback"),
        "submit": _plain("Send"),
        "close": _plain("Skip"),
        "private_metadata": target.to_metadata(),
        "blocks": [
            {
                "type": "input",
                "block_id": "comment",
                "optional": True,
                "label": _plain("What was wrong with the answer?"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": MAX_COMMENT_CHARS,
                },
            }
        ],
    }


async def _open_comment_modal(client: AsyncWebClient, trigger_id: str, target: Target) -> None:
    try:
        await client.views_open(trigger_id=trigger_id, view=comment_view(target))
    except SlackApiError as exc:  # the rating counts without a comment
        log.warning("could not open the feedback comment modal: %s", exc.response.get("error"))


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}

"""Bolt listeners by surface: mentions, messages and the assistant pane. They only convert."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant

from bot.conversations.service import ConversationService
from bot.conversations.turn import SharedFile, Surface, Turn
from bot.slack.directory import UserDirectory
from bot.slack.replies import BotIdentity
from bot.slack.text import mentioned_user_ids, strip_mention, to_plain_text

log = logging.getLogger(__name__)

# Message subtypes that are a person saying something; edits, deletions, joins and bot posts are not.
USER_MESSAGE_SUBTYPES = {None, "file_share", "thread_broadcast"}
DM_THREAD_KEY = "dm"
SUGGESTED_PROMPTS = [
    {"title": "Summarise a text", "message": "Summarise the following text in three bullet points:"},
    {"title": "Draft a message", "message": "Help me write a friendly message to my team about"},
    {"title": "What time is it?", "message": "What is the date and time for me right now?"},
]


def is_person_speaking(event: dict[str, Any], identity: BotIdentity) -> bool:
    """True for a message a human wrote now (not the bot, another bot, an edit, a join or a malformed event)."""
    subtype, files = event.get("subtype"), event.get("files") or []
    # Wrong types are ignored here, not left to fail later: a 500 would only make Slack resend the same event.
    return (
        isinstance(subtype, str | None)
        and subtype in USER_MESSAGE_SUBTYPES
        and not event.get("bot_id")
        and all(isinstance(event.get(key), str) and event[key] for key in ("user", "channel", "ts"))
        and event.get("user") != identity.user_id
        and all(isinstance(event.get(key) or "", str) for key in ("text", "thread_ts"))
        and isinstance(files, list)
        and all(isinstance(item, dict) for item in files)
    )


class SlackListeners:
    """Turns Slack events into Turns for the conversation service."""

    def __init__(
        self,
        *,
        service: ConversationService,
        users: UserDirectory,
        identity: BotIdentity,
        reply_without_mention: bool,
        greeting: str,
    ) -> None:
        self._service = service
        self._users = users
        self._identity = identity
        self._reply_without_mention = reply_without_mention
        self._greeting = greeting

    def register(self, app: AsyncApp) -> None:
        assistant = AsyncAssistant()
        assistant.thread_started(self.on_assistant_thread_started)
        assistant.user_message(self.on_assistant_message)
        app.use(assistant)
        app.event("app_mention")(self.on_app_mention)
        app.event("message")(self.on_message)

    async def on_app_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if not is_person_speaking(event, self._identity):
            return
        thread_key = event.get("thread_ts") or event["ts"]
        await self._accept(body, event, surface=Surface.CHANNEL, thread_key=thread_key, reply_thread_ts=thread_key)

    async def on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if not is_person_speaking(event, self._identity):
            return
        if event.get("channel_type") == "im":
            # Threads in DMs are taken by the assistant listener; this is the rolling top level.
            await self._accept(body, event, surface=Surface.DM, thread_key=DM_THREAD_KEY, reply_thread_ts=None)
            return
        thread_ts = event.get("thread_ts")
        if f"<@{self._identity.user_id}" in event.get("text", ""):
            return  # the app_mention event for this message answers it
        if not thread_ts or not self._reply_without_mention:
            return
        conversation = await self._service.find_conversation(
            team_id=_team_id(body, event), channel_id=event["channel"], thread_key=thread_ts
        )
        if conversation is not None:
            await self._accept(body, event, surface=Surface.CHANNEL, thread_key=thread_ts, reply_thread_ts=thread_ts)

    async def on_assistant_thread_started(self, body: dict[str, Any], event: dict[str, Any], say, set_suggested_prompts) -> None:  # type: ignore[no-untyped-def]
        thread = event.get("assistant_thread") or {}
        if not thread.get("channel_id") or not thread.get("thread_ts"):
            log.warning("assistant_thread_started without channel or thread; ignored")
            return
        await self._service.open_conversation(
            team_id=_team_id(body, event),
            channel_id=thread["channel_id"],
            thread_key=thread["thread_ts"],
            surface=Surface.ASSISTANT,
        )
        await say(self._greeting)
        await set_suggested_prompts(prompts=SUGGESTED_PROMPTS)

    async def on_assistant_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if not is_person_speaking(event, self._identity):
            return
        thread_ts = event["thread_ts"]
        conversation = await self._service.find_conversation(
            team_id=_team_id(body, event), channel_id=event["channel"], thread_key=thread_ts
        )
        in_pane = conversation is not None and conversation.surface == Surface.ASSISTANT.value
        surface = Surface.ASSISTANT if in_pane else Surface.DM_THREAD
        await self._accept(body, event, surface=surface, thread_key=thread_ts, reply_thread_ts=thread_ts)

    async def _accept(
        self, body: dict[str, Any], event: dict[str, Any], *, surface: Surface, thread_key: str, reply_thread_ts: str | None
    ) -> None:
        if not body.get("event_id"):
            log.warning("event without event_id ignored (channel %s)", event.get("channel"))
            return
        turn = await self._to_turn(body, event, surface=surface, thread_key=thread_key, reply_thread_ts=reply_thread_ts)
        await self._service.accept(turn)

    async def _to_turn(
        self, body: dict[str, Any], event: dict[str, Any], *, surface: Surface, thread_key: str, reply_thread_ts: str | None
    ) -> Turn:
        team_id = _team_id(body, event)
        speaker = await self._users.get(event["user"], team_id=team_id)
        raw = strip_mention(event.get("text") or "", self._identity.user_id)
        names = await self._users.names(mentioned_user_ids(raw), team_id=team_id)
        files = tuple(
            SharedFile(
                file_id=item["id"],
                name=item.get("name") or item.get("title") or item["id"],
                mimetype=item.get("mimetype") or "",
                size=int(item.get("size") or 0),
                filetype=item.get("filetype") or "",
                download_url=item.get("url_private_download") or "",
            )
            for item in event.get("files") or []
            if item.get("id")
        )
        return Turn(
            event_id=body["event_id"],
            team_id=team_id,
            channel_id=event["channel"],
            thread_key=thread_key,
            surface=surface,
            user_id=event["user"],
            user_name=speaker.display_name,
            text=to_plain_text(raw, user_names=names),
            message_ts=event["ts"],
            reply_thread_ts=reply_thread_ts,
            user_timezone=speaker.timezone,
            files=files,
        )


def _team_id(body: dict[str, Any], event: dict[str, Any]) -> str:
    return body.get("team_id") or event.get("team") or ""

"""Bolt listeners by surface: mentions, messages and the assistant pane. They only convert."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations.channels import ChannelSettings, ReplyMode
from bot.conversations.service import ConversationService
from bot.conversations.turn import SharedFile, Surface, Turn
from bot.slack.clients import BotIdentity, SlackClients
from bot.slack.directory import UserDirectory
from bot.slack.text import strip_mention

log = logging.getLogger(__name__)

# Message subtypes that are a person saying something; edits, deletions, joins and bot posts are not.
USER_MESSAGE_SUBTYPES = {None, "file_share", "thread_broadcast"}
DM_THREAD_KEY = "dm"
SUGGESTED_PROMPTS = [
    {"title": "Summarise a text", "message": "Summarise the following text in three bullet points:"},
    {"title": "Draft a message", "message": "Help me write a friendly message to my team about"},
    {"title": "What time is it?", "message": "What is the date and time for me right now?"},
]


@dataclass(frozen=True)
class PersonMessage:
    """The fields of a message a person wrote now, each checked once so that no later step meets a null."""

    team_id: str
    user_id: str
    channel_id: str
    ts: str
    text: str
    thread_ts: str | None
    channel_type: str | None
    files: tuple[SharedFile, ...]


def person_message(body: dict[str, Any], event: dict[str, Any], identity: BotIdentity) -> PersonMessage | None:
    """The message a human wrote now, or None for the bot, another bot, an edit, a join or a malformed event.

    Slack sends nulls, missing fields and subtypes added later; they are ignored here rather than left
    to fail further on, where a 500 would only make Slack resend the same event.
    """
    subtype, files = event.get("subtype"), event.get("files") or []
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    text, thread_ts, channel_type = event.get("text") or "", event.get("thread_ts") or None, event.get("channel_type")
    if not (isinstance(subtype, str | None) and subtype in USER_MESSAGE_SUBTYPES) or event.get("bot_id"):
        return None
    if not (isinstance(user, str) and user and user != identity.user_id):
        return None
    if not (isinstance(channel, str) and channel and isinstance(ts, str) and ts):
        return None
    if not (isinstance(text, str) and isinstance(thread_ts, str | None) and isinstance(channel_type, str | None)):
        return None
    if not isinstance(files, list):
        return None
    shared = tuple(shared for shared in map(shared_file, files) if shared is not None)
    return PersonMessage(_team_id(body, event), user, channel, ts, text, thread_ts, channel_type, shared)


def shared_file(item: Any) -> SharedFile | None:
    """A file as Slack lists it in a message; None for one without an id. Odd fields fall back to defaults."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None

    def text(*keys: str) -> str:
        return next((item[key] for key in keys if isinstance(item.get(key), str) and item[key]), "")

    size = item.get("size")
    return SharedFile(
        file_id=item["id"],
        name=text("name", "title") or item["id"],
        mimetype=text("mimetype"),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0,
        filetype=text("filetype"),
        download_url=text("url_private_download"),
    )


class SlackListeners:
    """Turns Slack events into Turns for the conversation service."""

    def __init__(
        self,
        *,
        service: ConversationService,
        users: UserDirectory,
        clients: SlackClients,
        channel_settings: ChannelSettings,
        greeting: str,
    ) -> None:
        self._service = service
        self._users = users
        self._clients = clients  # the bot's identity in each workspace
        self._channel_settings = channel_settings
        self._greeting = greeting

    def register(self, app: AsyncApp) -> None:
        assistant = AsyncAssistant()
        assistant.thread_started(self.on_assistant_thread_started)
        assistant.thread_context_changed(self.on_assistant_thread_context_changed)
        assistant.user_message(self.on_assistant_message)
        app.use(assistant)
        app.event("app_mention")(self.on_app_mention)
        app.event("message")(self.on_message)

    async def _bot(self, body: dict[str, Any], event: dict[str, Any]) -> BotIdentity:
        return await self._clients.identity(_team_id(body, event))

    async def on_app_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        message = person_message(body, event, await self._bot(body, event))
        if message is None:
            return
        thread_key = message.thread_ts or message.ts
        await self._accept(body, message, surface=Surface.CHANNEL, thread_key=thread_key, reply_thread_ts=thread_key)

    async def on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        message = person_message(body, event, await self._bot(body, event))
        if message is None:
            return
        if message.channel_type == "im":
            # Threads in DMs are taken by the assistant listener; this is the rolling top level.
            await self._accept(body, message, surface=Surface.DM, thread_key=DM_THREAD_KEY, reply_thread_ts=None)
            return
        if f"<@{(await self._clients.identity(message.team_id)).user_id}" in message.text:
            return  # the app_mention event for this message answers it
        mode = await self._channel_settings.reply_mode(team_id=message.team_id, channel_id=message.channel_id)
        if mode is ReplyMode.MENTION:
            return
        if message.thread_ts is None:
            if mode is ReplyMode.ALL:  # a help-desk channel: every question starts a thread the bot answers
                await self._accept(
                    body, message, surface=Surface.CHANNEL, thread_key=message.ts, reply_thread_ts=message.ts
                )
            return
        conversation = await self._service.find_conversation(
            team_id=message.team_id, channel_id=message.channel_id, thread_key=message.thread_ts
        )
        if conversation is not None:
            thread_ts = message.thread_ts
            await self._accept(body, message, surface=Surface.CHANNEL, thread_key=thread_ts, reply_thread_ts=thread_ts)

    async def on_assistant_thread_started(
        self, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient
    ) -> None:
        thread = event.get("assistant_thread")
        if not isinstance(thread, dict):
            thread = {}
        channel_id, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if not (isinstance(channel_id, str) and channel_id and isinstance(thread_ts, str) and thread_ts):
            log.warning("assistant_thread_started without channel or thread; ignored")
            return
        team_id = _team_id(body, event)
        await self._service.open_conversation(
            team_id=team_id, channel_id=channel_id, thread_key=thread_ts, surface=Surface.ASSISTANT
        )
        await self._remember_view(client, team_id=team_id, thread=thread)
        try:
            # Posted where the thread is: Bolt's say() and set_suggested_prompts() guess it from fields this
            # event may lack, and fail (or are missing) when it does.
            await client.chat_postMessage(channel=channel_id, thread_ts=thread_ts, text=self._greeting)
            await client.assistant_threads_setSuggestedPrompts(
                channel_id=channel_id, thread_ts=thread_ts, prompts=SUGGESTED_PROMPTS
            )
        except SlackApiError as exc:
            # The pane works without a greeting; a 500 would only have Slack resend the event and greet twice.
            log.warning(
                "could not greet in assistant thread %s/%s: %s", channel_id, thread_ts, exc.response.get("error")
            )

    async def on_assistant_thread_context_changed(
        self, body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient
    ) -> None:
        thread = event.get("assistant_thread")
        if not isinstance(thread, dict):
            log.warning("assistant_thread_context_changed without a thread; ignored")
            return
        await self._remember_view(client, team_id=_team_id(body, event), thread=thread)

    async def _remember_view(self, client: AsyncWebClient, *, team_id: str, thread: dict[str, Any]) -> None:
        """Note which channel the person has open beside a pane thread, with its name and topic, for the next
        message; a channel Slack will not describe (private, gone) is noted without them."""
        channel_id, thread_ts, context = thread.get("channel_id"), thread.get("thread_ts"), thread.get("context")
        if not (isinstance(channel_id, str) and channel_id and isinstance(thread_ts, str) and thread_ts):
            log.warning("assistant thread event without channel or thread; its context is ignored")
            return
        viewed = context.get("channel_id") if isinstance(context, dict) else None
        viewing: dict[str, str] | None = None
        if isinstance(viewed, str) and viewed:
            viewing = {"channel_id": viewed}
            try:
                info = (await client.conversations_info(channel=viewed)).get("channel") or {}
            except SlackApiError as exc:
                log.info("could not describe viewed channel %s: %s", viewed, exc.response.get("error"))
                info = {}
            if isinstance(info.get("name"), str) and not info.get("is_im"):
                viewing["name"] = info["name"]
                topic = (info.get("topic") or {}).get("value")
                if isinstance(topic, str) and topic.strip():
                    viewing["topic"] = topic.strip()
        await self._service.remember_viewing(
            team_id=team_id, channel_id=channel_id, thread_key=thread_ts, surface=Surface.ASSISTANT, viewing=viewing
        )

    async def on_assistant_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        message = person_message(body, event, await self._bot(body, event))
        if message is None or message.thread_ts is None:
            return
        thread_ts = message.thread_ts
        conversation = await self._service.find_conversation(
            team_id=message.team_id, channel_id=message.channel_id, thread_key=thread_ts
        )
        in_pane = conversation is not None and conversation.surface == Surface.ASSISTANT.value
        surface = Surface.ASSISTANT if in_pane else Surface.DM_THREAD
        context = viewing_line(conversation.viewing_context) if conversation is not None and in_pane else ""
        await self._accept(
            body, message, surface=surface, thread_key=thread_ts, reply_thread_ts=thread_ts, context=context
        )

    async def _accept(
        self,
        body: dict[str, Any],
        message: PersonMessage,
        *,
        surface: Surface,
        thread_key: str,
        reply_thread_ts: str | None,
        context: str = "",
    ) -> None:
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            log.warning("event without event_id ignored (channel %s)", message.channel_id)
            return
        team_id = message.team_id
        raw = strip_mention(message.text, (await self._clients.identity(team_id)).user_id)
        turn = Turn(
            event_id=event_id,
            team_id=team_id,
            channel_id=message.channel_id,
            thread_key=thread_key,
            surface=surface,
            user_id=message.user_id,
            user_name="",
            text=raw,
            message_ts=message.ts,
            reply_thread_ts=reply_thread_ts,
            files=message.files,
            context=context,
            raw=True,  # named by the platform when answered: acking does no lookups
        )
        await self._service.accept(turn)


def viewing_line(viewing: dict[str, Any] | None) -> str:
    """The channel the person has open, as a line for the assistant before their message ("" if unknown)."""
    name = (viewing or {}).get("name")
    if not isinstance(name, str) or not name:
        return ""
    topic = (viewing or {}).get("topic")
    return f"(The person is viewing #{name} — topic: {topic})" if topic else f"(The person is viewing #{name})"


def _team_id(body: dict[str, Any], event: dict[str, Any]) -> str:
    for team_id in (body.get("team_id"), event.get("team")):
        if isinstance(team_id, str) and team_id:
            return team_id
    return ""

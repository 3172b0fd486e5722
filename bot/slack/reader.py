"""Reading Slack for the read_thread and read_channel tools: links, channels, members and messages via the Web API."""

from __future__ import annotations

import logging
import re
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from slack_sdk.errors import SlackApiError

from bot.conversations.reading import ChatPlace, LinkedThread, PlaceKind, ReadMessage, ReadRefused
from bot.errors import DeliveryError, PlatformUnavailable
from bot.slack.api_errors import CONNECTION_ERRORS, is_transient, slack_error
from bot.slack.clients import SlackClients
from bot.slack.directory import UserDirectory
from bot.slack.text import mentioned_user_ids, to_plain_text

log = logging.getLogger(__name__)

# https://<workspace>.slack.com/archives/<channel>/p<ts without its dot>[?thread_ts=<ts>&cid=<channel>]
PERMALINK = re.compile(
    r"^https://(?P<domain>[a-z0-9-]+)\.slack\.com/archives/(?P<channel>[A-Z0-9]+)/p(?P<seconds>\d{10})(?P<micros>\d{6})$"
)
CHANNEL_MARKUP = re.compile(r"^<#(?P<channel>[A-Z0-9]+)(?:\|[^<>]*)?>$")
# Slack's ids are upper case and its channel names lower case, so a reference in capitals is an id.
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]+$")
THREAD_TS = re.compile(r"^\d{10}\.\d{6}$")
PAGE_SIZE = 200
# A thread is listed oldest first, so a long one is paged through for its newest messages; past this many
# pages the newest read so far are returned. Channels and members are looked through for as long.
MAX_PAGES = 10
MEMBER_PAGE_SIZE = 1000
# Messages of these subtypes are people (or apps) saying something; joins, topic changes and the like are not.
SAID_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "bot_message", "me_message"})
# Why Slack refused a read, in words for the person; any other refusal is named by its code.
REFUSALS = {
    "channel_not_found": "I can't find that channel: it is not in this workspace, or it is private and I'm not in it",
    "not_in_channel": "I'm not a member of that channel; someone in it can add me",
    "thread_not_found": "I can't find that thread: it may have been deleted",
    "message_not_found": "I can't find that message: it may have been deleted",
    "missing_scope": "this app was not given the permission to read that kind of conversation",
    "access_denied": "Slack did not let me read that conversation",
}


class SlackReader:
    """The tools' ChatReader on Slack's Web API, reading as the bot, with the asker's workspace's token."""

    def __init__(self, clients: SlackClients, *, users: UserDirectory) -> None:
        self._clients = clients
        self._users = users
        self._domains: dict[str, str] = {}

    async def linked_thread(self, link: str, *, team_id: str) -> LinkedThread:
        url = link.strip().removeprefix("<").removesuffix(">").partition("|")[0]
        parts = urlsplit(url)
        found = PERMALINK.match(f"{parts.scheme}://{parts.netloc.lower()}{parts.path}")
        if found is None:
            raise ReadRefused("that is not a link to a Slack message (https://<workspace>.slack.com/archives/...)")
        if found["domain"] != await self._domain(team_id):
            raise ReadRefused("that link is to another Slack workspace; I only read the workspace we are in")
        thread_ts = (parse_qs(parts.query).get("thread_ts") or [""])[0]
        message_ts = f"{found['seconds']}.{found['micros']}"
        return LinkedThread(found["channel"], thread_ts if THREAD_TS.match(thread_ts) else message_ts)

    async def place(self, reference: str, *, team_id: str) -> ChatPlace:
        await self._domain(team_id)  # the token must be this workspace's before anything of it is read
        marked = CHANNEL_MARKUP.match(reference)
        channel_id = marked["channel"] if marked else reference.removeprefix("#")
        if not CHANNEL_ID.match(channel_id):
            channel_id = await self._channel_named(channel_id.lower(), team_id=team_id)
        info = (await self._call(team_id, "conversations_info", channel=channel_id))["channel"]
        if info.get("is_im"):
            return ChatPlace(info["id"], "", PlaceKind.DM, bot_is_member=True, dm_user_id=info.get("user"))
        if info.get("is_mpim"):
            kind = PlaceKind.GROUP_DM
        else:
            kind = PlaceKind.PRIVATE_CHANNEL if info.get("is_private") else PlaceKind.CHANNEL
        return ChatPlace(
            info["id"], f"#{info.get('name') or info['id']}", kind, bot_is_member=bool(info.get("is_member"))
        )

    async def is_member(self, channel_id: str, user_id: str, *, team_id: str) -> bool:
        cursor = None
        for _ in range(MAX_PAGES):
            response = await self._call(
                team_id, "conversations_members", channel=channel_id, limit=MEMBER_PAGE_SIZE, cursor=cursor
            )
            if user_id in (response.get("members") or []):
                return True
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return False
        log.warning(
            "channel %s has more members than the bot looks through; counting %s as not one", channel_id, user_id
        )
        return False

    async def thread(
        self, channel_id: str, thread_ts: str, *, team_id: str, latest: str | None, limit: int
    ) -> list[ReadMessage]:
        kept: deque[dict[str, Any]] = deque(maxlen=limit)
        cursor = None
        for _ in range(MAX_PAGES):
            response = await self._call(
                team_id,
                "conversations_replies",
                channel=channel_id,
                ts=thread_ts,
                latest=latest,
                inclusive=True,
                limit=PAGE_SIZE,
                cursor=cursor,
            )
            kept.extend(response.get("messages") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return await self._read(list(kept), team_id=team_id)

    async def recent(
        self, channel_id: str, *, team_id: str, since: datetime, latest: str | None, limit: int
    ) -> list[ReadMessage]:
        response = await self._call(
            team_id,
            "conversations_history",
            channel=channel_id,
            oldest=f"{since.timestamp():.6f}",
            latest=latest,
            inclusive=True,
            limit=limit,
        )
        return await self._read((response.get("messages") or [])[::-1], team_id=team_id)

    async def _read(self, messages: list[dict[str, Any]], *, team_id: str) -> list[ReadMessage]:
        """Slack messages as a person reads them, with names for ids; joins and other notices left out."""
        said = [message for message in messages if message.get("subtype") in SAID_SUBTYPES]
        people = {message["user"] for message in said if message.get("user")}
        for message in said:
            people.update(mentioned_user_ids(message.get("text") or ""))
        names = await self._users.names(sorted(people), team_id=team_id)
        read = []
        for message in said:
            text = to_plain_text(message.get("text") or "", user_names=names)
            shared = [file.get("name") or file.get("title") or "a file" for file in message.get("files") or []]
            if shared:
                text = f"{text}\n[shared: {', '.join(shared)}]".strip()
            if not text:
                continue
            author = names.get(message.get("user") or "") or message.get("username")
            author = author or (message.get("bot_profile") or {}).get("name") or "an app"
            read.append(
                ReadMessage(
                    ts=message["ts"],
                    at=datetime.fromtimestamp(float(message["ts"]), UTC),
                    author=author,
                    text=text,
                    reply_count=int(message.get("reply_count") or 0),
                )
            )
        return read

    async def _channel_named(self, name: str, *, team_id: str) -> str:
        """The id of the channel of that name the bot can see (public ones, and private ones it is in)."""
        cursor = None
        for _ in range(MAX_PAGES):
            response = await self._call(
                team_id,
                "conversations_list",
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=PAGE_SIZE,
                cursor=cursor,
            )
            for channel in response.get("channels") or []:
                if name in (channel.get("name"), channel.get("name_normalized")):
                    return str(channel["id"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        raise ReadRefused(f"I can't find a channel named #{name}: it is not in this workspace, or it is private")

    async def _domain(self, team_id: str) -> str:
        """The workspace's domain (as in its links), checking that the bot's token is that workspace's."""
        if team_id not in self._domains:
            auth = await self._call(team_id, "auth_test")
            if auth.get("team_id") != team_id:
                log.error("read tools: the bot's token is for workspace %s, not %s", auth.get("team_id"), team_id)
                raise ReadRefused("I can only read the workspace I was installed in")
            self._domains[team_id] = (urlsplit(str(auth.get("url") or "")).hostname or "").removesuffix(".slack.com")
        return self._domains[team_id]

    async def _call(self, team_id: str, method: str, **arguments: Any) -> Any:
        name = method.replace("_", ".")
        try:
            client = await self._clients.for_team(team_id)
        except DeliveryError as exc:
            raise ReadRefused("the app is not installed in this workspace any more") from exc
        try:
            return await getattr(client, method)(**{k: v for k, v in arguments.items() if v is not None})
        except SlackApiError as exc:
            error = slack_error(exc)
            if is_transient(exc):
                raise PlatformUnavailable(f"{name}: {error}") from exc
            log.info("read tools: %s refused: %s", name, error)
            raise ReadRefused(REFUSALS.get(error, f"Slack refused to read it ({error})")) from exc
        except CONNECTION_ERRORS as exc:
            raise PlatformUnavailable(f"{name}: {type(exc).__name__}") from exc

"""Files and Slack: shared files downloaded from Slack's own hosts only, the assistant's files shared back.

Drafts of an image being drawn (DraftImage) are files too: each is uploaded into the thread and deleted
(files.delete, which files:write allows for the app's own files) when the next one is shown or the answer
ends, so that only the finished image stays. A worker that dies leaves its draft behind, and no record of it
would be safe either: the upload may succeed just before the death, with its id not yet written anywhere.
Slack keeps the record instead: the worker that takes the answer over finds the bot's drafts in the thread
(by their title) after the batch's first message, and deletes them before it answers. It also finds the
finished files an earlier attempt shared after the answer's message, and links to those rather than sharing
them twice. Left as they are: a draft whose deletion Slack refused or dropped at the end of an answer that
did finish (logged with its id; nothing retries it), and finished files shared before the answer had a
message of its own (none was recorded or found), which a retry shares again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations.turn import AnswerFile, DraftImage, ReplyCompleted, SharedFile
from bot.errors import FileRefused
from bot.slack.api_errors import CONNECTION_ERRORS, slack_error
from bot.slack.clients import SlackClients
from bot.tls import client_tls

log = logging.getLogger(__name__)

# Slack serves private files from files.slack.com (and workspace subdomains) and its CDN.
SLACK_FILE_DOMAINS = ("slack.com", "slack-edge.com")
MAX_REDIRECTS = 3
DOWNLOAD_TIMEOUT_SECONDS = 60.0
BYTES_PER_MB = 1024 * 1024
SIGN_IN_PAGE = "Slack sent a sign-in page instead of the file (the app may lack the files:read scope)"
DRAFT_TITLE = "Drawing… (draft {number})"
# Each draft is three Slack calls (rate limited per workspace) and a file to take back: one upload at most
# this often; a draft arriving sooner is skipped, since a newer one or the finished image follows.
DRAFT_UPLOAD_SECONDS = 3.0


class SlackFileDownloader:
    """Fetches a shared file's bytes with the bot token of its workspace, streaming, never past the size limit.

    Only Slack's file hosts (and the host of SLACK_API_URL, for proxies and test doubles) are
    contacted: a download link in an event payload is data from outside, and following it
    anywhere else would let a forged event make the bot fetch internal URLs with its token.
    """

    def __init__(
        self,
        *,
        clients: SlackClients,
        api_url: str,
        max_mb: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._clients = clients
        self._api_origin = _origin(api_url)
        self._max_mb = max_mb
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(DOWNLOAD_TIMEOUT_SECONDS, connect=10.0),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            # Runs before every request, redirects included, so a redirect cannot leave Slack either.
            event_hooks={"request": [self._refuse_foreign_host]},
            transport=transport,
            verify=client_tls(),
        )

    @property
    def max_bytes(self) -> int:
        return self._max_mb * BYTES_PER_MB

    async def aclose(self) -> None:
        await self._http.aclose()

    def is_slack_url(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if (parts.scheme, host, parts.port) == self._api_origin:
            return True
        return parts.scheme == "https" and any(host == d or host.endswith("." + d) for d in SLACK_FILE_DOMAINS)

    async def fetch(self, file: SharedFile, *, team_id: str) -> bytes:
        if file.size > self.max_bytes:
            raise FileRefused(self._too_big())
        if not file.download_url:
            raise FileRefused("Slack gave me no way to download it")
        if not self.is_slack_url(file.download_url):
            raise FileRefused("its download link does not point to Slack, so I did not follow it")
        token = (await self._clients.for_team(team_id)).token
        try:
            async with self._http.stream(
                "GET", file.download_url, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                if response.status_code != 200:
                    raise FileRefused(f"Slack answered the download with HTTP {response.status_code}")
                served_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
                # An HTML file is legitimately served as HTML; anything else arriving as HTML is Slack's login page.
                if served_type == "text/html" and file.mimetype.lower() != "text/html":
                    raise FileRefused(SIGN_IN_PAGE)
                return await self._read_limited(response)
        except httpx.HTTPError as exc:
            log.warning("download of Slack file %s failed: %s", file.file_id, type(exc).__name__)
            raise FileRefused("downloading it from Slack failed") from exc

    async def _read_limited(self, response: httpx.Response) -> bytes:
        received = bytearray()
        async for chunk in response.aiter_bytes():
            received += chunk
            if len(received) > self.max_bytes:
                raise FileRefused(self._too_big())
        return bytes(received)

    def _too_big(self) -> str:
        return f"it is larger than the {self._max_mb} MB limit"

    async def _refuse_foreign_host(self, request: httpx.Request) -> None:
        if not self.is_slack_url(str(request.url)):
            raise FileRefused("its download was redirected away from Slack, so I did not follow it")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


@dataclass(frozen=True)
class EarlierShares:
    """What an earlier attempt at an answer left in its thread: drafts to delete, finished files not to repeat."""

    drafts: tuple[str, ...] = ()  # file ids
    finished: Mapping[tuple[str, int], str] = field(default_factory=dict)  # (name, size) -> permalink


def earlier_shares(messages: Iterable[dict[str, Any]], *, answer_ts: str | None) -> EarlierShares:
    """The drafts in the bot's messages, and the other files it shared after the answer's message (answer_ts)."""
    drafts, finished = [], {}
    draft_title = DRAFT_TITLE.partition("{")[0]
    for message in messages:
        for file in message.get("files") or ():
            if file.get("mode") == "tombstone" or not file.get("id"):
                continue
            if str(file.get("title") or "").startswith(draft_title):
                drafts.append(str(file["id"]))
            elif answer_ts is not None and float(message.get("ts", "0")) > float(answer_ts):
                finished[(str(file.get("name")), int(file.get("size") or 0))] = str(file.get("permalink") or "")
    return EarlierShares(tuple(drafts), finished)


async def delete_files(client: AsyncWebClient, file_ids: Iterable[str], *, why: str) -> None:
    """Delete the app's own files; one already gone counts as deleted, and a failure is logged, not raised."""
    for file_id in file_ids:
        try:
            await client.files_delete(file=file_id)
        except SlackApiError as exc:
            if slack_error(exc) not in ("file_deleted", "file_not_found"):
                log.warning("could not delete %s %s: %s", why, file_id, slack_error(exc))
        except CONNECTION_ERRORS as exc:
            log.warning("could not delete %s %s: %s", why, file_id, type(exc).__name__)


class DraftImages:
    """The draft of an image being drawn that an answer shows: one at a time, each replacing the one before
    (at most one upload per DRAFT_UPLOAD_SECONDS), taken back when the answer ends.

    A draft is a nicety: one Slack would not take is skipped (logged), and the answer goes on.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str | None,
        upload_seconds: float = DRAFT_UPLOAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._upload_seconds = upload_seconds
        self._clock = clock
        self._uploaded_at = float("-inf")
        self._shown: str | None = None  # the file id of the draft in the thread

    async def show(self, draft: DraftImage) -> None:
        if self._clock() - self._uploaded_at < self._upload_seconds:
            log.debug("skipped draft %d of an image: the previous one was shown moments ago", draft.index + 1)
            return
        number = draft.index + 1
        try:
            response = await self._client.files_upload_v2(
                channel=self._channel,
                thread_ts=self._thread_ts,
                file=draft.data,
                filename=f"drawing-draft-{number}.png",
                title=DRAFT_TITLE.format(number=number),
            )
        except SlackApiError as exc:
            log.info("could not show draft %d of an image in %s: %s", number, self._channel, slack_error(exc))
            return
        except (SlackRequestError, *CONNECTION_ERRORS) as exc:  # SlackRequestError: the bytes' upload refused
            log.info("could not show draft %d of an image in %s: %s", number, self._channel, type(exc).__name__)
            return
        finally:
            # From the upload's end: a slow upload does not let the next one follow it at once.
            self._uploaded_at = self._clock()
        previous, self._shown = self._shown, (response.get("files") or [{}])[0].get("id")
        if previous:
            await delete_files(self._client, [previous], why="the previous draft")

    async def clear(self) -> None:
        """Take the draft back: the answer ended (its finished image, if any, is in the thread by now)."""
        if self._shown:
            shown, self._shown = self._shown, None
            await delete_files(self._client, [shown], why="the draft")


async def share_answer_files(
    client: AsyncWebClient,
    *,
    channel: str,
    thread_ts: str | None,
    answer: ReplyCompleted,
    already_shared: Mapping[tuple[str, int], str] | None = None,
) -> tuple[str, list[str]]:
    """Upload the answer's files into the conversation (Slack's external upload flow), except those an earlier
    attempt already shared there (``already_shared``: (name, size) -> permalink).

    Returns the answer text with each sandbox link replaced by its Slack file's link, and the
    names of files Slack would not take.
    """
    text, refused = answer.text, []
    for file in answer.files:
        earlier = (already_shared or {}).get((file.name, len(file.data)))
        if earlier is not None:
            log.info("%s was shared by an earlier attempt at this answer; not sharing it again", file.name)
            if file.link and earlier:
                text = text.replace(file.link, earlier)
            continue
        try:
            permalink = await _upload(client, channel=channel, thread_ts=thread_ts, file=file)
        except SlackApiError as exc:
            log.warning("could not share %s in %s: %s", file.name, channel, exc.response.get("error"))
            refused.append(file.name)
            continue
        if file.link and permalink:
            text = text.replace(file.link, permalink)
    return text, refused


async def _upload(client: AsyncWebClient, *, channel: str, thread_ts: str | None, file: AnswerFile) -> str | None:
    """Share one file; returns its permalink (older Slack answers lack it, so ask files.info then)."""
    response = await client.files_upload_v2(
        channel=channel, thread_ts=thread_ts, file=file.data, filename=file.name, title=file.name
    )
    shared: dict[str, Any] = (response.get("files") or [{}])[0]
    permalink: str | None = shared.get("permalink")
    if permalink or not shared.get("id"):
        return permalink
    info = await client.files_info(file=shared["id"])
    found: str | None = info["file"].get("permalink")
    return found

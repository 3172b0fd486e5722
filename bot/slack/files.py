"""Files and Slack: shared files downloaded from Slack's own hosts only, the assistant's files shared back."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversations.turn import AnswerFile, ReplyCompleted, SharedFile
from bot.errors import FileRefused
from bot.slack.clients import SlackClients

log = logging.getLogger(__name__)

# Slack serves private files from files.slack.com (and workspace subdomains) and its CDN.
SLACK_FILE_DOMAINS = ("slack.com", "slack-edge.com")
MAX_REDIRECTS = 3
DOWNLOAD_TIMEOUT_SECONDS = 60.0
BYTES_PER_MB = 1024 * 1024
SIGN_IN_PAGE = "Slack sent a sign-in page instead of the file (the app may lack the files:read scope)"


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


async def share_answer_files(
    client: AsyncWebClient, *, channel: str, thread_ts: str | None, answer: ReplyCompleted
) -> tuple[str, list[str]]:
    """Upload the answer's files into the conversation (Slack's external upload flow).

    Returns the answer text with each sandbox link replaced by its Slack file's link, and the
    names of files Slack would not take.
    """
    text, refused = answer.text, []
    for file in answer.files:
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

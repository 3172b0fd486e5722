"""The Slack file downloader contacts Slack's file hosts only, redirects included."""

from __future__ import annotations

import httpx
import pytest

from bot.conversations.turn import SharedFile
from bot.errors import FileRefused
from bot.slack.clients import BotIdentity, OneWorkspace, web_client
from bot.slack.files import SlackFileDownloader

TOKEN = "xoxb-downloader-test-token"


def downloader(handler) -> SlackFileDownloader:
    api_url = "http://127.0.0.1:8123/api/"
    clients = OneWorkspace(web_client(api_url=api_url, token=TOKEN), identity=BotIdentity("U0BOT", "B0BOT"))
    return SlackFileDownloader(clients=clients, api_url=api_url, max_mb=1, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://files.slack.com/files-pri/T1-F1/download/a.pdf", True),
        ("https://acme.slack.com/files-pri/T1-F1/a.pdf", True),
        ("https://a.slack-edge.com/x/a.png", True),
        ("http://127.0.0.1:8123/files-pri/T1-F1/a.pdf", True),  # the configured SLACK_API_URL's host
        ("http://files.slack.com/files-pri/T1-F1/a.pdf", False),  # the token never travels unencrypted
        ("https://slack.com.evil.example/a.pdf", False),
        ("https://evilslack.com/a.pdf", False),
        ("http://127.0.0.1:9999/a.pdf", False),  # same machine, another service
        ("http://169.254.169.254/latest/meta-data/", False),
    ],
)
async def test_only_slack_hosts_are_allowed(url: str, allowed: bool) -> None:
    fetcher = downloader(lambda request: httpx.Response(200))
    try:
        assert fetcher.is_slack_url(url) is allowed
    finally:
        await fetcher.aclose()


async def test_a_redirect_away_from_slack_is_not_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    fetcher = downloader(handler)
    file = SharedFile("F1", "a.pdf", "application/pdf", 10, "pdf", "https://files.slack.com/files-pri/T1-F1/a.pdf")
    try:
        with pytest.raises(FileRefused, match="redirected away from Slack"):
            await fetcher.fetch(file, team_id="T1")
    finally:
        await fetcher.aclose()
    assert seen == ["https://files.slack.com/files-pri/T1-F1/a.pdf"]

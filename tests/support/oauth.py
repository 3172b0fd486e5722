"""OAuth mode in tests: two workspaces on the Slack double, installing the app through the bot's install pages,
asking it, and uninstalling."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from doubles.slack.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

from bot.slack.oauth import INSTALL_PATH, REDIRECT_PATH
from support.workspace import ADA, CHANNEL

ALPHA, BRAVO = "T0ALPHA", "T0BRAVO"
BOTS = {ALPHA: "U0BOTALPHA", BRAVO: "U0BOTBRAVO"}
TOKENS = {ALPHA: "xoxb-alpha-workspace-token-51c2", BRAVO: "xoxb-bravo-workspace-token-9e07"}
STATE_COOKIE = "slack-app-oauth-state"


@pytest.fixture
def client_secret_never_shown(secret_audit: Any) -> None:
    """The client secret goes to Slack only in oauth.v2.access's Basic authentication, never in logs or bodies."""
    secret_audit.secrets["SLACK_CLIENT_SECRET"] = DEFAULT_CLIENT_SECRET


def add_workspaces(slack: Any) -> None:
    """Two workspaces with the same channel and person ids, as Slack allows: only the team tells them apart."""
    for team, bot_user in BOTS.items():
        slack.add_workspace(team, TOKENS[team], bot_user, f"B{bot_user[1:]}")
        slack.add_user(ADA, name="ada", display_name=f"Ada of {team}", team_id=team)
        slack.add_channel(CHANNEL, name="general", team_id=team)


async def start_oauth_bot(start_bot: Any, **overrides: Any) -> Any:
    return await start_bot(
        slack_bot_token=None,
        slack_client_id=DEFAULT_CLIENT_ID,
        slack_client_secret=DEFAULT_CLIENT_SECRET,
        **overrides,
    )


async def install(bot: Any, slack: Any, team: str) -> httpx.Response:
    """A workspace admin opens /slack/install, approves in Slack, and Slack sends the browser back with a code."""
    async with httpx.AsyncClient(base_url=bot.url, timeout=10) as browser:
        page = await browser.get(INSTALL_PATH)
        assert page.status_code == 200
        link = html.unescape(re.search(r'<a href="([^"]+)"><img alt="Add to Slack"', page.text).group(1))
        asked = parse_qs(urlsplit(link).query)
        state = asked["state"][0]
        cookie = page.headers["set-cookie"]
        assert cookie.startswith(f"{STATE_COOKIE}={state};")
        code = slack.approve_install(team, user=ADA, scopes=asked["scope"][0].split(","))
        # Browsers keep the Secure cookie for a localhost page; httpx's jar does not, so it is sent as they do.
        return await browser.get(
            REDIRECT_PATH, params={"code": code, "state": state}, headers={"Cookie": f"{STATE_COOKIE}={state}"}
        )


async def ask(
    bot: Any, slack: Any, team: str, text: str, *, thread_ts: str | None = None
) -> tuple[str, list[httpx.Response]]:
    post = slack.human_posts(CHANNEL, ADA, f"<@{BOTS[team]}> {text}", thread_ts=thread_ts, team_id=team)
    responses = [await bot.deliver(envelope) for envelope in post.envelopes]
    await bot.settle()
    return post.ts, responses


async def uninstall(bot: Any, slack: Any, team: str) -> None:
    for envelope in slack.uninstall(team):
        response = await bot.deliver(envelope)
        assert response.status_code == 200, response.text
    await bot.settle()


async def two_workspaces_answered(start_bot: Any, slack: Any, **overrides: Any) -> tuple[Any, dict[str, str]]:
    add_workspaces(slack)
    bot = await start_oauth_bot(start_bot, **overrides)
    for team in BOTS:
        done = await install(bot, slack, team)
        assert done.status_code == 200, done.text
    threads = {}
    for team in BOTS:
        threads[team], responses = await ask(bot, slack, team, f"hello from {team}")
        assert [response.status_code for response in responses] == [200] * len(responses)
    return bot, threads

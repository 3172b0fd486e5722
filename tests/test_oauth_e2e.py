"""OAuth mode: workspaces install the app at /slack/install (the Slack double's oauth.v2.access), each is answered
with its own bot token, and one that uninstalls is no longer answered while the other still is."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import SIGNING_SECRET
from doubles.slack.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore, SQLAlchemyOAuthStateStore
from sqlalchemy import MetaData, Table, func, select
from support.oauth import (
    ALPHA,
    BOTS,
    BRAVO,
    STATE_COOKIE,
    TOKENS,
    add_workspaces,
    ask,
    install,
    start_oauth_bot,
    two_workspaces_answered,
    uninstall,
)
from support.slack_view import bot_texts
from support.workspace import ADA, CHANNEL

from bot.settings import MANIFEST_BOT_SCOPES, Settings, missing_slack_settings
from bot.slack.clients import InstallationStore, web_client
from bot.slack.oauth import REDIRECT_PATH
from bot.store.db import create_engine, migrate
from bot.store.models import SLACK_BOTS, SLACK_INSTALLATIONS, SLACK_OAUTH_STATES, Conversation

# The client secret goes to Slack only in oauth.v2.access's Basic authentication, never in logs or bodies.
pytestmark = pytest.mark.usefixtures("client_secret_never_shown")


def tokens_used(slack: Any, method: str) -> set[str | None]:
    return {call.token for call in slack.calls_to(method)}


async def installed_teams(bot: Any) -> dict[str, list[str]]:
    async with bot.bot.store.transaction() as session:
        installations = await session.scalars(select(SLACK_INSTALLATIONS.c.team_id))
        bots = await session.scalars(select(SLACK_BOTS.c.team_id))
        return {"installations": sorted(installations), "bots": sorted(bots)}


async def conversations_of(bot: Any, team: str) -> int:
    async with bot.bot.store.transaction() as session:
        return await session.scalar(select(func.count()).where(Conversation.team_id == team)) or 0


async def test_two_workspaces_install_and_each_is_answered_with_its_own_token(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot, threads = await two_workspaces_answered(start_bot, slack_double)

    for team in BOTS:
        assert bot_texts(slack_double, CHANNEL, threads[team], team_id=team) == [
            f"Echo: Ada of {team}: hello from {team}"
        ]
    # The double answers a token only in its own workspace: each answer was posted with that workspace's token.
    assert tokens_used(slack_double, "chat.postMessage") | tokens_used(slack_double, "chat.update") <= set(
        TOKENS.values()
    )
    assert set(TOKENS.values()) <= tokens_used(slack_double, "chat.postMessage") | tokens_used(
        slack_double, "chat.startStream"
    )
    exchanges = slack_double.calls_to("oauth.v2.access")
    assert [call.response["team"]["id"] for call in exchanges] == [ALPHA, BRAVO]
    assert exchanges[0].response["scope"].split(",") == list(MANIFEST_BOT_SCOPES)
    assert await installed_teams(bot) == {"installations": [ALPHA, BRAVO], "bots": [ALPHA, BRAVO]}


@pytest.mark.backends("responses", reason="installing touches no backend")
async def test_a_wrong_state_installs_nothing(start_bot, slack_double) -> None:
    add_workspaces(slack_double)
    bot = await start_oauth_bot(start_bot)
    code = slack_double.approve_install(ALPHA, user=ADA)
    async with httpx.AsyncClient(base_url=bot.url, timeout=10) as browser:
        forged = await browser.get(
            REDIRECT_PATH, params={"code": code, "state": "forged"}, headers={"Cookie": f"{STATE_COOKIE}=forged"}
        )
    assert forged.status_code == 401
    assert slack_double.calls_to("oauth.v2.access") == []
    assert await installed_teams(bot) == {"installations": [], "bots": []}


@pytest.mark.backends("responses", reason="keeping a workspace's data touches no backend object")
async def test_an_uninstalled_workspace_is_no_longer_answered_and_the_other_still_is(
    start_bot, slack_double, openai_double, backend, caplog
) -> None:
    bot, _ = await two_workspaces_answered(start_bot, slack_double)
    await uninstall(bot, slack_double, ALPHA)

    assert await installed_teams(bot) == {"installations": [BRAVO], "bots": [BRAVO]}
    openai_double.forget_requests()
    ts, responses = await ask(bot, slack_double, ALPHA, "still there?")
    assert [response.status_code for response in responses] == [200] * len(responses)  # Slack must not resend
    assert bot_texts(slack_double, CHANNEL, ts, team_id=ALPHA) == []
    assert openai_double.requests == []
    # Bolt tells the operator that the workspace has no installation (and answers Slack 200, so it does not resend).
    assert any("AuthorizeResult" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")

    ts, _ = await ask(bot, slack_double, BRAVO, "and you?")
    assert bot_texts(slack_double, CHANNEL, ts, team_id=BRAVO) == ["Echo: Ada of T0BRAVO: and you?"]
    # DATA_ON_UNINSTALL=keep: the workspace's conversations stay, on the API too.
    assert await conversations_of(bot, ALPHA) == 1
    assert openai_double.requests_to("DELETE", r".") == []


@pytest.mark.backends("responses", reason="revoking a token touches no backend")
async def test_a_revoked_bot_token_removes_the_installation(start_bot, slack_double, backend) -> None:
    add_workspaces(slack_double)
    bot = await start_oauth_bot(start_bot)
    await install(bot, slack_double, ALPHA)
    revoked, _ = slack_double.uninstall(ALPHA)
    assert (await bot.deliver(revoked)).status_code == 200
    assert await installed_teams(bot) == {"installations": [], "bots": []}


@pytest.mark.backends("responses", reason="how events arrive touches no backend")
async def test_installed_workspaces_are_answered_over_socket_mode_too(start_bot, slack_double) -> None:
    add_workspaces(slack_double)
    bot = await start_oauth_bot(start_bot, slack_app_token=slack_double.app_token, slack_signing_secret=None)
    assert (await install(bot, slack_double, BRAVO)).status_code == 200
    post = slack_double.human_posts(CHANNEL, ADA, f"<@{BOTS[BRAVO]}> over the socket", team_id=BRAVO)
    for envelope in post.envelopes:
        await asyncio.to_thread(slack_double.socket_deliver, envelope)
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, post.ts, team_id=BRAVO) == ["Echo: Ada of T0BRAVO: over the socket"]


@pytest.mark.backends("responses", reason="refreshing Slack tokens touches no backend")
async def test_expiring_bot_tokens_are_refreshed_for_requests_and_for_answers(start_bot, slack_double) -> None:
    slack_double.oauth.token_rotation = True
    slack_double.oauth.token_lifetime_seconds = 60  # well within the refresh window: every use refreshes it
    add_workspaces(slack_double)
    bot = await start_oauth_bot(start_bot)
    await install(bot, slack_double, ALPHA)

    ts, responses = await ask(bot, slack_double, ALPHA, "hello")

    assert [response.status_code for response in responses] == [200] * len(responses)
    assert bot_texts(slack_double, CHANNEL, ts, team_id=ALPHA) == ["Echo: Ada of T0ALPHA: hello"]
    refreshes = [c for c in slack_double.calls_to("oauth.v2.access") if c.params.get("grant_type") == "refresh_token"]
    assert len(refreshes) >= 2  # Bolt's, authorising the event, and the worker's, before answering
    answered_with = tokens_used(slack_double, "chat.postMessage") | tokens_used(slack_double, "chat.startStream")
    assert answered_with and all(token.startswith("xoxe.xoxb-") for token in answered_with)  # never the first one
    async with bot.bot.store.transaction() as session:
        saved = await session.scalar(select(SLACK_BOTS.c.bot_token).order_by(SLACK_BOTS.c.installed_at.desc()).limit(1))
    assert saved == refreshes[-1].response["access_token"]


async def test_the_doubles_code_exchange_refuses_wrong_credentials_and_used_codes(slack_double) -> None:
    add_workspaces(slack_double)
    client = web_client(api_url=slack_double.api_url, token=None)
    code = slack_double.approve_install(ALPHA, user=ADA, scopes=["chat:write"])
    with pytest.raises(SlackApiError) as refused:
        await client.oauth_v2_access(client_id=DEFAULT_CLIENT_ID, client_secret="not-the-secret", code=code)
    assert refused.value.response["error"] == "bad_client_secret"
    granted = await client.oauth_v2_access(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, code=code)
    assert (granted["access_token"], granted["team"]["id"], granted["scope"]) == (TOKENS[ALPHA], ALPHA, "chat:write")
    with pytest.raises(SlackApiError) as reused:
        await client.oauth_v2_access(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, code=code)
    assert reused.value.response["error"] == "invalid_code"


# The stores on our migrated schema, and the settings ------------------------------------------------------


async def test_slack_sdks_stores_work_on_the_migrated_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        installations = InstallationStore(client_id=DEFAULT_CLIENT_ID, engine=engine)
        expires = datetime.now(UTC) + timedelta(hours=12)
        for enterprise, team in ((None, ALPHA), ("E0GRID", BRAVO)):
            await installations.async_save(
                Installation(
                    app_id="A0APP",
                    enterprise_id=enterprise,
                    team_id=team,
                    user_id=ADA,
                    bot_token=TOKENS[team],
                    bot_id="B0BOT",
                    bot_user_id=BOTS[team],
                    bot_scopes=list(MANIFEST_BOT_SCOPES),
                    bot_refresh_token="xoxe-1-refresh",
                    bot_token_expires_at=int(expires.timestamp()),
                )
            )
        for team in (ALPHA, BRAVO):  # found by team alone, in an Enterprise Grid org too
            found = await installations.find_team_installation(team)
            assert found is not None and (found.bot_token, found.bot_user_id) == (TOKENS[team], BOTS[team])
            assert found.bot_token_expires_at == int(expires.timestamp())
        await installations.async_delete_all(enterprise_id="E0GRID", team_id=BRAVO)
        assert await installations.find_team_installation(BRAVO) is None
        assert await installations.find_team_installation(ALPHA) is not None

        states = AsyncSQLAlchemyOAuthStateStore(expiration_seconds=60, engine=engine)
        state = await states.async_issue()
        assert await states.async_consume(state) is True
        assert await states.async_consume(state) is False  # once only
    finally:
        await engine.dispose()


def test_our_tables_are_the_ones_slack_sdk_builds() -> None:
    """The stores build their own copies of these tables by name: a slack_sdk upgrade that changes them must be
    met by a migration."""
    theirs = MetaData()
    expected = [
        SQLAlchemyInstallationStore.build_installations_table(theirs, "slack_installations"),
        SQLAlchemyInstallationStore.build_bots_table(theirs, "slack_bots"),
        SQLAlchemyOAuthStateStore.build_oauth_states_table(theirs, "slack_oauth_states"),
    ]
    for mine, their in zip((SLACK_INSTALLATIONS, SLACK_BOTS, SLACK_OAUTH_STATES), expected, strict=True):
        assert _described(mine) == _described(their)


def _described(table: Table) -> tuple[str, list[tuple[str, str, bool, bool]], list[tuple[str | None, list[str]]]]:
    columns = [(c.name, repr(c.type), bool(c.nullable), bool(c.primary_key)) for c in table.columns]
    indexes = sorted((index.name, [c.name for c in index.columns]) for index in table.indexes)
    return table.name, columns, indexes


def test_oauth_mode_needs_no_bot_token_but_both_client_credentials() -> None:
    base = {"slack_signing_secret": SIGNING_SECRET, "openai_api_key": "sk-test"}
    both = Settings(_env_file=None, slack_client_id=DEFAULT_CLIENT_ID, slack_client_secret="s3cret-value", **base)
    assert both.oauth_mode and missing_slack_settings(both) == []
    assert "s3cret-value" in both.secrets()
    half = Settings(_env_file=None, slack_client_id=DEFAULT_CLIENT_ID, **base)
    assert missing_slack_settings(half) == ["SLACK_CLIENT_SECRET (OAuth mode, with SLACK_CLIENT_ID)"]

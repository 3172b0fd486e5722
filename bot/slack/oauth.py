"""OAuth mode: workspaces install the app at /slack/install; their installations live in our database.

slack_sdk's async SQLAlchemy stores keep installations and OAuth states in the tables migration 0008
creates, over the bot's own async engine, so no call blocks the event loop. Bolt authorises every
request from the installation of its workspace (rotating the bot token when the app rotates tokens);
work outside a request gets the same token from `InstalledWorkspaces`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.background import BackgroundWork
from bot.conversations.uninstall import WorkspacePurger
from bot.errors import BotError
from bot.settings import Settings
from bot.slack.clients import TOKEN_ROTATION_MINUTES, InstallationStore, InstalledWorkspaces

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
# How long the person installing has between opening /slack/install and approving in Slack.
STATE_EXPIRATION_SECONDS = 600


@dataclass(frozen=True)
class OAuthInstalls:
    """What OAuth mode adds: Bolt's install flow settings, the installation store and the per-team clients."""

    settings: AsyncOAuthSettings
    installations: InstallationStore
    workspaces: InstalledWorkspaces


def oauth_installs(settings: Settings, *, engine: AsyncEngine, client: AsyncWebClient) -> OAuthInstalls:
    """The install flow over our database; `client` (no token, SLACK_API_URL) exchanges codes and refreshes tokens."""
    if settings.slack_client_id is None or settings.slack_client_secret is None:
        raise ValueError("OAuth mode needs SLACK_CLIENT_ID and SLACK_CLIENT_SECRET")
    client_id, client_secret = settings.slack_client_id, settings.slack_client_secret.get_secret_value()
    installations = InstallationStore(client_id=client_id, engine=engine)
    oauth_settings = AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=settings.slack_scopes,
        user_scopes=[],
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        installation_store=installations,
        token_rotation_expiration_minutes=TOKEN_ROTATION_MINUTES,
        state_store=AsyncSQLAlchemyOAuthStateStore(expiration_seconds=STATE_EXPIRATION_SECONDS, engine=engine),
        state_expiration_seconds=STATE_EXPIRATION_SECONDS,
    )
    workspaces = InstalledWorkspaces(
        installations=installations,
        api_url=settings.slack_api_url,
        rotator=AsyncTokenRotator(client_id=client_id, client_secret=client_secret, client=client),
        session=client.session,
    )
    return OAuthInstalls(settings=oauth_settings, installations=installations, workspaces=workspaces)


class Uninstalls:
    """`app_uninstalled` and `tokens_revoked`: the workspace's installation goes. With DATA_ON_UNINSTALL=purge an
    uninstall also records the purge of everything the workspace left, before Slack gets its 200, and starts it
    in the background (Slack wants its 200 within 3 s); an unfinished purge is resumed (`WorkspacePurger`)."""

    def __init__(
        self,
        *,
        installs: OAuthInstalls,
        purger: WorkspacePurger | None,
        background: BackgroundWork,
    ) -> None:
        self._installs = installs
        self._purger = purger
        self._background = background

    def register(self, app: AsyncApp) -> None:
        app.event("app_uninstalled")(self.on_app_uninstalled)
        app.event("tokens_revoked")(self.on_tokens_revoked)

    async def on_app_uninstalled(self, context: AsyncBoltContext) -> None:
        team_id = context.team_id
        if not team_id:
            log.warning("app_uninstalled without a team id; ignored")
            return
        await self._remove(team_id, enterprise_id=context.enterprise_id)
        log.info("workspace %s uninstalled the app: its installation is removed", team_id)
        if self._purger is not None:
            await self._purger.request(team_id)  # failing, it fails the event, which Slack then sends again
            self._background.start(self._purge(team_id), name=f"purge-{team_id}")

    async def on_tokens_revoked(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        team_id = context.team_id
        tokens = event.get("tokens")
        revoked_bot = isinstance(tokens, dict) and bool(tokens.get("bot"))
        if not team_id or not revoked_bot:
            return  # the app asks for no user tokens, so only the bot's revocation matters
        # Without its bot token the installation can do nothing: it goes whole, until the workspace installs again.
        await self._remove(team_id, enterprise_id=context.enterprise_id)
        log.info("workspace %s revoked the bot's token: its installation is removed", team_id)

    async def _remove(self, team_id: str, *, enterprise_id: str | None) -> None:
        await self._installs.installations.async_delete_all(enterprise_id=enterprise_id, team_id=team_id)
        self._installs.workspaces.forget(team_id)

    async def _purge(self, team_id: str) -> None:
        assert self._purger is not None
        try:
            await self._purger.work(team_id)
        except BotError as exc:  # the database failed: the purge stays pending, and is resumed later
            log.error("could not purge the data of workspace %s for now: %s", team_id, exc)

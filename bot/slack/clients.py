"""Which Slack client speaks for a workspace: the one bot token, or each installation's own (OAuth mode).

Listeners get their client from Bolt, which authorised the request. Work done outside a request (answers,
thread history, file downloads, people's names) asks here, by team id, for the same bot's client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import aiohttp
from slack_sdk.errors import SlackTokenRotationError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import desc, select
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import DeliveryError, PlatformUnavailable, StoreError

log = logging.getLogger(__name__)

SLACK_TIMEOUT_SECONDS = 30
# Bolt's default: a bot token expiring within this long is refreshed before it is used.
TOKEN_ROTATION_MINUTES = 120
# How long a workspace's client is used before its installation is read again: another replica may have
# seen the workspace uninstall, install again (a new token) or refresh its token meanwhile.
INSTALLATION_CACHE_SECONDS = 30.0
# How long a refresh that lost the race for the refresh token waits for the winner to save the new token.
ROTATION_RACE_READS = 10
ROTATION_RACE_SECONDS = 0.2


def web_client(*, api_url: str, token: str | None, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """A Web API client with the bot's timeout and retries; without a token for the OAuth exchange.

    Given a session, its calls share that session's connections: without one, slack_sdk opens a new session,
    and so a new connection (a TLS handshake in production), for every call.
    """
    return AsyncWebClient(
        token=token,
        base_url=api_url,
        session=session,
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        ],
    )


@dataclass(frozen=True)
class BotIdentity:
    """The bot as one workspace knows it: its user id (mentions, authors) and bot id (bot messages)."""

    user_id: str
    bot_id: str


class SlackClients(Protocol):
    """A workspace's client and bot identity, by team id."""

    async def for_team(self, team_id: str) -> AsyncWebClient:
        """The client with the workspace's bot token; DeliveryError when the app is not installed there."""
        ...

    async def identity(self, team_id: str) -> BotIdentity: ...


class OneWorkspace:
    """Single-workspace mode (SLACK_BOT_TOKEN): one client and one bot, whatever the team id."""

    def __init__(self, client: AsyncWebClient, *, identity: BotIdentity) -> None:
        self._client = client
        self._identity = identity

    async def for_team(self, team_id: str) -> AsyncWebClient:
        return self._client

    async def identity(self, team_id: str) -> BotIdentity:
        return self._identity


class InstallationStore(AsyncSQLAlchemyInstallationStore):
    """slack_sdk's installation store on our database, able to find a workspace by its team id alone.

    Work outside a request knows the team, not its Enterprise Grid org, which the store's own
    lookups need; the org is read from the workspace's newest installation.
    """

    async def find_team_installation(self, team_id: str) -> Installation | None:
        columns = self.installations.c
        async with self.engine.connect() as connection:
            newest = (
                await connection.execute(
                    select(columns.enterprise_id)
                    .where(columns.client_id == self.client_id, columns.team_id == team_id)
                    .order_by(desc(columns.installed_at))
                    .limit(1)
                )
            ).first()
        if newest is None:
            return None
        return await self.async_find_installation(enterprise_id=newest.enterprise_id, team_id=team_id)


@dataclass(frozen=True)
class _Installed:
    client: AsyncWebClient
    identity: BotIdentity
    expires_at: datetime | None  # of the bot token, when the app rotates tokens
    read_at: float  # time.monotonic() when the installation was read


class InstalledWorkspaces:
    """OAuth mode: each workspace's client, built from its installation and kept for INSTALLATION_CACHE_SECONDS
    (while its token lasts), so that streaming an answer does not read the database for every update.

    With token rotation on, a bot token that expires within TOKEN_ROTATION_MINUTES is refreshed first and
    the new one saved, as Bolt does for requests (both rotate through the same store, so either may).
    """

    def __init__(
        self,
        *,
        installations: InstallationStore,
        api_url: str,
        rotator: AsyncTokenRotator,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._installations = installations
        self._api_url = api_url
        self._session = session
        self._rotator = rotator
        self._cache: dict[str, _Installed] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def for_team(self, team_id: str) -> AsyncWebClient:
        return (await self._installed(team_id)).client

    async def identity(self, team_id: str) -> BotIdentity:
        return (await self._installed(team_id)).identity

    def forget(self, team_id: str) -> None:
        """The workspace uninstalled the app or revoked its token: build nothing more from the cached one."""
        self._cache.pop(team_id, None)

    def _fresh(self, installed: _Installed | None) -> _Installed | None:
        if installed is None or time.monotonic() - installed.read_at > INSTALLATION_CACHE_SECONDS:
            return None
        if installed.expires_at is None:
            return installed
        soon = datetime.now(UTC) + timedelta(minutes=TOKEN_ROTATION_MINUTES)
        return installed if installed.expires_at > soon else None

    async def _installed(self, team_id: str) -> _Installed:
        cached = self._fresh(self._cache.get(team_id))
        if cached is not None:
            return cached
        async with self._locks.setdefault(team_id, asyncio.Lock()):  # one rotation at a time per workspace
            cached = self._fresh(self._cache.get(team_id))
            if cached is not None:
                return cached
            async with _database(f"read the installation of workspace {team_id}"):
                installation = await self._installations.find_team_installation(team_id)
            if installation is None or not installation.bot_token:
                self._cache.pop(team_id, None)
                raise DeliveryError(f"the app is not installed in workspace {team_id}")
            installation = await self._rotated(installation)
            installed = _Installed(
                client=web_client(api_url=self._api_url, token=installation.bot_token, session=self._session),
                identity=BotIdentity(user_id=installation.bot_user_id or "", bot_id=installation.bot_id or ""),
                expires_at=_expiry(installation.bot_token_expires_at),
                read_at=time.monotonic(),
            )
            self._cache[team_id] = installed
            return installed

    async def _rotated(self, installation: Installation) -> Installation:
        if not installation.bot_refresh_token:
            return installation
        try:
            refreshed = await self._rotator.perform_token_rotation(
                installation=installation, minutes_before_expiration=TOKEN_ROTATION_MINUTES
            )
        except SlackTokenRotationError as exc:
            # Slack revokes a refresh token once used. Bolt (authorising a request) or another replica may have
            # just used this one: the store then holds its new token as soon as that one is saved. Otherwise
            # the workspace must install the app again.
            for _ in range(ROTATION_RACE_READS):
                async with _database(f"read the installation of workspace {installation.team_id}"):
                    saved = await self._installations.find_team_installation(installation.team_id or "")
                if saved is not None and saved.bot_token and saved.bot_token != installation.bot_token:
                    return saved
                await asyncio.sleep(ROTATION_RACE_SECONDS)
            error = exc.api_error.response.get("error")
            raise DeliveryError(
                f"Slack refused to refresh the bot token of workspace {installation.team_id} ({error})"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailable(f"oauth.v2.access: {type(exc).__name__}") from exc
        if refreshed is None:
            return installation
        async with _database(f"save the refreshed token of workspace {installation.team_id}"):
            await self._installations.async_save(refreshed)
        log.info("refreshed the bot token of workspace %s", installation.team_id)
        return refreshed


@contextlib.asynccontextmanager
async def _database(doing: str) -> AsyncIterator[None]:
    """slack_sdk's stores speak SQLAlchemy directly: its errors become the bot's StoreError here."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreError(f"could not {doing}: {type(exc).__name__}") from exc


def _expiry(epoch_seconds: int | None) -> datetime | None:
    return None if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, UTC)

"""Wiring: builds the bot's parts from settings, runs them, and shuts them down in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.background import BackgroundWork
from bot.conversations.backend import Backend
from bot.conversations.backends import BackendDeps, BackendPlugin, assistants, chat, responses
from bot.conversations.channels import ChannelAssistants, ConversationControl
from bot.conversations.files import FileDownloadStage, TranscriptStage
from bot.conversations.images import ImageMaker
from bot.conversations.limits import LimitsStage
from bot.conversations.moderation import (
    ModeratedAnswers,
    ModerationPolicy,
    ModerationStage,
    Moderator,
    ScreenedHistory,
)
from bot.conversations.profiles import Profile, TableProfileCatalog
from bot.conversations.retention import RetentionPurger
from bot.conversations.service import ChannelProfiles, ConversationService
from bot.conversations.tools import builtin_tools
from bot.errors import APIConnectionError, APIStatusError, ConfigurationError, StoreError
from bot.openai_api.client import OpenAIClient
from bot.openai_api.files import FilesAPI
from bot.openai_api.probe import serves
from bot.settings import Settings
from bot.slack.commands import SlackCommands
from bot.slack.directory import UserDirectory
from bot.slack.files import SlackFileDownloader
from bot.slack.home import AppHome
from bot.slack.listeners import SlackListeners
from bot.slack.replies import BotIdentity, SlackPlatform
from bot.slack.server import build_web_app
from bot.store.channels import ChannelStore
from bot.store.db import create_engine, migrate, session_factory
from bot.store.files import ApiFileRecords
from bot.store.limits import LimitsRepository
from bot.store.moderation_log import ModerationLog
from bot.store.profiles import ProfileRecords
from bot.store.repositories import Store

log = logging.getLogger(__name__)

SLACK_TIMEOUT_SECONDS = 30

# The model backends by OPENAI_BACKEND name; a new backend is one more entry here.
BACKENDS: dict[str, BackendPlugin] = {
    plugin.name: plugin for plugin in (responses.PLUGIN, assistants.PLUGIN, chat.PLUGIN)
}


@dataclass
class Bot:
    """A running bot; `port` is where its HTTP server listens."""

    settings: Settings
    service: ConversationService
    backend: Backend  # the model backend in use, and through it the profiles channels choose from
    store: Store
    port: int
    background: BackgroundWork  # slow work of slash commands, started after Slack was answered
    _stack: contextlib.AsyncExitStack

    async def stop(self) -> None:
        await self._stack.aclose()


def slack_client(settings: Settings) -> AsyncWebClient:
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        ],
    )


def openai_client(settings: Settings) -> OpenAIClient:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    return OpenAIClient(
        api_key=key,
        base_url=settings.openai_base_url,
        extra_headers=settings.openai_extra_headers,
        extra_query=settings.openai_extra_query,
        timeout=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
    )


def default_profile(settings: Settings) -> Profile:
    """The profile channels use until someone chooses another, from ASSISTANT_* settings."""
    return Profile(
        id="default",
        name=settings.assistant_name,
        model=settings.assistant_model,
        instructions=settings.assistant_instructions,
    )


def build_backend(settings: Settings, *, client: OpenAIClient, store: Store) -> Backend:
    return chosen_backend(settings).build(
        BackendDeps(
            client=client,
            files=FilesAPI(client),
            store=store,
            file_records=ApiFileRecords(store),
            table_profiles=TableProfileCatalog(ProfileRecords(store), configured_default=default_profile(settings)),
            settings=settings,
        )
    )


def chosen_backend(settings: Settings) -> BackendPlugin:
    plugin = BACKENDS.get(settings.openai_backend.strip().lower())
    if plugin is None:
        raise ConfigurationError(f"OPENAI_BACKEND must be one of {', '.join(BACKENDS)}")
    return plugin


async def check_api(client: OpenAIClient, settings: Settings) -> None:
    """Refuse to start when the server lacks what the settings need; one line names what it does offer.

    Every probe costs no tokens (a missing object, a list, an empty moderation input).
    """
    plugin = chosen_backend(settings)
    host = url_host(settings.openai_base_url)
    try:
        if not await _serves_all(client, plugin):
            offered = [
                name for name, other in BACKENDS.items() if other is not plugin and await _serves_all(client, other)
            ]
            offer = f"it offers: {', '.join(offered)}" if offered else "it offers none of the backends"
            raise ConfigurationError(
                f"the API at {host} does not serve the {plugin.name} backend ({plugin.summary}); {offer}. "
                "Set OPENAI_BACKEND (or OPENAI_BASE_URL) accordingly"
            )
        if settings.moderation != "off" and not await serves(
            client, "POST", "/moderations", {"input": "", "model": settings.moderation_model}
        ):
            raise ConfigurationError(
                f"the API at {host} does not serve /moderations, which MODERATION={settings.moderation} needs; "
                "set MODERATION=off or point OPENAI_BASE_URL at a server that has it"
            )
    except APIStatusError as exc:
        raise ConfigurationError(
            f"the API at {host} refused the bot's credentials (HTTP {exc.status_code}); check OPENAI_API_KEY"
        ) from None
    except APIConnectionError:
        raise ConfigurationError(f"could not reach the API at {host}; check OPENAI_BASE_URL") from None


async def check_slack(client: AsyncWebClient, settings: Settings) -> BotIdentity:
    """Who the bot is, from auth.test; a Slack that cannot be reached, or refuses the token, stops the
    start with one line naming the host and the setting to fix."""
    host = url_host(settings.slack_api_url)
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error")
        if not isinstance(error, str):  # not the Web API's answer: another server, or a proxy's error page
            raise ConfigurationError(
                f"the server at {host} does not answer as Slack's Web API does (HTTP {exc.response.status_code}); "
                "check SLACK_API_URL"
            ) from None
        raise ConfigurationError(f"SLACK_BOT_TOKEN was refused by Slack ({error})") from None
    except aiohttp.ClientProxyConnectionError:
        raise ConfigurationError(
            f"could not reach Slack at {host} through the proxy at {url_host(client.proxy or '')}; "
            "check HTTPS_PROXY (or HTTP_PROXY)"
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigurationError(
            f"could not reach Slack at {host} ({_unreachable(exc)}); check SLACK_API_URL"
        ) from None
    return BotIdentity(user_id=auth["user_id"], bot_id=auth.get("bot_id") or "")


async def socket_url(client: AsyncWebClient, app_token: str) -> str:
    """The Socket Mode connection's URL. The SDK retries a refused app-level token for ever, so it is asked
    for here, before anything else starts: a token Slack refuses stops the start with one line."""
    try:
        opened = await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        raise ConfigurationError(
            f"SLACK_APP_TOKEN was refused by Slack ({exc.response.get('error')}); check SLACK_APP_TOKEN "
            "(an app-level token, xapp-..., with the connections:write scope)"
        ) from None
    url: str = opened["url"]
    return url


def _unreachable(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "the name does not resolve"
    if isinstance(error, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "its TLS certificate was not accepted"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "the connection was refused" if isinstance(error.os_error, ConnectionRefusedError) else "no connection"
    if isinstance(error, TimeoutError):
        return f"no answer within {SLACK_TIMEOUT_SECONDS} s"
    return "the connection failed"


async def _serves_all(client: OpenAIClient, plugin: BackendPlugin) -> bool:
    for probe in plugin.probes:
        if not await serves(client, probe.method, probe.path, probe.body):
            return False
    return True


def url_host(url: str) -> str:
    """host[:port] of a URL, without any credentials it carries (a proxy's, a gateway's)."""
    parts = urlsplit(url if "//" in url else f"//{url}")  # a proxy may be given as host:port alone
    try:
        port = parts.port
    except ValueError:  # not a number: show no port rather than fail the message
        port = None
    host = parts.hostname or url.rpartition("@")[2]
    return f"{host}:{port}" if port else host


async def start_bot(settings: Settings) -> Bot:
    """Migrate, connect, register listeners, resume unfinished work and start serving."""
    stack = contextlib.AsyncExitStack()
    try:
        return await _start(settings, stack)
    except BaseException:
        await stack.aclose()
        raise


async def _start(settings: Settings, stack: contextlib.AsyncExitStack) -> Bot:
    ready = False
    openai = openai_client(settings)
    stack.push_async_callback(openai.aclose)
    await check_api(openai, settings)
    engine = create_engine(settings.database_url)
    stack.push_async_callback(engine.dispose)
    await migrate(engine)
    store = Store(session_factory(engine))
    if engine.dialect.name == "sqlite":
        # SQLite serves one process: every lease left is a dead process's, and its work can resume at once.
        await store.free_every_lease()

    client = slack_client(settings)
    identity = await check_slack(client, settings)
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
    opened_socket_url = await socket_url(client, app_token) if app_token else None
    files_api = FilesAPI(openai)
    downloader = SlackFileDownloader(
        token=settings.slack_bot_token.get_secret_value(), api_url=settings.slack_api_url, max_mb=settings.max_file_mb
    )
    stack.push_async_callback(downloader.aclose)

    tools = builtin_tools()
    backend = build_backend(settings, client=openai, store=store)
    users = UserDirectory(client)
    platform = SlackPlatform(
        client,
        identity=identity,
        users=users,
        message_chars=settings.max_message_chars,
        update_seconds=settings.stream_update_seconds,
    )
    profiles = ChannelProfiles(store=store, backend=backend)
    moderation_log = ModerationLog(store)
    moderator = Moderator(
        openai,
        ModerationPolicy(
            mode=settings.moderation,
            model=settings.moderation_model,
            thresholds=settings.moderation_thresholds,
            block_on_error=settings.moderation_on_error == "block",
            keep_text=settings.moderation_keep_text,
        ),
        moderation_log,
    )
    service = ConversationService(
        store=store,
        backend=backend,
        platform=ScreenedHistory(platform, moderator),
        profiles=profiles,
        tools=tools,
        input_stages=[
            LimitsStage(
                LimitsRepository(store),
                max_chars=settings.max_input_chars,
                max_files=settings.max_files_per_message,
                per_minute=settings.user_rate_limit,
            ),
            FileDownloadStage(
                source=downloader,
                transcriber=files_api,
                transcription_model=settings.transcription_model,
                max_message_mb=settings.max_message_files_mb,
            ),
            # Files are downloaded (and voice clips transcribed) before moderation; the backend uploads them.
            ModerationStage(moderator),
            TranscriptStage(),
        ],
        output_stages=[ModeratedAnswers(moderator, update_seconds=settings.stream_update_seconds)],
        lease_seconds=settings.lease_seconds,
        sweep_seconds=settings.sweep_seconds,
        max_attempts=settings.max_turn_attempts,
    )
    # Beating from now until the workers are done (the exit stack runs in reverse), so that no lease is
    # taken from a live process; a clean exit then deletes the heartbeat, freeing whatever is left.
    heartbeat = asyncio.create_task(service.heartbeat_forever(), name="heartbeat")
    stack.push_async_callback(_stop_heartbeat, heartbeat, store)

    bolt_app = AsyncApp(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
        # Listeners only record the turn (fast, durable) before Slack gets its 200; answering runs after.
        process_before_response=True,
        request_verification_enabled=not settings.socket_mode,
    )
    SlackListeners(
        service=service,
        users=users,
        identity=identity,
        reply_without_mention=settings.reply_without_mention,
        greeting=settings.greeting,
    ).register(bolt_app)
    background = BackgroundWork()
    stack.push_async_callback(_finish_work, service, background, settings.shutdown_grace_seconds)
    channel_store = ChannelStore(store)
    channel_assistants = ChannelAssistants(
        backend=backend,
        models=openai,
        profiles=profiles,
        store=store,
        channel_store=channel_store,
        admin_user_ids=settings.admin_user_ids,
        allowed_profile_ids=settings.allowed_profile_ids,
    )
    SlackCommands(
        service=service,
        assistants=channel_assistants,
        control=ConversationControl(backend=backend, store=store, channel_store=channel_store),
        images=ImageMaker(
            openai,
            moderator=moderator,
            moderation_log=moderation_log,
            model=settings.image_model,
            size=settings.image_size,
        ),
        users=users,
        background=background,
    ).register(bolt_app)
    AppHome(assistants=channel_assistants).register(bolt_app)

    web_app = build_web_app(None if settings.socket_mode else bolt_app, is_ready=lambda: ready)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host=settings.host, port=settings.port)
    await site.start()
    port = runner.addresses[0][1]

    if app_token is not None and opened_socket_url is not None:
        handler = AsyncSocketModeHandler(bolt_app, app_token)
        stack.push_async_callback(handler.close_async)
        handler.client.wss_uri = opened_socket_url
        await handler.connect_async()  # type: ignore[no-untyped-call]  # Bolt leaves it unannotated

    resumed = await service.recover()
    sweeper = asyncio.create_task(service.sweep_forever(), name="recovery-sweep")
    stack.push_async_callback(_cancel, sweeper)
    if settings.retention_days:
        purger = RetentionPurger(store=store, backend=backend, retention_days=settings.retention_days)
        purging = asyncio.create_task(purger.purge_forever(), name="retention-purge")
        stack.push_async_callback(_cancel, purging)
    ready = True
    log.info(
        "bot ready (%s, port %d, %s backend, bot user %s); resumed %d conversations",
        "socket mode" if settings.socket_mode else "HTTP",
        port,
        backend.name,
        identity.user_id,
        resumed,
    )
    return Bot(
        settings=settings, service=service, backend=backend, store=store, port=port, background=background, _stack=stack
    )


async def _finish_work(service: ConversationService, background: BackgroundWork, grace_seconds: float) -> None:
    """Answers in progress and slash commands' work share one grace period, so that stopping takes no longer."""
    await asyncio.gather(service.shutdown(grace_seconds), background.shutdown(grace_seconds))


async def _stop_heartbeat(heartbeat: asyncio.Task[None], store: Store) -> None:
    await _cancel(heartbeat)
    try:
        await store.stop_beating()
    except StoreError as exc:  # the heartbeat goes stale by itself, freeing the leases a little later
        log.warning("could not remove this process's heartbeat: %s", exc)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_until_signalled(settings: Settings) -> None:
    """`python -m bot run`: serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bot = await start_bot(settings)
    try:
        await stop.wait()
        log.info("shutting down: finishing in-flight answers for up to %.0f s", settings.shutdown_grace_seconds)
    finally:
        await bot.stop()

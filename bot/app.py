"""Wiring: builds the bot's parts from settings, runs them, and shuts them down in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.background import BackgroundWork
from bot.conversations.backend import Backend
from bot.conversations.backends import BackendDeps, BackendPlugin, assistants, chat, responses
from bot.conversations.channels import ChannelAssistants, ChannelSettings, ConversationControl
from bot.conversations.files import FileDownloadStage, FileSource, TranscriptStage
from bot.conversations.images import ImageMaker
from bot.conversations.limits import LimitsStage
from bot.conversations.mcp import McpApprovals
from bot.conversations.moderation import (
    ModeratedAnswers,
    ModerationPolicy,
    ModerationStage,
    Moderator,
    ScreenedHistory,
)
from bot.conversations.ports import Platform
from bot.conversations.profiles import BUILTIN_TOOLS, Profile, TableProfileCatalog
from bot.conversations.reading import ReadingTools
from bot.conversations.retention import RetentionPurger
from bot.conversations.service import ChannelProfiles, ConversationService
from bot.conversations.tools import ToolRegistry, builtin_tools
from bot.conversations.uninstall import WorkspacePurger
from bot.errors import APIConnectionError, APIStatusError, ConfigurationError, StoreError
from bot.loop_thread import LoopThread
from bot.metrics import BotMetrics
from bot.openai_api.client import OpenAIClient, RequestObserver
from bot.openai_api.files import FilesAPI
from bot.openai_api.probe import serves
from bot.settings import Settings, require_slack_settings
from bot.slack.clients import SLACK_TIMEOUT_SECONDS, BotIdentity, OneWorkspace, SlackClients, web_client
from bot.slack.commands import SlackCommands
from bot.slack.directory import UserDirectory
from bot.slack.feedback import FeedbackListeners
from bot.slack.files import SlackFileDownloader
from bot.slack.home import AppHome
from bot.slack.listeners import SlackListeners
from bot.slack.mcp import McpCommands, SlackApprovalPrompts
from bot.slack.oauth import INSTALL_PATH, Uninstalls, oauth_installs
from bot.slack.reader import SlackReader
from bot.slack.replies import SlackPlatform
from bot.slack.server import build_web_app
from bot.slack.stop import StopListeners
from bot.store.activity import Activity
from bot.store.channels import ChannelStore
from bot.store.db import create_engine, migrate, readiness_problem, session_factory
from bot.store.feedback import FeedbackStore
from bot.store.files import ApiFileRecords
from bot.store.limits import LimitsRepository
from bot.store.mcp import McpRecords, SecretBox
from bot.store.moderation_log import ModerationLog
from bot.store.profiles import ProfileRecords
from bot.store.repositories import Store
from bot.store.workspaces import WorkspaceRecords

log = logging.getLogger(__name__)

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


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def slack_client(settings: Settings, *, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The app's client: with SLACK_BOT_TOKEN, or without a token in OAuth mode (it exchanges install codes)."""
    token = None if settings.oauth_mode else _secret(settings.slack_bot_token) or None
    return web_client(api_url=settings.slack_api_url, token=token, session=session)


def openai_client(settings: Settings, *, observer: RequestObserver | None = None) -> OpenAIClient:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    return OpenAIClient(
        api_key=key,
        base_url=settings.openai_base_url,
        extra_headers=settings.openai_extra_headers,
        extra_query=settings.openai_extra_query,
        timeout=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
        observer=observer,
    )


# The default profile's built-in tools when ASSISTANT_TOOLS is unset: those of these the backend runs.
DEFAULT_ASSISTANT_TOOLS = ("web_search",)
# Connections the kernel queues before the server accepts them: a burst of events must not be refused.
LISTEN_BACKLOG = 2048
# Connections kept for acks (Store's urgent writes), so that they never wait for one behind answers' work.
URGENT_CONNECTIONS = 2
# The heartbeat's, on its own loop: one beat at a time.
HEARTBEAT_CONNECTIONS = 1


def default_profile(settings: Settings, plugin: BackendPlugin) -> Profile:
    """The profile channels use until someone chooses another, from ASSISTANT_* settings; ConfigurationError
    when ASSISTANT_TOOLS names a tool the backend cannot run."""
    capabilities = plugin.capabilities
    if settings.assistant_tools is None:
        tools = tuple(tool for tool in DEFAULT_ASSISTANT_TOOLS if capabilities.supports(tool))
    else:
        tools = tuple(settings.assistant_tools)
        refused = [tool for tool in tools if not capabilities.supports(tool)]
        if refused:
            runs = [tool for tool in BUILTIN_TOOLS if capabilities.supports(tool)]
            raise ConfigurationError(
                f"ASSISTANT_TOOLS names {', '.join(refused)}, which the {plugin.name} backend cannot run "
                f"(it runs {', '.join(runs) or 'none of the built-in tools'}); remove it or change OPENAI_BACKEND"
            )
    return Profile(
        id="default",
        name=settings.assistant_name,
        model=settings.assistant_model,
        instructions=settings.assistant_instructions,
        tools=tools,
    )


def build_backend(
    settings: Settings, *, client: OpenAIClient, store: Store, mcp: McpApprovals | None = None
) -> Backend:
    plugin = chosen_backend(settings)
    configured_default = default_profile(settings, plugin)
    return plugin.build(
        BackendDeps(
            client=client,
            files=FilesAPI(client),
            store=store,
            file_records=ApiFileRecords(store),
            table_profiles=TableProfileCatalog(ProfileRecords(store), configured_default=configured_default),
            settings=settings,
            mcp=mcp,
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
    await check_backend_routes(client, settings)
    await check_moderation_route(client, settings)


async def check_backend_routes(client: OpenAIClient, settings: Settings) -> None:
    """The chosen backend's routes are served (and the credentials accepted); else the backends that are."""
    plugin = chosen_backend(settings)
    async with _api_answers(settings):
        if not await _serves_all(client, plugin):
            offered = [
                name for name, other in BACKENDS.items() if other is not plugin and await _serves_all(client, other)
            ]
            offer = f"it offers: {', '.join(offered)}" if offered else "it offers none of the backends"
            raise ConfigurationError(
                f"the API at {url_host(settings.openai_base_url)} does not serve the {plugin.name} backend "
                f"({plugin.summary}); {offer}. Set OPENAI_BACKEND (or OPENAI_BASE_URL) accordingly"
            )


async def check_moderation_route(client: OpenAIClient, settings: Settings) -> None:
    """/moderations is served, unless MODERATION=off."""
    if settings.moderation == "off":
        return
    async with _api_answers(settings):
        if not await serves(client, "POST", "/moderations", {"input": "", "model": settings.moderation_model}):
            raise ConfigurationError(
                f"the API at {url_host(settings.openai_base_url)} does not serve /moderations, which "
                f"MODERATION={settings.moderation} needs; set MODERATION=off or point OPENAI_BASE_URL at a server "
                "that has it"
            )


@contextlib.asynccontextmanager
async def _api_answers(settings: Settings) -> AsyncIterator[None]:
    """Refused credentials and an unreachable server, as one line naming the host and the setting to fix."""
    host = url_host(settings.openai_base_url)
    try:
        yield
    except APIStatusError as exc:
        raise ConfigurationError(
            f"the API at {host} refused the bot's credentials (HTTP {exc.status_code}); check OPENAI_API_KEY"
        ) from None
    except APIConnectionError:
        raise ConfigurationError(f"could not reach the API at {host}; check OPENAI_BASE_URL") from None


async def check_slack(client: AsyncWebClient, settings: Settings) -> BotIdentity:
    """Who the bot is, from auth.test; a Slack that cannot be reached, or refuses the token, stops the
    start with one line naming the host and the setting to fix."""
    auth = await slack_auth(client, settings)
    return BotIdentity(user_id=auth["user_id"], bot_id=auth.get("bot_id") or "")


async def slack_auth(client: AsyncWebClient, settings: Settings) -> AsyncSlackResponse:
    """Slack's auth.test answer (its headers name the token's scopes), or one line saying what to fix."""
    host = url_host(settings.slack_api_url)
    try:
        return await client.auth_test()
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


@dataclass
class Core:
    """The bot without Slack, the same for `run` and `shell`: the API, the database, the backend, moderation."""

    openai: OpenAIClient
    store: Store
    backend: Backend
    profiles: ChannelProfiles
    tools: ToolRegistry
    moderator: Moderator
    moderation_log: ModerationLog
    engine: AsyncEngine
    metrics: BotMetrics
    mcp: McpApprovals
    heartbeat_loop: HeartbeatLoop


@dataclass
class HeartbeatLoop:
    """The loop, on a thread of its own, of the heartbeat, which must never wait behind answers: a process busy
    answering is alive, and its leases must hold. With a store of the same process connected there."""

    thread: LoopThread
    store: Store


async def open_heartbeat_loop(settings: Settings, store: Store, stack: contextlib.AsyncExitStack) -> HeartbeatLoop:
    thread = LoopThread("heartbeat")
    thread.start()
    stack.push_async_callback(thread.stop)
    engine = create_engine(settings.database_url, connections=HEARTBEAT_CONNECTIONS)
    stack.push_async_callback(lambda: thread.submit(engine.dispose()))
    sessions = session_factory(engine)
    return HeartbeatLoop(thread=thread, store=Store(sessions, urgent=sessions, process_id=store.process_id))


def serves_one_process(engine: AsyncEngine) -> bool:
    """SQLite serves one process: no other can hold, or take over, a lease of its database."""
    return engine.dialect.name == "sqlite"


async def open_core(settings: Settings, stack: contextlib.AsyncExitStack) -> Core:
    """Check the API, migrate the database and build what answers conversations; closed by the stack."""
    metrics = BotMetrics(backend=chosen_backend(settings).name)
    openai = openai_client(settings, observer=metrics)
    stack.push_async_callback(openai.aclose)
    await check_api(openai, settings)
    engine = create_engine(settings.database_url)
    stack.push_async_callback(engine.dispose)
    await migrate(engine)
    urgent_engine = create_engine(settings.database_url, connections=URGENT_CONNECTIONS)
    stack.push_async_callback(urgent_engine.dispose)
    store = Store(session_factory(engine), urgent=session_factory(urgent_engine))
    metrics.read_activity_from(Activity(store))
    if serves_one_process(engine):
        # Every lease left is a dead process's, and its work can resume at once.
        await store.free_every_lease()
        await WorkspaceRecords(store).release_every_purge_claim()
    heartbeat_loop = await open_heartbeat_loop(settings, store, stack)
    mcp_key = settings.mcp_secret_key.get_secret_value() if settings.mcp_secret_key else None
    mcp = McpApprovals(
        McpRecords(store, secrets=SecretBox(mcp_key)),
        timeout_seconds=settings.mcp_approval_timeout_seconds,
        admins_may_approve=settings.mcp_admins_may_approve,
    )
    backend = build_backend(settings, client=openai, store=store, mcp=mcp)
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
    return Core(
        openai=openai,
        store=store,
        backend=backend,
        profiles=ChannelProfiles(store=store, backend=backend),
        tools=builtin_tools(),
        moderator=moderator,
        moderation_log=moderation_log,
        engine=engine,
        metrics=metrics,
        mcp=mcp,
        heartbeat_loop=heartbeat_loop,
    )


def start_service(
    settings: Settings, core: Core, stack: contextlib.AsyncExitStack, *, platform: Platform, files: FileSource
) -> ConversationService:
    """The conversation service answering through `platform`, its files fetched from `files`, heartbeat beating."""
    service = ConversationService(
        store=core.store,
        backend=core.backend,
        platform=ScreenedHistory(platform, core.moderator),
        profiles=core.profiles,
        tools=core.tools,
        input_stages=[
            LimitsStage(
                LimitsRepository(core.store),
                max_chars=settings.max_input_chars,
                max_files=settings.max_files_per_message,
                per_minute=settings.user_rate_limit,
            ),
            FileDownloadStage(
                source=files,
                transcriber=FilesAPI(core.openai),
                transcription_model=settings.transcription_model,
                max_message_mb=settings.max_message_files_mb,
            ),
            # Files are downloaded (and voice clips transcribed) before moderation; the backend uploads them.
            ModerationStage(core.moderator),
            TranscriptStage(),
        ],
        output_stages=[ModeratedAnswers(core.moderator, update_seconds=settings.stream_update_seconds)],
        lease_seconds=settings.lease_seconds,
        sweep_seconds=settings.sweep_seconds,
        max_attempts=settings.max_turn_attempts,
        max_concurrent_answers=settings.max_concurrent_answers,
        leases_shared=not serves_one_process(core.engine),
        observer=core.metrics,
    )
    # Beating from now until the workers are done (the exit stack runs in reverse), so that no lease is
    # taken from a live process; a clean exit then deletes the heartbeat, freeing whatever is left.
    heartbeat = core.heartbeat_loop.thread.submit(service.heartbeat_forever(core.heartbeat_loop.store))
    stack.push_async_callback(_stop_heartbeat, service, heartbeat, core.store)
    return service


def channel_assistants(settings: Settings, core: Core) -> ChannelAssistants:
    """Choosing a channel's assistant, for `/assistant` in Slack and in the shell."""
    return ChannelAssistants(
        backend=core.backend,
        models=core.openai,
        profiles=core.profiles,
        store=core.store,
        channel_store=ChannelStore(core.store),
        admin_user_ids=settings.admin_user_ids,
        allowed_profile_ids=settings.allowed_profile_ids,
    )


async def _start(settings: Settings, stack: contextlib.AsyncExitStack) -> Bot:
    ready = False
    require_slack_settings(settings)
    core = await open_core(settings, stack)
    openai, store, backend, moderator, moderation_log = (
        core.openai,
        core.store,
        core.backend,
        core.moderator,
        core.moderation_log,
    )

    # One session for every Slack call, so that they share connections; closed after everything using it.
    slack_session = aiohttp.ClientSession()
    stack.push_async_callback(slack_session.close)
    client = slack_client(settings, session=slack_session)
    installs = oauth_installs(settings, engine=core.engine, client=client) if settings.oauth_mode else None
    clients: SlackClients
    if installs is None:
        identity = await check_slack(client, settings)
        clients = OneWorkspace(client, identity=identity)
        bot_user = f"bot user {identity.user_id}"
    else:
        # There is no bot token to check: each workspace's comes with its installation.
        log.info("OAuth mode: workspaces install the app at %s; no auth.test at start", INSTALL_PATH)
        clients = installs.workspaces
        bot_user = "OAuth mode"
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
    opened_socket_url = await socket_url(client, app_token) if app_token else None
    downloader = SlackFileDownloader(clients=clients, api_url=settings.slack_api_url, max_mb=settings.max_file_mb)
    stack.push_async_callback(downloader.aclose)

    users = UserDirectory(clients)
    channel_settings = ChannelSettings(
        channel_store=ChannelStore(store), reply_without_mention=settings.reply_without_mention
    )

    async def feedback_enabled(team_id: str, channel_id: str) -> bool:
        return await channel_settings.feedback_enabled(team_id=team_id, channel_id=channel_id)

    platform = SlackPlatform(
        clients,
        users=users,
        feedback_enabled=feedback_enabled,
        message_chars=settings.max_message_chars,
        update_seconds=settings.stream_update_seconds,
        status_refresh_seconds=settings.status_refresh_seconds,
    )
    reading = ReadingTools(
        reader=SlackReader(clients, users=users),
        moderator=moderator,
        max_tokens=settings.read_tools_max_tokens,
    )
    for tool in reading.tools():  # read Slack itself, so only where the bot is in Slack (not in the shell)
        core.tools.register(tool)
    service = start_service(settings, core, stack, platform=platform, files=downloader)

    bolt_app = AsyncApp(
        # Named, or Bolt names it after its caller's file through inspect.stack(), which reads every frame's source.
        name="slack-assistant-bot",
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
        # Listeners only record the turn (fast, durable) before Slack gets its 200; answering runs after.
        process_before_response=True,
        request_verification_enabled=not settings.socket_mode,
        # OAuth mode: every request is authorised with the installation of its workspace.
        oauth_settings=installs.settings if installs else None,
        installation_store=installs.installations if installs else None,
    )
    SlackListeners(
        service=service,
        users=users,
        clients=clients,
        channel_settings=channel_settings,
        greeting=settings.greeting,
    ).register(bolt_app)
    background = BackgroundWork()
    stack.push_async_callback(_finish_work, service, background, settings.shutdown_grace_seconds)
    uninstall_purger: WorkspacePurger | None = None
    if installs is not None:
        uninstall_purger = (
            WorkspacePurger(
                control=ConversationControl(backend=backend, store=store, channel_store=ChannelStore(store)),
                records=WorkspaceRecords(store),
                profiles=backend.profiles,
            )
            if settings.data_on_uninstall == "purge"
            else None
        )
        Uninstalls(installs=installs, purger=uninstall_purger, background=background).register(bolt_app)
    assistants = channel_assistants(settings, core)
    feedback = FeedbackStore(store)
    core.mcp.connect(
        prompts=SlackApprovalPrompts(clients, timeout_seconds=settings.mcp_approval_timeout_seconds),
        schedule=service.schedule,
    )
    mcp_commands = McpCommands(
        approvals=core.mcp,
        assistants=assistants,
        profiles=backend.profiles if isinstance(backend.profiles, TableProfileCatalog) else None,
        users=users,
        background=background,
        allow_http_loopback=settings.mcp_allow_http_loopback,
    )
    mcp_commands.register(bolt_app)
    commands = SlackCommands(
        service=service,
        assistants=assistants,
        control=ConversationControl(backend=backend, store=store, channel_store=ChannelStore(store)),
        images=ImageMaker(
            openai,
            moderator=moderator,
            moderation_log=moderation_log,
            model=settings.image_model,
            size=settings.image_size,
        ),
        users=users,
        background=background,
        channel_settings=channel_settings,
        feedback=feedback,
        mcp=mcp_commands.handle,
        mcp_servers=mcp_commands.offered,
    )
    commands.register(bolt_app)
    StopListeners(service=service, is_admin=commands.is_admin, background=background).register(bolt_app)
    FeedbackListeners(feedback=feedback, background=background).register(bolt_app)
    AppHome(assistants=assistants).register(bolt_app)

    web_app = build_web_app(
        None if settings.socket_mode else bolt_app,
        is_ready=lambda: ready,
        readiness_problem=lambda: readiness_problem(core.engine),
        metrics=core.metrics,
        oauth_flow=bolt_app.oauth_flow,
    )
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host=settings.host, port=settings.port, backlog=LISTEN_BACKLOG)
    await site.start()
    port = runner.addresses[0][1]

    if app_token is not None and opened_socket_url is not None:
        handler = AsyncSocketModeHandler(bolt_app, app_token)
        stack.push_async_callback(handler.close_async)
        handler.client.wss_uri = opened_socket_url
        await handler.connect_async()  # type: ignore[no-untyped-call]  # Bolt leaves it unannotated

    resumed = await service.recover()
    sweeper = asyncio.create_task(service.sweep_forever(), name="recovery-sweep")
    expiring = asyncio.create_task(core.mcp.expire_forever(), name="mcp-approval-timeouts")
    stack.push_async_callback(_cancel, expiring)
    stack.push_async_callback(_cancel, sweeper)
    if uninstall_purger is not None:  # a purge a dead process left, or one that failed, is taken up again
        resuming = asyncio.create_task(uninstall_purger.resume_forever(settings.sweep_seconds), name="workspace-purges")
        stack.push_async_callback(_cancel, resuming)
    if settings.retention_days or installs is not None:  # OAuth mode: expired OAuth states go, too
        purger = RetentionPurger(store=store, backend=backend, retention_days=settings.retention_days)
        purging = asyncio.create_task(purger.purge_forever(), name="retention-purge")
        stack.push_async_callback(_cancel, purging)
    ready = True
    log.info(
        "bot ready (%s, port %d, %s backend, %s); resumed %d conversations",
        "socket mode" if settings.socket_mode else "HTTP",
        port,
        backend.name,
        bot_user,
        resumed,
    )
    return Bot(
        settings=settings, service=service, backend=backend, store=store, port=port, background=background, _stack=stack
    )


async def _finish_work(service: ConversationService, background: BackgroundWork, grace_seconds: float) -> None:
    """Answers in progress and slash commands' work share one grace period, so that stopping takes no longer."""
    await asyncio.gather(service.shutdown(grace_seconds), background.shutdown(grace_seconds))


async def _stop_heartbeat(service: ConversationService, heartbeat: asyncio.Future[None], store: Store) -> None:
    service.end_heartbeat()
    await heartbeat
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

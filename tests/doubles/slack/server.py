"""The Slack double's core: the HTTP server, auth, method dispatch, faults, recording and Socket Mode."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from . import assistant, files, oauth, people, users, views
from .methods import METHODS, Method, Params, SlackError, web_api
from .records import HumanPost, RecordedCall, Recording, ResponseUrlPost
from .references import event_sample_path, response_shape, sample_shape
from .workspace import BOT_NAME, Workspace, next_ts, random_id, ts_key

DEFAULT_APP_ID = "A0APP"
DEFAULT_VERIFICATION_TOKEN = "verification-token"


@dataclass
class Fault:
    error: str
    status: int
    headers: dict[str, str]
    remaining: int


@dataclass(frozen=True)
class ResponseTarget:
    team_id: str
    channel: str | None
    user: str | None


class SlackDouble:
    """Slack's Web API on 127.0.0.1 for a slack_sdk client, with workspaces, channels, messages and files in memory."""

    def __init__(
        self,
        *,
        team_id: str = "T0TEAM",
        bot_token: str = "xoxb-test-token",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = DEFAULT_APP_ID,
        verification_token: str = DEFAULT_VERIFICATION_TOKEN,
        app_token: str = "xapp-test-app-token",
    ):
        self.app_id = app_id
        self.verification_token = verification_token
        self.app_token = app_token
        self._sockets: list[web.WebSocketResponse] = []
        self._primary = (team_id, bot_token, bot_user_id, bot_id)
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self.reset()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SlackDouble:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="slack-double", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError("the Slack double did not start") from (failure[0] if failure else None)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = self._port = None

    def __enter__(self) -> SlackDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(self._web_app(), access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        except BaseException as error:  # reported to start() in the caller's thread
            failure.append(error)
            loop.close()
            ready.set()
            return
        self._port = runner.addresses[0][1]
        self._loop = loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def _web_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{upload_id}", self._handle_upload)
        app.router.add_get("/files-pri/{team_file}/{tail:.+}", self._handle_download)
        app.router.add_post("/response/{key}", self._handle_response_url)
        app.router.add_get("/socket-mode", self._handle_socket)
        return app

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("start() the Slack double first")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def reset(self) -> None:
        """Forget everything except the constructor's workspace, which starts empty again."""
        with self._lock:
            self._workspaces: dict[str, Workspace] = {}
            # Web API handlers append what they record here; read it through the properties below.
            self.recording = Recording()
            self._faults: dict[str, deque[Fault]] = {}
            self._response_targets: dict[str, ResponseTarget] = {}
            # False plays an app installed without the files:read scope: downloads get the sign-in page.
            self.files_read_granted = True
            # Slack ends a stream nothing was streamed into for about five minutes (2025-10); tests shorten it.
            self.stream_idle_seconds = 300.0
            self._socket_acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
            # The app's client id and secret, and what its OAuth installs issued (oauth.py).
            self.oauth = oauth.OAuthApp()
            self.add_workspace(*self._primary)

    # -- workspaces, users, channels, files ------------------------------------------------------

    def add_workspace(self, team_id: str, bot_token: str, bot_user_id: str, bot_id: str) -> None:
        with self._lock:
            if any(ws.bot_token == bot_token for ws in self._workspaces.values()):
                raise ValueError(f"token {bot_token!r} already belongs to a workspace")
            self._workspaces[team_id] = Workspace(team_id, bot_token, bot_user_id, bot_id, self.app_id)
            self.add_user(bot_user_id, name=BOT_NAME, real_name="Assistant", is_bot=True, team_id=team_id)

    def add_user(
        self,
        user_id: str,
        *,
        name: str,
        display_name: str | None = None,
        real_name: str | None = None,
        tz: str = "America/New_York",
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(team_id)
            user = users.user_object(
                ws,
                user_id,
                name=name,
                display_name=display_name,
                real_name=real_name,
                tz=tz,
                is_admin=is_admin,
                is_owner=is_owner,
                is_bot=is_bot,
            )
            ws.users[user_id] = user
            return copy.deepcopy(user)

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        is_private: bool = False,
        is_im: bool = False,
        is_mpim: bool = False,
        user: str | None = None,
        team_id: str | None = None,
        members: Iterable[str] | None = None,
        topic: str = "",
    ) -> None:
        """A conversation; members default to the bot (and the IM's user), so the bot can post and read."""
        with self._lock:
            self._workspace(team_id).add_channel(
                channel_id,
                name=name,
                is_private=is_private,
                is_im=is_im,
                is_mpim=is_mpim,
                user=user,
                members=members,
                topic=topic,
            )

    def add_file(
        self,
        name: str,
        content: bytes,
        *,
        user: str,
        mimetype: str | None = None,
        title: str | None = None,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """A file a person uploaded; pass the result to human_posts(files=...). Returns Slack's file object."""
        with self._lock:
            ws = self._workspace(team_id)
            stored = files.new_file(ws, name=name, title=title or name, user=user, size=len(content), mimetype=mimetype)
            stored.content = content
            return files.file_object(ws, stored, base_url=self.base_url)

    # -- inspection ------------------------------------------------------------------------------

    def messages(
        self, channel: str, *, thread_ts: str | None = None, team_id: str | None = None
    ) -> list[dict[str, Any]]:
        """What a person sees now: top-level messages, or a thread's parent and replies, oldest first."""
        with self._lock:
            ws = self._workspace(team_id)
            ws.known_channel(channel)
            return [ws.message_view(m) for m in ws.visible(channel, thread_ts)]

    def bot_messages(
        self, channel: str, thread_ts: str | None = None, *, team_id: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            ws = self._workspace(team_id)
            return [
                m
                for m in self.messages(channel, thread_ts=thread_ts, team_id=ws.team_id)
                if m.get("bot_id") == ws.bot_id
            ]

    def ephemeral(self, channel: str, user: str | None = None, *, team_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            ws = self._workspace(team_id)
            return [
                copy.deepcopy(e)
                for e in ws.ephemeral
                if e["channel"] == channel and (user is None or e["user"] == user)
            ]

    def update_history(self, channel: str, ts: str, *, team_id: str | None = None) -> list[str]:
        """Every text the message showed, from first post through updates and streamed appends."""
        with self._lock:
            return list(self._workspace(team_id).existing(channel, ts).texts)

    def current_status(self, channel: str, thread_ts: str, *, team_id: str | None = None) -> str:
        """The assistant status shown in a thread now; Slack clears it when the app replies there."""
        with self._lock:
            return self._workspace(team_id).statuses.get((channel, thread_ts), "")

    def streamed_chunks(self, channel: str, ts: str, *, team_id: str | None = None) -> list[dict[str, Any]]:
        """Every chunk (markdown_text, task_update, blocks...) streamed into a message, in order."""
        with self._lock:
            return copy.deepcopy(self._workspace(team_id).existing(channel, ts).chunks)

    def agent_session_statuses(self, channel: str, thread_ts: str, *, team_id: str | None = None) -> list[str]:
        """Every status agents.sessions.setStatus gave the thread's session, in order."""
        with self._lock:
            return list(self._workspace(team_id).agent_sessions.get((channel, thread_ts), []))

    def refuse_streaming(self, error: str | None = "not_allowed", *, team_id: str | None = None) -> None:
        """chat.startStream answers error from now on (None: streams again)."""
        with self._lock:
            self._workspace(team_id).streaming_refusal = error

    def declare_agent(self, declared: bool = True, *, team_id: str | None = None) -> None:
        """The app is declared an agent in the workspace: agents.sessions.setStatus works there."""
        with self._lock:
            self._workspace(team_id).agent_sessions_refusal = None if declared else "feature_disabled"

    def views(self, *, team_id: str | None = None) -> list[dict[str, Any]]:
        """Every modal and home tab currently open or published, in their latest version."""
        with self._lock:
            return copy.deepcopy(list(self._workspace(team_id).views.values()))

    def home_view(self, user: str, *, team_id: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            ws = self._workspace(team_id)
            view_id = ws.home_views.get(user)
            return copy.deepcopy(ws.views[view_id]) if view_id else None

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self.recording.calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    @property
    def violations(self) -> list[str]:
        """Responses and envelopes the double produced that leave the shape of Slack's samples."""
        with self._lock:
            return list(self.recording.violations)

    @property
    def status_updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.recording.status_updates)

    @property
    def suggested_prompts(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.recording.suggested_prompts)

    @property
    def title_updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.recording.title_updates)

    @property
    def response_url_posts(self) -> list[ResponseUrlPost]:
        with self._lock:
            return list(self.recording.response_url_posts)

    # -- fault injection and response URLs -------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        error: str | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of method with an error; 429 defaults to ratelimited with Retry-After: 1."""
        default_headers = {"Retry-After": "1"} if status == 429 else {}
        fault = Fault(
            error=error or ("ratelimited" if status == 429 else "internal_error"),
            status=status,
            headers=headers if headers is not None else default_headers,
            remaining=times,
        )
        with self._lock:
            self._faults.setdefault(method, deque()).append(fault)

    def grant_scopes(self, scopes: Iterable[str], *, team_id: str | None = None) -> None:
        """The bot token's scopes from now on, as after reinstalling the app with these (x-oauth-scopes)."""
        with self._lock:
            self._workspace(team_id).scopes = tuple(scopes)

    def new_response_url(
        self, *, channel: str | None = None, user: str | None = None, team_id: str | None = None
    ) -> str:
        """A response_url on the double; bound to a channel/user, in_channel and ephemeral replies land there too."""
        with self._lock:
            key = secrets.token_hex(8)
            self._response_targets[key] = ResponseTarget(self._workspace(team_id).team_id, channel, user)
            return f"{self.base_url}/response/{key}"

    # -- human activity --------------------------------------------------------------------------

    def human_posts(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        files: Iterable[dict[str, Any] | str] | None = None,
        team_id: str | None = None,
    ) -> HumanPost:
        """A person posts; returns the app_mention/message envelopes an app subscribed to message.* receives."""
        with self._lock:
            ws = self._workspace(team_id)
            message, events = people.post(
                ws, channel, user, text, thread_ts=thread_ts, files=files or (), base_url=lambda: self.base_url
            )
            return HumanPost(message.ts, [self._envelope(ws, event) for event in events])

    def human_edits(self, channel: str, ts: str, text: str, *, team_id: str | None = None) -> HumanPost:
        with self._lock:
            ws = self._workspace(team_id)
            return HumanPost(ts, [self._envelope(ws, event) for event in people.edit(ws, channel, ts, text)])

    def human_deletes(self, channel: str, ts: str, *, team_id: str | None = None) -> HumanPost:
        with self._lock:
            ws = self._workspace(team_id)
            return HumanPost(ts, [self._envelope(ws, event) for event in people.delete(ws, channel, ts)])

    def channel_join(
        self, channel: str, user: str, *, inviter: str | None = None, team_id: str | None = None
    ) -> HumanPost:
        """user joins channel (the bot too); Slack posts a channel_join message that members receive."""
        with self._lock:
            ws = self._workspace(team_id)
            ts, events = people.join(ws, channel, user, inviter=inviter)
            return HumanPost(ts, [self._envelope(ws, event) for event in events])

    def assistant_thread_started(
        self, channel: str, user: str, *, context_channel_id: str | None = None, team_id: str | None = None
    ) -> dict[str, Any]:
        """The user opens the assistant pane: Slack creates the thread root in their IM and sends this envelope."""
        with self._lock:
            ws = self._workspace(team_id)
            return self._envelope(ws, assistant.thread_started_event(ws, channel, user, context_channel_id))

    def assistant_thread_context_changed(
        self, channel: str, user: str, thread_ts: str, context_channel_id: str, *, team_id: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(team_id)
            event = assistant.thread_event(
                ws, "assistant_thread_context_changed", channel, user, thread_ts, context_channel_id
            )
            return self._envelope(ws, event)

    def app_home_opened(self, user: str, *, team_id: str | None = None) -> dict[str, Any]:
        """The user opens the app's Home tab; the event carries the home view published to them before, if any."""
        with self._lock:
            ws = self._workspace(team_id)
            return self._envelope(ws, views.app_home_opened_event(ws, user))

    # -- OAuth installs --------------------------------------------------------------------------

    def approve_install(self, team_id: str, *, user: str, scopes: Iterable[str] = ()) -> str:
        """A person approves installing the app in the workspace; returns the code Slack redirects them with."""
        with self._lock:
            return oauth.approve(self.oauth, self._workspace(team_id), user_id=user, scopes=tuple(scopes))

    def uninstall(self, team_id: str) -> list[dict[str, Any]]:
        """The workspace uninstalls the app: its tokens stop working; returns the tokens_revoked and
        app_uninstalled envelopes Slack sends."""
        with self._lock:
            ws = self._workspace(team_id)
            return [self._envelope(ws, event) for event in oauth.revoke(self.oauth, ws)]

    def _oauth_access(self, params: Params, authorization: str) -> dict[str, Any]:
        try:
            grant = oauth.access(self.oauth, self._workspaces, params, authorization, api_app_id=self.app_id)
            body = {"ok": True, **grant}
        except SlackError as error:
            body = {"ok": False, "error": error.code}
        self.recording.check(body, response_shape("oauth.v2.access"), "oauth.v2.access response")
        self.recording.calls.append(
            RecordedCall("oauth.v2.access", params.decoded(), None, time.time(), copy.deepcopy(body))
        )
        return body

    # -- internals -------------------------------------------------------------------------------

    def _workspace(self, team_id: str | None) -> Workspace:
        team_id = team_id or self._primary[0]
        if team_id not in self._workspaces:
            raise ValueError(f"unknown workspace {team_id}; add it with add_workspace()")
        return self._workspaces[team_id]

    def _envelope(self, ws: Workspace, event: dict[str, Any]) -> dict[str, Any]:
        """The Events API envelope Slack wraps event in, checked against the event's sample."""
        event_ts = event.get("event_ts") or next_ts()  # app_uninstalled and tokens_revoked carry none
        context = base64.urlsafe_b64encode(json.dumps({"ts": event_ts}).encode()).decode()
        envelope = {
            "token": self.verification_token,
            "team_id": ws.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": random_id("Ev"),
            "event_time": ts_key(event_ts)[0],
            "authed_users": [ws.bot_user_id],
            "authorizations": [
                {"team_id": ws.team_id, "user_id": ws.bot_user_id, "is_bot": True, "is_enterprise_install": False}
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{context}",
        }
        sample = sample_shape(event_sample_path(event))
        if sample is not None:
            self.recording.check(envelope, sample, f"{event_sample_path(event)} envelope")
        return envelope

    # -- Socket Mode -----------------------------------------------------------------------------

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: Slack says hello, pushes envelopes, and waits for each one's ack."""
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json(
            {"type": "hello", "num_connections": len(self._sockets), "connection_info": {"app_id": self.app_id}}
        )
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    ack = json.loads(message.data)
                    waiter = self._socket_acks.pop(ack.get("envelope_id"), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(ack)
        finally:
            self._sockets.remove(socket)
        return socket

    def socket_deliver(self, envelope: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
        """Push an Events API envelope over the open Socket Mode connection; returns the app's ack."""
        if self._loop is None:
            raise RuntimeError("start() the Slack double first")

        async def push() -> dict[str, Any]:
            deadline = self._loop.time() + timeout
            while not self._sockets:
                if self._loop.time() > deadline:
                    raise TimeoutError("no Socket Mode connection is open")
                await asyncio.sleep(0.02)
            envelope_id = str(uuid.uuid4())
            waiter = self._loop.create_future()
            self._socket_acks[envelope_id] = waiter
            await self._sockets[-1].send_json(
                {
                    "envelope_id": envelope_id,
                    "type": "events_api",
                    "payload": envelope,
                    "accepts_response_payload": False,
                    "retry_attempt": 0,
                    "retry_reason": "",
                }
            )
            return await asyncio.wait_for(waiter, timeout)

        return asyncio.run_coroutine_threadsafe(push(), self._loop).result(timeout + 1)

    def _open_socket_connection(self, token: str | None) -> dict[str, Any]:
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": f"ws://127.0.0.1:{self._port}/socket-mode"}

    # -- the Web API -----------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        name = request.match_info["method"]
        try:
            raw = await self._request_arguments(request)
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_json"})
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else raw.pop("token", None)
        raw.pop("token", None)
        if name == "apps.connections.open":  # the one method called with the app-level token
            return web.json_response(self._open_socket_connection(token))
        if name == "oauth.v2.access":  # called with the app's client id and secret, not a token
            with self._lock:
                return web.json_response(self._oauth_access(Params(raw), request.headers.get("Authorization", "")))
        with self._lock:
            status, body, headers = self._dispatch(name, Params(raw), token)
        return web.json_response(body, status=status, headers=headers)

    @staticmethod
    async def _request_arguments(request: web.Request) -> dict[str, Any]:
        arguments: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("JSON body is not an object")
            arguments |= body
        elif request.can_read_body:
            form = await request.post()
            arguments |= {key: value for key, value in form.items() if isinstance(value, str)}
        return arguments

    def _dispatch(self, name: str, params: Params, token: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        ws = oauth.workspace_of(self.oauth, self._workspaces, token)
        status, headers = 200, {"x-oauth-scopes": ",".join(ws.scopes)} if ws is not None else {}
        method = METHODS.get(name)
        if method is None:
            body = {"ok": False, "error": "unknown_method"}
        elif ws is None:
            body = {"ok": False, "error": "invalid_auth"}
        elif fault := self._take_fault(name):
            status, headers, body = fault.status, fault.headers, {"ok": False, "error": fault.error}
        else:
            body = self._answer(method, ws, params)
        if method is not None:
            self.recording.check(body, response_shape(name), f"{name} response")
        self.recording.calls.append(RecordedCall(name, params.decoded(), token, time.time(), copy.deepcopy(body)))
        return status, body, headers

    def _take_fault(self, name: str) -> Fault | None:
        queue = self._faults.get(name)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    def _answer(self, method: Method, ws: Workspace, params: Params) -> dict[str, Any]:
        try:
            for requirement in method.requires:
                if not any(params.present(n, allow_empty=requirement.allow_empty) for n in requirement.names):
                    raise SlackError(requirement.error)
            return {"ok": True, **method.handler(self, ws, params)}
        except SlackError as error:
            return {"ok": False, "error": error.code}

    # -- file transfers and response URLs --------------------------------------------------------

    async def _handle_upload(self, request: web.Request) -> web.Response:
        content = await files.uploaded_content(request)
        with self._lock:
            return files.accept_upload(self._workspaces.values(), request.match_info["upload_id"], content)

    async def _handle_download(self, request: web.Request) -> web.Response:
        team_id, _, file_id = request.match_info["team_file"].partition("-")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            ws = self._workspaces.get(team_id)
            return files.download(ws, file_id, token, files_read_granted=self.files_read_granted)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            target = self._response_targets.get(request.match_info["key"])
            if target is None:
                return web.Response(status=404, text="no_service")
            self.recording.response_url_posts.append(ResponseUrlPost(str(request.url), body, time.time()))
            self._deliver_response(target, body)
        return web.Response(text="ok")

    def _deliver_response(self, target: ResponseTarget, body: dict[str, Any]) -> None:
        ws = self._workspaces[target.team_id]
        if target.channel is None:
            return
        content = {k: body[k] for k in ("text", "blocks", "attachments") if k in body}
        if body.get("response_type") == "in_channel":
            ws.post_as_bot(target.channel, content, body.get("thread_ts"))
        elif target.user is not None:
            ws.ephemeral.append({"channel": target.channel, "user": target.user, "ts": next_ts(), **content})


@web_api("auth.test")
def auth_test(slack: SlackDouble, ws: Workspace, params: Params) -> dict[str, Any]:
    return {
        "url": f"https://{ws.domain}.slack.com/",
        "team": ws.name,
        "user": BOT_NAME,
        "team_id": ws.team_id,
        "user_id": ws.bot_user_id,
        "bot_id": ws.bot_id,
        "is_enterprise_install": False,
    }

"""A Slack Web API test double served over real HTTP, plus the Events API envelopes Slack would send."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import mimetypes
import os
import re
import secrets
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, reduce
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import WSMsgType, web

SPECS_DIR = Path(__file__).resolve().parents[3] / "shared" / "specs"
SLACK_SAMPLES_DIR = SPECS_DIR / "slack" / "samples"
WEB_API_SWAGGER = SPECS_DIR / "slack" / "web-api" / "slack_web_openapi_v2.json"
EVENT_WRAPPER_SCHEMA = SPECS_DIR / "slack" / "events-api" / "slack_common_event_wrapper_schema.json"
DEFAULT_APP_ID = "A0APP"
DEFAULT_VERIFICATION_TOKEN = "verification-token"


def require_specs() -> None:
    """Skip the calling test module when the shared specs are absent, but fail in CI where they must exist."""
    import pytest

    if SLACK_SAMPLES_DIR.is_dir() and WEB_API_SWAGGER.is_file():
        return
    reason = f"Slack reference specs not found at {SPECS_DIR} (expected beside the checkout)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


# ---------------------------------------------------------------------------------------------
# Reference shapes: the key structure and JSON types of Slack's samples, used to check output.
# ---------------------------------------------------------------------------------------------

ANY_JSON_TYPE = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
# Keys like "C00000000" in a sample are data (a map from channel id to shares), not field names.
SLACK_ID_KEY = re.compile(r"^[A-Z][A-Z0-9]{8,}$")
# Slack echoes what the caller sent under these keys; the samples show some other app's content there,
# so only the container type is checked.
CALLER_CONTENT_KEYS = frozenset({"blocks", "attachments"})

# Fields real Slack sends that the logged samples happen not to contain. They are merged into the
# sample before validation so that every deviation from the samples is listed here, with its reason.
SAMPLE_GAPS: dict[str, Any] = {
    # An IM's conversation object names the other member (docs: conversation object, is_im).
    "api/conversations.info.json": {"channel": {"user": ""}},
    # Thread roots carry their subtype in replies too: assistant_app_thread roots, thread_broadcast replies.
    "api/conversations.replies.json": {"messages": [{"subtype": ""}]},
    # Edited or deleted messages carry the whole message, with its files and thread summary
    # (bolt-python's assistant tests log reply_users in message_changed).
    "events/MessageChangedPayload.json": {
        "event": {
            "message": {"reply_users": [""], "files": [{}]},
            "previous_message": {"reply_users": [""], "files": [{}]},
        }
    },
    # A deleted bot message (someone removed the bot's reply) carries its app_id like any bot message.
    "events/MessageDeletedPayload.json": {
        "event": {"previous_message": {"reply_users": [""], "files": [{}], "app_id": ""}}
    },
    # Updating a thread reply returns the message with its thread fields, as chat.postMessage does.
    "api/chat.update.json": {"message": {"thread_ts": "", "parent_user_id": ""}},
    # A mention with an attachment carries the files like any other message.
    "events/AppMentionPayload.json": {"event": {"files": [{}]}},
    # User messages in an assistant thread carry an action token (docs: AI apps, message.im).
    "events/MessagePayload.json": {"event": {"assistant_thread": {"action_token": ""}}},
    # ... and so do files shared there: a file share is a user message in that thread like any other.
    "events/MessageFileSharePayload.json": {"event": {"assistant_thread": {"action_token": ""}}},
}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {value!r}")


def _merge_optional(left: Any, right: Any, merge: Callable[[Any, Any], Any]) -> Any:
    # None means "the reference says nothing here", so the other side's knowledge wins.
    if left is None:
        return right
    if right is None:
        return left
    return merge(left, right)


@dataclass(frozen=True)
class Shape:
    """JSON types a value may have; for objects the allowed keys (None: any), for arrays the item shape (None: any)."""

    types: frozenset[str]
    fields: Mapping[str, Shape] | None = None
    items: Shape | None = None

    def merge(self, other: Shape) -> Shape:
        def merge_fields(left: Mapping[str, Shape], right: Mapping[str, Shape]) -> dict[str, Shape]:
            merged = dict(left)
            for key, shape in right.items():
                merged[key] = merged[key].merge(shape) if key in merged else shape
            return merged

        return Shape(
            self.types | other.types,
            _merge_optional(self.fields, other.fields, merge_fields),
            _merge_optional(self.items, other.items, Shape.merge),
        )


def shape_of_sample(sample: Any) -> Shape:
    kind = json_type(sample)
    if kind == "object":
        if not sample or all(SLACK_ID_KEY.match(key) for key in sample):
            return Shape(frozenset({kind}))
        return Shape(frozenset({kind}), {key: shape_of_sample(value) for key, value in sample.items()})
    if kind == "array":
        return Shape(frozenset({kind}), items=reduce(Shape.merge, map(shape_of_sample, sample)) if sample else None)
    return Shape(frozenset({kind}))


def shape_of_schema(schema: Mapping[str, Any], definitions: Mapping[str, Any], depth: int = 0) -> Shape:
    """The Shape a Swagger 2.0 schema allows; deep or recursive references are left open."""
    if depth > 12:
        return Shape(ANY_JSON_TYPE)
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
    alternatives = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if alternatives:
        return reduce(Shape.merge, (shape_of_schema(alt, definitions, depth + 1) for alt in alternatives))
    declared = schema.get("type")
    types = frozenset([declared] if isinstance(declared, str) else declared or ANY_JSON_TYPE)
    fields = None
    if "object" in types and schema.get("additionalProperties") is False:
        fields = {
            key: shape_of_schema(sub, definitions, depth + 1) for key, sub in schema.get("properties", {}).items()
        }
    item_schemas = schema.get("items")
    if isinstance(item_schemas, dict):
        item_schemas = [item_schemas]
    items = (
        reduce(Shape.merge, (shape_of_schema(s, definitions, depth + 1) for s in item_schemas))
        if item_schemas
        else None
    )
    return Shape(types, fields, items)


def shape_violations(value: Any, shape: Shape, path: str = "$") -> list[str]:
    """Where value leaves the reference shape: keys the reference lacks and JSON types it does not allow."""
    kind = json_type(value)
    if kind not in shape.types and not (kind == "integer" and "number" in shape.types):
        return [f"{path}: {kind}, the reference has {'/'.join(sorted(shape.types))}"]
    problems: list[str] = []
    if kind == "object" and shape.fields is not None:
        for key, child in value.items():
            reference = shape.fields.get(key)
            if reference is None:
                problems.append(f"{path}.{key}: not in the reference")
            else:
                checked = Shape(reference.types) if key in CALLER_CONTENT_KEYS else reference
                problems += shape_violations(child, checked, f"{path}.{key}")
    if kind == "array" and shape.items is not None:
        for index, item in enumerate(value):
            problems += shape_violations(item, shape.items, f"{path}[{index}]")
    return problems


@cache
def sample_shape(relative_path: str) -> Shape | None:
    """Shape of samples/<relative_path> merged with its SAMPLE_GAPS entry; None when there is no such sample."""
    path = SLACK_SAMPLES_DIR / relative_path
    if not path.is_file():
        return None
    shape = shape_of_sample(json.loads(path.read_text()))
    if relative_path in SAMPLE_GAPS:
        shape = shape.merge(shape_of_sample(SAMPLE_GAPS[relative_path]))
    return shape


@cache
def web_api_swagger() -> dict[str, Any]:
    return json.loads(WEB_API_SWAGGER.read_text())


@cache
def response_shape(method: str) -> Shape | None:
    """The sample of a method's response, or for methods without one the 2020 Swagger responses."""
    shape = sample_shape(f"api/{method}.json")
    if shape is not None:
        return shape
    spec = web_api_swagger()
    operations = spec["paths"].get(f"/{method}", {})
    schemas = [r["schema"] for op in operations.values() for r in op["responses"].values() if "schema" in r]
    if not schemas:
        return None
    return reduce(Shape.merge, (shape_of_schema(s, spec["definitions"]) for s in schemas))


def event_sample_path(event: Mapping[str, Any]) -> str:
    """The samples/events file for an event: AppMentionPayload, MessagePayload, MessageChangedPayload, ..."""
    words = event["type"].split("_")
    if event.get("subtype"):
        words += event["subtype"].removeprefix("message_").split("_")
    return f"events/{''.join(word.capitalize() for word in words)}Payload.json"


# ---------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedCall:
    """One Web API request as the double received it, with the body it answered."""

    method: str
    params: dict[str, Any]
    token: str | None
    time: float
    response: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HumanPost:
    """What a person did (ts of the message concerned) and the Events API envelopes Slack delivers for it."""

    ts: str
    envelopes: list[dict[str, Any]]


@dataclass(frozen=True)
class ResponseUrlPost:
    url: str
    body: dict[str, Any]
    time: float


class SlackError(Exception):
    """A Slack API error code, answered as {"ok": false, "error": code}."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Request arguments
# ---------------------------------------------------------------------------------------------

# Arguments Slack reads as JSON; form-encoded clients send them as JSON strings.
JSON_ARGUMENTS = frozenset(
    {"blocks", "attachments", "metadata", "prompts", "files", "view", "chunks", "loading_messages"}
)


class Params:
    """Request arguments merged from query string, form body and JSON body, read the way Slack reads them."""

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = dict(raw)

    def present(self, name: str, *, allow_empty: bool = False) -> bool:
        value = self.raw.get(name)
        return value is not None if allow_empty else value not in (None, "", [])

    def text(self, name: str) -> str | None:
        value = self.raw.get(name)
        return None if value is None else str(value)

    def flag(self, name: str) -> bool:
        value = self.raw.get(name)
        return value is True or str(value).lower() in ("1", "true")

    def integer(self, name: str, default: int) -> int:
        value = self.raw.get(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None

    def json(self, name: str, *, error: str = "invalid_arguments") -> Any:
        value = self.raw.get(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise SlackError(error) from None

    def decoded(self) -> dict[str, Any]:
        """All arguments with JSON strings decoded where they are valid JSON, for the call record."""
        decoded = dict(self.raw)
        for name in JSON_ARGUMENTS & decoded.keys():
            with contextlib.suppress(SlackError):
                decoded[name] = self.json(name)
        return decoded


# ---------------------------------------------------------------------------------------------
# Workspace state
# ---------------------------------------------------------------------------------------------


def ts_key(ts: str) -> tuple[int, int]:
    """Slack timestamps compare as (seconds, microseconds); floats lose the last digits."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds or 0), int((fraction or "0").ljust(6, "0")[:6])


def random_id(prefix: str, length: int = 10) -> str:
    return prefix + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


@dataclass
class Channel:
    id: str
    name: str | None
    is_private: bool
    is_im: bool
    is_mpim: bool
    user: str | None
    members: set[str]
    created: int

    @property
    def channel_type(self) -> str:
        """The channel_type Slack puts on message events."""
        if self.is_im:
            return "im"
        if self.is_mpim:
            return "mpim"
        return "group" if self.is_private else "channel"


@dataclass
class StoredMessage:
    channel: str
    fields: dict[str, Any]
    texts: list[str]
    deleted: bool = False
    streaming: bool = False

    @property
    def ts(self) -> str:
        return self.fields["ts"]

    @property
    def author(self) -> str:
        return self.fields.get("user", "")

    @property
    def thread_root(self) -> str:
        return self.fields.get("thread_ts", self.ts)

    @property
    def is_reply(self) -> bool:
        return self.thread_root != self.ts

    @property
    def is_top_level(self) -> bool:
        return not self.is_reply or self.fields.get("subtype") == "thread_broadcast"


@dataclass
class StoredFile:
    info: dict[str, Any]
    content: bytes | None


@dataclass
class Workspace:
    team_id: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    messages: dict[str, list[StoredMessage]] = field(default_factory=dict)
    ephemeral: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, StoredFile] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    home_views: dict[str, str] = field(default_factory=dict)
    statuses: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.team_id.lower()

    @property
    def name(self) -> str:
        return f"Team {self.team_id}"


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


# ---------------------------------------------------------------------------------------------
# Method table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """At least one of names must be given, else Slack answers error."""

    names: tuple[str, ...]
    error: str
    allow_empty: bool = False


def need(*names: str, error: str = "invalid_arguments", allow_empty: bool = False) -> Requirement:
    return Requirement(names, error, allow_empty)


@dataclass(frozen=True)
class Method:
    handler: Callable[[SlackDouble, Workspace, Params], dict[str, Any]]
    requires: tuple[Requirement, ...] = ()


NEED_CHANNEL = need("channel", error="channel_not_found")
NEED_CHANNEL_ID = need("channel_id", error="channel_not_found")
NEED_MESSAGE_CONTENT = need("text", "blocks", "attachments", "markdown_text", error="no_text")
NEED_TS = need("ts", error="message_not_found")
NEED_THREAD_TS = need("thread_ts")

MAX_TEXT_LENGTH = 40_000
MAX_BLOCKS = 50
REPLIES_LIMIT = (1000, 1000)
HISTORY_LIMIT = (100, 999)
BOT_NAME = "assistant"


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
        self._last_ts_micros = 0
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
            self._calls: list[RecordedCall] = []
            self._violations: list[str] = []
            self._faults: dict[str, deque[Fault]] = {}
            self._status_updates: list[dict[str, Any]] = []
            self._suggested_prompts: list[dict[str, Any]] = []
            self._title_updates: list[dict[str, Any]] = []
            self._response_targets: dict[str, ResponseTarget] = {}
            self._response_url_posts: list[ResponseUrlPost] = []
            self._pending_uploads: dict[str, tuple[str, str]] = {}
            # False plays an app installed without the files:read scope: downloads get the sign-in page.
            self.files_read_granted = True
            self._socket_acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
            self.add_workspace(*self._primary)

    # -- workspaces, users, channels, files ------------------------------------------------------

    def add_workspace(self, team_id: str, bot_token: str, bot_user_id: str, bot_id: str) -> None:
        with self._lock:
            if any(ws.bot_token == bot_token for ws in self._workspaces.values()):
                raise ValueError(f"token {bot_token!r} already belongs to a workspace")
            self._workspaces[team_id] = Workspace(team_id, bot_token, bot_user_id, bot_id)
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
            real_name = real_name if real_name is not None else name
            display_name = display_name if display_name is not None else ""
            now = datetime.now(ZoneInfo(tz))
            profile: dict[str, Any] = {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": display_name,
                "display_name_normalized": display_name,
                "status_text": "",
                "status_emoji": "",
                "avatar_hash": "",
                "team": ws.team_id,
            }
            if is_bot:
                profile |= {"bot_id": ws.bot_id, "api_app_id": self.app_id, "always_active": True}
            user = {
                "id": user_id,
                "team_id": ws.team_id,
                "name": name,
                "deleted": False,
                "color": "9f69e7",
                "real_name": real_name,
                "tz": tz,
                "tz_label": now.tzname() or tz,
                "tz_offset": int(now.utcoffset().total_seconds()),
                "profile": profile,
                "is_admin": is_admin,
                "is_owner": is_owner,
                "is_primary_owner": False,
                "is_restricted": False,
                "is_ultra_restricted": False,
                "is_bot": is_bot,
                "is_app_user": False,
                "updated": int(time.time()),
            }
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
    ) -> None:
        """A conversation; members default to the bot (and the IM's user), so the bot can post and read."""
        with self._lock:
            ws = self._workspace(team_id)
            if is_im and user is None:
                raise ValueError("an IM needs the user it is with")
            default_members = {ws.bot_user_id, *([user] if user else [])}
            ws.channels[channel_id] = Channel(
                id=channel_id,
                name=name,
                is_private=is_private or is_im or is_mpim,
                is_im=is_im,
                is_mpim=is_mpim,
                user=user,
                members=set(members) if members is not None else default_members,
                created=int(time.time()),
            )
            ws.messages.setdefault(channel_id, [])

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
            stored = self._new_file(ws, name=name, title=title or name, user=user, size=len(content), mimetype=mimetype)
            stored.content = content
            return self._file_object(ws, stored)

    # -- inspection ------------------------------------------------------------------------------

    def messages(
        self, channel: str, *, thread_ts: str | None = None, team_id: str | None = None
    ) -> list[dict[str, Any]]:
        """What a person sees now: top-level messages, or a thread's parent and replies, oldest first."""
        with self._lock:
            ws = self._workspace(team_id)
            self._known_channel(ws, channel)
            return [self._message_view(ws, m) for m in self._visible(ws, channel, thread_ts)]

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
            return list(self._existing(self._workspace(team_id), channel, ts).texts)

    def current_status(self, channel: str, thread_ts: str, *, team_id: str | None = None) -> str:
        """The assistant status shown in a thread now; Slack clears it when the app replies there."""
        with self._lock:
            return self._workspace(team_id).statuses.get((channel, thread_ts), "")

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
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    @property
    def violations(self) -> list[str]:
        """Responses and envelopes the double produced that leave the shape of Slack's samples."""
        with self._lock:
            return list(self._violations)

    @property
    def status_updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._status_updates)

    @property
    def suggested_prompts(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._suggested_prompts)

    @property
    def title_updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._title_updates)

    @property
    def response_url_posts(self) -> list[ResponseUrlPost]:
        with self._lock:
            return list(self._response_url_posts)

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
            conversation = self._known_channel(ws, channel)
            conversation.members.add(user)
            fields: dict[str, Any] = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": self._next_ts(),
                "team": ws.team_id,
            }
            if thread_ts:
                root_ts = self._existing(ws, channel, thread_ts).thread_root
                fields |= {"thread_ts": root_ts, "parent_user_id": self._existing(ws, channel, root_ts).author}
            shared = [self._share_file(ws, conversation, self._posted_file_id(ws, user, f)) for f in files or ()]
            if shared:
                fields |= {"files": shared, "upload": True}
            message = self._store(ws, channel, fields)
            return HumanPost(message.ts, self._posted_envelopes(ws, conversation, message))

    def human_edits(self, channel: str, ts: str, text: str, *, team_id: str | None = None) -> HumanPost:
        with self._lock:
            ws = self._workspace(team_id)
            message = self._existing(ws, channel, ts)
            previous = self._message_view(ws, message)
            message.fields |= {"text": text, "edited": {"user": message.author, "ts": self._next_ts()}}
            message.texts.append(text)
            event = {
                "type": "message",
                "subtype": "message_changed",
                "channel": channel,
                "hidden": True,
                "message": self._message_view(ws, message),
                "previous_message": previous,
            }
            return HumanPost(ts, self._deliver_if_member(ws, channel, event, message.fields["edited"]["ts"]))

    def human_deletes(self, channel: str, ts: str, *, team_id: str | None = None) -> HumanPost:
        with self._lock:
            ws = self._workspace(team_id)
            message = self._existing(ws, channel, ts)
            previous = self._message_view(ws, message)
            message.deleted = True
            event = {
                "type": "message",
                "subtype": "message_deleted",
                "channel": channel,
                "hidden": True,
                "deleted_ts": ts,
                "previous_message": previous,
            }
            return HumanPost(ts, self._deliver_if_member(ws, channel, event, self._next_ts()))

    def channel_join(
        self, channel: str, user: str, *, inviter: str | None = None, team_id: str | None = None
    ) -> HumanPost:
        """user joins channel (the bot too); Slack posts a channel_join message that members receive."""
        with self._lock:
            ws = self._workspace(team_id)
            self._known_channel(ws, channel).members.add(user)
            fields = {
                "type": "message",
                "subtype": "channel_join",
                "user": user,
                "text": f"<@{user}> has joined the channel",
                "ts": self._next_ts(),
                "team": ws.team_id,
            }
            if inviter:
                fields["inviter"] = inviter
            message = self._store(ws, channel, fields)
            event = {k: v for k, v in fields.items() if k != "ts"} | {"channel": channel, "ts": message.ts}
            return HumanPost(message.ts, self._deliver_if_member(ws, channel, event, message.ts))

    def assistant_thread_started(
        self, channel: str, user: str, *, context_channel_id: str | None = None, team_id: str | None = None
    ) -> dict[str, Any]:
        """The user opens the assistant pane: Slack creates the thread root in their IM and sends this envelope."""
        with self._lock:
            ws = self._workspace(team_id)
            conversation = self._known_channel(ws, channel)
            if not (conversation.is_im and conversation.user == user):
                raise ValueError(f"{channel} is not the IM between the bot and {user}")
            root = self._store(
                ws,
                channel,
                {
                    "type": "message",
                    "subtype": "assistant_app_thread",
                    "user": ws.bot_user_id,
                    "text": "New chat",
                    "ts": self._next_ts(),
                    "team": ws.team_id,
                    "assistant_app_thread": {"title": "", "title_blocks": [], "first_user_thread_reply": ""},
                },
            )
            return self._assistant_thread_envelope(
                ws, "assistant_thread_started", channel, user, root.ts, context_channel_id
            )

    def assistant_thread_context_changed(
        self, channel: str, user: str, thread_ts: str, context_channel_id: str, *, team_id: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(team_id)
            return self._assistant_thread_envelope(
                ws, "assistant_thread_context_changed", channel, user, thread_ts, context_channel_id
            )

    def app_home_opened(self, user: str, *, team_id: str | None = None) -> dict[str, Any]:
        """The user opens the app's Home tab; the event carries the home view published to them before, if any."""
        with self._lock:
            ws = self._workspace(team_id)
            event: dict[str, Any] = {
                "type": "app_home_opened",
                "user": user,
                "channel": self._im_with(ws, user).id,
                "tab": "home",
                "event_ts": self._next_ts(),
            }
            view_id = ws.home_views.get(user)
            if view_id:
                event["view"] = copy.deepcopy(ws.views[view_id])
            return self._envelope(ws, event)

    # -- internals: lookups and storage ----------------------------------------------------------

    def _workspace(self, team_id: str | None) -> Workspace:
        team_id = team_id or self._primary[0]
        if team_id not in self._workspaces:
            raise ValueError(f"unknown workspace {team_id}; add it with add_workspace()")
        return self._workspaces[team_id]

    def _known_channel(self, ws: Workspace, channel_id: str) -> Channel:
        if channel_id not in ws.channels:
            raise ValueError(f"unknown channel {channel_id} in {ws.team_id}; add it with add_channel()")
        return ws.channels[channel_id]

    @staticmethod
    def _find(ws: Workspace, channel: str, ts: str, *, include_deleted: bool = False) -> StoredMessage | None:
        for message in ws.messages.get(channel, []):
            if message.ts == ts and (include_deleted or not message.deleted):
                return message
        return None

    def _stored(self, ws: Workspace, channel: str, ts: str) -> StoredMessage:
        """The message a Web API call names, or Slack's message_not_found."""
        message = self._find(ws, channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        return message

    def _existing(self, ws: Workspace, channel: str, ts: str) -> StoredMessage:
        """The message a test helper names; a wrong ts is a mistake in the test, not a Slack error."""
        message = self._find(ws, channel, ts, include_deleted=True)
        if message is None:
            raise ValueError(f"no message {ts} in {channel} of {ws.team_id}")
        return message

    def _visible(self, ws: Workspace, channel: str, thread_ts: str | None) -> list[StoredMessage]:
        live = [m for m in ws.messages.get(channel, []) if not m.deleted]
        if thread_ts is None:
            return [m for m in live if m.is_top_level]
        return [m for m in live if m.thread_root == thread_ts]

    def _next_ts(self) -> str:
        # Real Slack timestamps are wall-clock microseconds; they only ever increase.
        micros = max(time.time_ns() // 1000, self._last_ts_micros + 1)
        self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _store(self, ws: Workspace, channel: str, fields: dict[str, Any]) -> StoredMessage:
        message = StoredMessage(channel, fields, texts=[fields.get("text", "")])
        ws.messages.setdefault(channel, []).append(message)
        return message

    def _listed(self, ws: Workspace, message: StoredMessage, params: Params) -> dict[str, Any]:
        """A message in a history or replies listing: Slack leaves metadata out unless asked for it."""
        view = self._message_view(ws, message)
        if not params.flag("include_all_metadata"):
            view.pop("metadata", None)
        return view

    def _message_view(self, ws: Workspace, message: StoredMessage) -> dict[str, Any]:
        """The message as Slack returns it: stored fields plus a live thread summary on thread roots."""
        view = copy.deepcopy(message.fields)
        if message.is_reply:
            return view
        replies = [m for m in self._visible(ws, message.channel, message.ts) if m.is_reply]
        if replies:
            reply_users = list(dict.fromkeys(r.author for r in replies))
            view |= {
                "thread_ts": message.ts,
                "reply_count": len(replies),
                "reply_users": reply_users,
                "reply_users_count": len(reply_users),
                "latest_reply": replies[-1].ts,
                "is_locked": False,
                "subscribed": False,
            }
        return view

    def _thread_root_ts(self, ws: Workspace, channel: str, thread_ts: str | None) -> str | None:
        # Replying to a reply lands in the same thread, as in Slack.
        if not thread_ts:
            return None
        message = self._find(ws, channel, thread_ts)
        return message.thread_root if message is not None else thread_ts

    # -- internals: events -----------------------------------------------------------------------

    def _posted_envelopes(self, ws: Workspace, conversation: Channel, message: StoredMessage) -> list[dict[str, Any]]:
        if ws.bot_user_id not in conversation.members:
            return []
        fields = message.fields
        client_msg_id = str(uuid.uuid4())
        common = {"user": fields["user"], "text": fields["text"], "ts": message.ts, "channel": conversation.id}
        common |= {key: fields[key] for key in ("thread_ts",) if key in fields}
        attached = {"files": fields["files"], "upload": True} if "files" in fields else {}
        # Field sets follow samples/events: file shares carry no client_msg_id or team, mentions no channel_type.
        if attached:
            message_event = {"type": "message", "subtype": "file_share", **common, **attached, "display_as_bot": False}
        else:
            message_event = {"type": "message", "client_msg_id": client_msg_id, "team": ws.team_id, **common}
        message_event |= {key: fields[key] for key in ("parent_user_id",) if key in fields}
        if self._in_assistant_thread(ws, message):
            message_event["assistant_thread"] = {"action_token": secrets.token_hex(16)}
        message_event |= {"event_ts": message.ts, "channel_type": conversation.channel_type}
        events = [message_event]
        mentioned = re.search(rf"<@{re.escape(ws.bot_user_id)}(\|[^>]*)?>", fields["text"])
        # Slack sends app_mention for conversations with several people, never for the app's own IM.
        if mentioned and not conversation.is_im:
            app_mention = {
                "type": "app_mention",
                "client_msg_id": client_msg_id,
                "team": ws.team_id,
                **common,
                **attached,
            }
            events.insert(0, app_mention | {"event_ts": message.ts})
        return [self._envelope(ws, event) for event in events]

    def _in_assistant_thread(self, ws: Workspace, message: StoredMessage) -> bool:
        if not message.is_reply:
            return False
        root = self._find(ws, message.channel, message.thread_root, include_deleted=True)
        return root is not None and root.fields.get("subtype") == "assistant_app_thread"

    def _deliver_if_member(
        self, ws: Workspace, channel: str, event: dict[str, Any], event_ts: str
    ) -> list[dict[str, Any]]:
        conversation = self._known_channel(ws, channel)
        if ws.bot_user_id not in conversation.members:
            return []
        event = event | {
            "event_ts": event_ts,
            "ts": event.get("ts", event_ts),
            "channel_type": conversation.channel_type,
        }
        return [self._envelope(ws, event)]

    def _assistant_thread_envelope(
        self, ws: Workspace, event_type: str, channel: str, user: str, thread_ts: str, context_channel_id: str | None
    ) -> dict[str, Any]:
        context = (
            {"channel_id": context_channel_id, "team_id": ws.team_id, "enterprise_id": None}
            if context_channel_id
            else {}
        )
        event = {
            "type": event_type,
            "assistant_thread": {"user_id": user, "context": context, "channel_id": channel, "thread_ts": thread_ts},
            "event_ts": self._next_ts(),
        }
        return self._envelope(ws, event)

    def _envelope(self, ws: Workspace, event: dict[str, Any]) -> dict[str, Any]:
        context = base64.urlsafe_b64encode(json.dumps({"ts": event["event_ts"]}).encode()).decode()
        envelope = {
            "token": self.verification_token,
            "team_id": ws.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": random_id("Ev"),
            "event_time": ts_key(event["event_ts"])[0],
            "authed_users": [ws.bot_user_id],
            "authorizations": [
                {"team_id": ws.team_id, "user_id": ws.bot_user_id, "is_bot": True, "is_enterprise_install": False}
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{context}",
        }
        sample = sample_shape(event_sample_path(event))
        if sample is not None:
            self._check(envelope, sample, f"{event_sample_path(event)} envelope")
        return envelope

    def _check(self, value: dict[str, Any], shape: Shape | None, label: str) -> None:
        if shape is None:
            self._violations.append(f"{label}: no reference shape to check against")
            return
        self._violations += [f"{label}: {problem}" for problem in shape_violations(value, shape)]

    # -- internals: HTTP -------------------------------------------------------------------------

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: Slack says hello, pushes envelopes, and waits for each one's ack."""
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"type": "hello", "num_connections": len(self._sockets), "connection_info": {"app_id": self.app_id}})
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
                {"envelope_id": envelope_id, "type": "events_api", "payload": envelope,
                 "accepts_response_payload": False, "retry_attempt": 0, "retry_reason": ""}
            )
            return await asyncio.wait_for(waiter, timeout)

        return asyncio.run_coroutine_threadsafe(push(), self._loop).result(timeout + 1)

    def _open_socket_connection(self, token: str | None) -> dict[str, Any]:
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": f"ws://127.0.0.1:{self._port}/socket-mode"}

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
        ws = next((w for w in self._workspaces.values() if w.bot_token == token), None)
        status, headers = 200, {}
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
            self._check(body, response_shape(name), f"{name} response")
        self._calls.append(RecordedCall(name, params.decoded(), token, time.time(), copy.deepcopy(body)))
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

    async def _handle_upload(self, request: web.Request) -> web.Response:
        # slack_sdk posts the raw bytes; browsers and curl -F post a multipart "file" field.
        if request.content_type.startswith("multipart/"):
            content = (await request.post())["file"].file.read()
        else:
            content = await request.read()
        with self._lock:
            target = self._pending_uploads.pop(request.match_info["upload_id"], None)
            if target is None:
                return web.Response(status=404, text="upload URL unknown or already used")
            team_id, file_id = target
            self._workspaces[team_id].files[file_id].content = content
        return web.Response(text=f"OK - {len(content)}")

    async def _handle_download(self, request: web.Request) -> web.Response:
        team_id, _, file_id = request.match_info["team_file"].partition("-")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            ws = self._workspaces.get(team_id)
            stored = ws.files.get(file_id) if ws is not None else None
            granted = self.files_read_granted and ws is not None and token == ws.bot_token
            if not granted or stored is None or stored.content is None:
                # Slack answers unauthenticated file requests with its sign-in page, not an error status.
                return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
            return web.Response(body=stored.content, content_type=stored.info["mimetype"])

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            target = self._response_targets.get(request.match_info["key"])
            if target is None:
                return web.Response(status=404, text="no_service")
            self._response_url_posts.append(ResponseUrlPost(str(request.url), body, time.time()))
            self._deliver_response(target, body)
        return web.Response(text="ok")

    def _deliver_response(self, target: ResponseTarget, body: dict[str, Any]) -> None:
        ws = self._workspaces[target.team_id]
        if target.channel is None:
            return
        content = {k: body[k] for k in ("text", "blocks", "attachments") if k in body}
        if body.get("response_type") == "in_channel":
            thread_ts = self._thread_root_ts(ws, target.channel, body.get("thread_ts"))
            self._store(ws, target.channel, self._bot_fields(ws, target.channel, content, thread_ts))
        elif target.user is not None:
            ws.ephemeral.append({"channel": target.channel, "user": target.user, "ts": self._next_ts(), **content})

    # -- internals: channels and messages for handlers -------------------------------------------

    def _visible_channel(self, ws: Workspace, channel_id: str | None) -> Channel:
        """A conversation the bot may know about: private ones only when it is a member."""
        conversation = ws.channels.get(channel_id or "")
        if conversation is None or (conversation.is_private and ws.bot_user_id not in conversation.members):
            raise SlackError("channel_not_found")
        return conversation

    def _joined_channel(self, ws: Workspace, channel_id: str | None) -> Channel:
        if channel_id in ws.users:
            return self._im_with(ws, channel_id)
        conversation = self._visible_channel(ws, channel_id)
        if ws.bot_user_id not in conversation.members:
            raise SlackError("not_in_channel")
        return conversation

    def _im_with(self, ws: Workspace, user: str) -> Channel:
        # Posting to a user ID posts into the app's IM with them, opening it if needed.
        for conversation in ws.channels.values():
            if conversation.is_im and conversation.user == user:
                return conversation
        channel_id = random_id("D")
        self.add_channel(channel_id, is_im=True, user=user, team_id=ws.team_id)
        return ws.channels[channel_id]

    def _bot_message(self, ws: Workspace, params: Params, key: str = "ts") -> StoredMessage:
        conversation = self._joined_channel(ws, params.text("channel"))
        message = self._stored(ws, conversation.id, params.text(key) or "")
        if message.fields.get("bot_id") != ws.bot_id:
            raise SlackError("cant_update_message")
        return message

    def _content(self, params: Params) -> dict[str, Any]:
        """The message content fields of a chat.* request, with Slack's size limits."""
        content: dict[str, Any] = {}
        text = params.text("markdown_text") if params.present("markdown_text") else params.text("text")
        if text is not None:
            if len(text) > MAX_TEXT_LENGTH:
                raise SlackError("msg_too_long")
            content["text"] = text
        if params.present("blocks"):
            blocks = params.json("blocks", error="invalid_blocks_format")
            if not isinstance(blocks, list):
                raise SlackError("invalid_blocks_format")
            if len(blocks) > MAX_BLOCKS:
                raise SlackError("invalid_blocks")
            content["blocks"] = blocks
        if params.present("attachments"):
            content["attachments"] = params.json("attachments")
        if params.present("metadata"):
            metadata = params.json("metadata")
            # Slack keeps an empty payload as an object (bolt's assistant `say` sends null
            # when the thread has no context yet).
            if isinstance(metadata, dict) and metadata.get("event_payload") is None:
                metadata = {**metadata, "event_payload": {}}
            content["metadata"] = metadata
        return content

    def _bot_fields(
        self, ws: Workspace, channel: str, content: Mapping[str, Any], thread_ts: str | None
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "type": "message",
            "text": "",
            "user": ws.bot_user_id,
            "bot_id": ws.bot_id,
            "app_id": self.app_id,
            "team": ws.team_id,
            "bot_profile": {
                "id": ws.bot_id,
                "deleted": False,
                "name": BOT_NAME,
                "updated": int(time.time()),
                "app_id": self.app_id,
                "icons": {f"image_{size}": f"https://a.slack-edge.com/bot_{size}.png" for size in (36, 48, 72)},
                "team_id": ws.team_id,
            },
            "ts": self._next_ts(),
            **content,
        }
        if thread_ts:
            parent = self._find(ws, channel, thread_ts, include_deleted=True)
            fields |= {"thread_ts": thread_ts, "parent_user_id": parent.author if parent else ws.bot_user_id}
        return fields

    def _post_bot_message(
        self, ws: Workspace, channel: Channel, content: Mapping[str, Any], thread_ts: str | None
    ) -> StoredMessage:
        root_ts = self._thread_root_ts(ws, channel.id, thread_ts)
        message = self._store(ws, channel.id, self._bot_fields(ws, channel.id, content, root_ts))
        if root_ts:
            # Slack clears an assistant thread's status once the app replies in it.
            ws.statuses.pop((channel.id, root_ts), None)
        return message

    def _page(self, items: list[dict[str, Any]], params: Params, limits: tuple[int, int]) -> dict[str, Any]:
        """Cursor pagination as Slack does it: an opaque base64 "next_ts:<ts>" cursor and has_more."""
        default_limit, max_limit = limits
        limit = min(max(params.integer("limit", default_limit), 1), max_limit)
        start = 0
        if params.present("cursor"):
            try:
                next_ts = base64.b64decode(params.text("cursor") or "").decode().removeprefix("next_ts:")
            except ValueError:
                raise SlackError("invalid_cursor") from None
            start = next((i for i, item in enumerate(items) if item["ts"] == next_ts), -1)
            if start < 0:
                raise SlackError("invalid_cursor")
        page, rest = items[start : start + limit], items[start + limit :]
        next_cursor = base64.b64encode(f"next_ts:{rest[0]['ts']}".encode()).decode() if rest else ""
        return {"messages": page, "has_more": bool(rest), "response_metadata": {"next_cursor": next_cursor}}

    @staticmethod
    def _within(ts: str, params: Params) -> bool:
        inclusive = params.flag("inclusive")
        key = ts_key(ts)
        if params.present("oldest"):
            oldest = ts_key(params.text("oldest") or "0")
            if key < oldest or (key == oldest and not inclusive):
                return False
        if params.present("latest"):
            latest = ts_key(params.text("latest") or "0")
            if key > latest or (key == latest and not inclusive):
                return False
        return True

    # -- internals: files ------------------------------------------------------------------------

    def _new_file(
        self, ws: Workspace, *, name: str, title: str, user: str, size: int, mimetype: str | None
    ) -> StoredFile:
        mimetype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        now = int(time.time())
        info = {
            "id": random_id("F"),
            "created": now,
            "timestamp": now,
            "name": name,
            "title": title,
            "mimetype": mimetype,
            "filetype": Path(name).suffix.lstrip(".").lower() or "binary",
            "pretty_type": (Path(name).suffix.lstrip(".").upper() or "Binary"),
            "user": user,
            "user_team": ws.team_id,
            "editable": False,
            "size": size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "channels": [],
            "groups": [],
            "ims": [],
            "comments_count": 0,
        }
        stored = StoredFile(info, content=None)
        ws.files[info["id"]] = stored
        return stored

    def _file_object(self, ws: Workspace, stored: StoredFile) -> dict[str, Any]:
        info = stored.info
        private = f"{self.base_url}/files-pri/{ws.team_id}-{info['id']}"
        return copy.deepcopy(info) | {
            "url_private": f"{private}/{info['name']}",
            "url_private_download": f"{private}/download/{info['name']}",
            "permalink": f"https://{ws.domain}.slack.com/files/{info['user']}/{info['id']}/{info['name']}",
        }

    def _posted_file_id(self, ws: Workspace, user: str, file: dict[str, Any] | str) -> str:
        """A file a person attaches: an id or object from add_file(), or a bare file object registered on the fly."""
        if isinstance(file, str):
            if file not in ws.files:
                raise ValueError(f"unknown file {file} in {ws.team_id}; add it with add_file()")
            return file
        if file.get("id") in ws.files:
            return file["id"]
        name = file.get("name", "file")
        stored = self._new_file(
            ws,
            name=name,
            title=file.get("title", name),
            user=user,
            size=file.get("size", 0),
            mimetype=file.get("mimetype"),
        )
        if "id" in file:
            ws.files[file["id"]] = ws.files.pop(stored.info["id"])
            stored.info["id"] = file["id"]
        stored.content = b""
        return stored.info["id"]

    def _share_file(self, ws: Workspace, conversation: Channel, file_id: str) -> dict[str, Any]:
        """Share a file into a conversation; returns the file as messages carry it, without its share lists."""
        stored = ws.files.get(file_id)
        if stored is None:
            raise SlackError("file_not_found")
        bucket = "ims" if conversation.is_im else "groups" if conversation.is_private else "channels"
        if conversation.id not in stored.info[bucket]:
            stored.info[bucket].append(conversation.id)
        stored.info["is_public"] = bool(stored.info["channels"])
        return {k: v for k, v in self._file_object(ws, stored).items() if k not in ("channels", "groups", "ims")}

    # -- Web API methods -------------------------------------------------------------------------

    def auth_test(self, ws: Workspace, params: Params) -> dict[str, Any]:
        return {
            "url": f"https://{ws.domain}.slack.com/",
            "team": ws.name,
            "user": BOT_NAME,
            "team_id": ws.team_id,
            "user_id": ws.bot_user_id,
            "bot_id": ws.bot_id,
            "is_enterprise_install": False,
        }

    def chat_post_message(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._joined_channel(ws, params.text("channel"))
        content = self._content(params)
        if params.flag("reply_broadcast") and params.present("thread_ts"):
            content["subtype"] = "thread_broadcast"
        message = self._post_bot_message(ws, conversation, content, params.text("thread_ts"))
        return {"channel": conversation.id, "ts": message.ts, "message": self._message_view(ws, message)}

    def chat_update(self, ws: Workspace, params: Params) -> dict[str, Any]:
        message = self._bot_message(ws, params)
        message.fields |= self._content(params) | {"edited": {"user": ws.bot_user_id, "ts": self._next_ts()}}
        message.texts.append(message.fields["text"])
        view = {k: v for k, v in self._message_view(ws, message).items() if k != "ts"}
        return {"channel": message.channel, "ts": message.ts, "text": message.fields["text"], "message": view}

    def chat_delete(self, ws: Workspace, params: Params) -> dict[str, Any]:
        try:
            message = self._bot_message(ws, params)
        except SlackError as error:
            raise SlackError("cant_delete_message" if error.code == "cant_update_message" else error.code) from None
        message.deleted = True
        return {"channel": message.channel, "ts": message.ts}

    def chat_post_ephemeral(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._joined_channel(ws, params.text("channel"))
        user = params.text("user") or ""
        if user not in conversation.members:
            raise SlackError("user_not_in_channel")
        ts = self._next_ts()
        record = {"channel": conversation.id, "user": user, "ts": ts, **self._content(params)}
        if params.present("thread_ts"):
            record["thread_ts"] = params.text("thread_ts")
        ws.ephemeral.append(record)
        return {"message_ts": ts}

    def chat_get_permalink(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._visible_channel(ws, params.text("channel"))
        message = self._stored(ws, conversation.id, params.text("message_ts") or "")
        permalink = f"https://{ws.domain}.slack.com/archives/{conversation.id}/p{message.ts.replace('.', '')}"
        if message.is_reply:
            permalink += f"?thread_ts={message.thread_root}&cid={conversation.id}"
        return {"channel": conversation.id, "permalink": permalink}

    def conversations_replies(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._joined_channel(ws, params.text("channel"))
        try:
            root = self._stored(ws, conversation.id, params.text("ts") or "").thread_root
            self._stored(ws, conversation.id, root)
        except SlackError:
            raise SlackError("thread_not_found") from None
        thread = [self._listed(ws, m, params) for m in self._visible(ws, conversation.id, root)]
        return self._page([m for m in thread if self._within(m["ts"], params)], params, REPLIES_LIMIT)

    def conversations_history(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._joined_channel(ws, params.text("channel"))
        newest_first = [self._listed(ws, m, params) for m in reversed(self._visible(ws, conversation.id, None))]
        page = self._page([m for m in newest_first if self._within(m["ts"], params)], params, HISTORY_LIMIT)
        return page | {"pin_count": 0}

    def conversations_info(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._visible_channel(ws, params.text("channel"))
        info: dict[str, Any] = {
            "id": conversation.id,
            "created": conversation.created,
            "is_archived": False,
            "is_im": conversation.is_im,
            "is_org_shared": False,
            "context_team_id": ws.team_id,
            "updated": conversation.created * 1000,
        }
        if conversation.is_im:
            info |= {"user": conversation.user}
        else:
            info |= {
                "name": conversation.name or conversation.id.lower(),
                "name_normalized": conversation.name or conversation.id.lower(),
                "is_channel": not conversation.is_private,
                "is_group": conversation.is_private and not conversation.is_mpim,
                "is_mpim": conversation.is_mpim,
                "is_private": conversation.is_private,
                "is_general": False,
                "is_shared": False,
                "is_ext_shared": False,
                "is_pending_ext_shared": False,
                "is_member": ws.bot_user_id in conversation.members,
                "creator": ws.bot_user_id,
                "num_members": len(conversation.members),
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
                "previous_names": [],
            }
        return {"channel": info}

    def users_info(self, ws: Workspace, params: Params) -> dict[str, Any]:
        user = ws.users.get(params.text("user") or "")
        if user is None:
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}

    def assistant_threads_set_status(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._joined_channel(ws, params.text("channel_id"))
        thread_ts = params.text("thread_ts") or ""
        ws.statuses[(conversation.id, thread_ts)] = params.text("status") or ""
        self._status_updates.append({"team_id": ws.team_id, **params.decoded()})
        return {}

    def assistant_threads_set_suggested_prompts(self, ws: Workspace, params: Params) -> dict[str, Any]:
        self._joined_channel(ws, params.text("channel_id"))
        prompts = params.json("prompts")
        if not isinstance(prompts, list) or not all(isinstance(p, dict) and p.get("message") for p in prompts):
            raise SlackError("invalid_arguments")
        self._suggested_prompts.append({"team_id": ws.team_id, **params.decoded()})
        return {}

    def assistant_threads_set_title(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._joined_channel(ws, params.text("channel_id"))
        root = self._stored(ws, conversation.id, params.text("thread_ts") or "")
        if "assistant_app_thread" in root.fields:
            root.fields["assistant_app_thread"]["title"] = params.text("title")
        self._title_updates.append({"team_id": ws.team_id, **params.decoded()})
        return {}

    def reactions_add(self, ws: Workspace, params: Params) -> dict[str, Any]:
        message, users = self._reaction_users(ws, params)
        if ws.bot_user_id in users:
            raise SlackError("already_reacted")
        self._set_reaction(message, params.text("name") or "", [*users, ws.bot_user_id])
        return {}

    def reactions_remove(self, ws: Workspace, params: Params) -> dict[str, Any]:
        message, users = self._reaction_users(ws, params)
        if ws.bot_user_id not in users:
            raise SlackError("no_reaction")
        self._set_reaction(message, params.text("name") or "", [u for u in users if u != ws.bot_user_id])
        return {}

    def _reaction_users(self, ws: Workspace, params: Params) -> tuple[StoredMessage, list[str]]:
        conversation = self._joined_channel(ws, params.text("channel"))
        message = self._stored(ws, conversation.id, params.text("timestamp") or "")
        reaction = next((r for r in message.fields.get("reactions", []) if r["name"] == params.text("name")), None)
        return message, list(reaction["users"]) if reaction else []

    @staticmethod
    def _set_reaction(message: StoredMessage, name: str, users: list[str]) -> None:
        # Slack lists reactions in the order they were first added and drops the key when none are left.
        by_name = {r["name"]: r["users"] for r in message.fields.pop("reactions", [])} | {name: users}
        listed = [{"name": n, "users": u, "count": len(u)} for n, u in by_name.items() if u]
        if listed:
            message.fields["reactions"] = listed

    def views_open(self, ws: Workspace, params: Params) -> dict[str, Any]:
        return {"view": self._save_view(ws, params.json("view"), view_id=random_id("V"))}

    def views_update(self, ws: Workspace, params: Params) -> dict[str, Any]:
        external_id = params.text("external_id")
        current = ws.views.get(params.text("view_id") or "") or next(
            (v for v in ws.views.values() if external_id and v.get("external_id") == external_id), None
        )
        if current is None:
            raise SlackError("not_found")
        if params.present("hash") and params.text("hash") != current["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._save_view(ws, params.json("view"), view_id=current["id"])}

    def views_publish(self, ws: Workspace, params: Params) -> dict[str, Any]:
        user = params.text("user_id") or ""
        if user not in ws.users:
            raise SlackError("user_not_found")
        view = self._save_view(ws, params.json("view"), view_id=ws.home_views.get(user) or random_id("V"))
        ws.home_views[user] = view["id"]
        return {"view": view}

    def _save_view(self, ws: Workspace, view: Any, *, view_id: str) -> dict[str, Any]:
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackError("invalid_arguments")
        saved = {
            "id": view_id,
            "team_id": ws.team_id,
            "type": view["type"],
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "app_id": self.app_id,
            "app_installed_team_id": ws.team_id,
            "bot_id": ws.bot_id,
            **view,
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        }
        ws.views[view_id] = saved
        return copy.deepcopy(saved)

    def chat_start_stream(self, ws: Workspace, params: Params) -> dict[str, Any]:
        conversation = self._joined_channel(ws, params.text("channel"))
        message = self._post_bot_message(
            ws, conversation, {"text": self._streamed_text(params)}, params.text("thread_ts")
        )
        message.streaming = True
        return {"channel": conversation.id, "ts": message.ts}

    def chat_append_stream(self, ws: Workspace, params: Params) -> dict[str, Any]:
        message = self._streaming_message(ws, params)
        self._append(message, self._streamed_text(params))
        return {"channel": message.channel, "ts": message.ts}

    def chat_stop_stream(self, ws: Workspace, params: Params) -> dict[str, Any]:
        message = self._streaming_message(ws, params)
        self._append(message, self._streamed_text(params))
        message.fields |= {k: v for k, v in self._content(params).items() if k in ("blocks", "metadata")}
        message.streaming = False
        return {}

    def _streaming_message(self, ws: Workspace, params: Params) -> StoredMessage:
        message = self._bot_message(ws, params)
        if not message.streaming:
            raise SlackError("message_not_in_streaming_state")
        return message

    @staticmethod
    def _streamed_text(params: Params) -> str:
        chunks = params.json("chunks")
        chunks = chunks if isinstance(chunks, list) else []
        pieces = [params.text("markdown_text") or ""]
        pieces += [c.get("text", "") for c in chunks if isinstance(c, dict) and c.get("type") == "markdown_text"]
        return "".join(pieces)

    @staticmethod
    def _append(message: StoredMessage, text: str) -> None:
        if text:
            message.fields["text"] += text
            message.texts.append(message.fields["text"])

    def files_get_upload_url_external(self, ws: Workspace, params: Params) -> dict[str, Any]:
        name = params.text("filename") or ""
        stored = self._new_file(
            ws, name=name, title=name, user=ws.bot_user_id, size=params.integer("length", 0), mimetype=None
        )
        upload_id = secrets.token_hex(12)
        self._pending_uploads[upload_id] = (ws.team_id, stored.info["id"])
        return {"upload_url": f"{self.base_url}/upload/v1/{upload_id}", "file_id": stored.info["id"]}

    def files_complete_upload_external(self, ws: Workspace, params: Params) -> dict[str, Any]:
        requested = params.json("files")
        if not isinstance(requested, list) or not requested:
            raise SlackError("invalid_arguments")
        completed: list[StoredFile] = []
        for item in requested:
            stored = ws.files.get(item.get("id", "")) if isinstance(item, dict) else None
            if stored is None or stored.content is None:
                raise SlackError("file_not_found")
            stored.info["title"] = item.get("title") or stored.info["title"]
            stored.info["size"] = len(stored.content)
            completed.append(stored)
        channel_ids = [params.text("channel_id")] if params.present("channel_id") else []
        channel_ids += [c for c in (params.text("channels") or "").split(",") if c]
        for channel_id in channel_ids:
            conversation = self._joined_channel(ws, channel_id)
            shared = [self._share_file(ws, conversation, s.info["id"]) for s in completed]
            content = {"text": params.text("initial_comment") or "", "files": shared, "upload": True}
            self._post_bot_message(ws, conversation, content, params.text("thread_ts"))
        return {"files": [self._file_object(ws, s) for s in completed]}

    def files_info(self, ws: Workspace, params: Params) -> dict[str, Any]:
        stored = ws.files.get(params.text("file") or "")
        if stored is None or stored.content is None:
            raise SlackError("file_not_found")
        return {"file": self._file_object(ws, stored), "comments": []}


SIGN_IN_PAGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Slack</title></head>'
    '<body><h1>Sign in to Slack</h1><form action="/signin" method="post"></form></body></html>'
)

METHODS: dict[str, Method] = {
    "auth.test": Method(SlackDouble.auth_test),
    "chat.postMessage": Method(SlackDouble.chat_post_message, (NEED_CHANNEL, NEED_MESSAGE_CONTENT)),
    "chat.update": Method(SlackDouble.chat_update, (NEED_CHANNEL, NEED_TS, NEED_MESSAGE_CONTENT)),
    "chat.delete": Method(SlackDouble.chat_delete, (NEED_CHANNEL, NEED_TS)),
    "chat.postEphemeral": Method(
        SlackDouble.chat_post_ephemeral, (NEED_CHANNEL, need("user", error="user_not_in_channel"), NEED_MESSAGE_CONTENT)
    ),
    "chat.getPermalink": Method(
        SlackDouble.chat_get_permalink, (NEED_CHANNEL, need("message_ts", error="message_not_found"))
    ),
    "chat.startStream": Method(SlackDouble.chat_start_stream, (NEED_CHANNEL, NEED_THREAD_TS)),
    "chat.appendStream": Method(
        SlackDouble.chat_append_stream, (NEED_CHANNEL, NEED_TS, need("markdown_text", "chunks"))
    ),
    "chat.stopStream": Method(SlackDouble.chat_stop_stream, (NEED_CHANNEL, NEED_TS)),
    "conversations.replies": Method(
        SlackDouble.conversations_replies, (NEED_CHANNEL, need("ts", error="thread_not_found"))
    ),
    "conversations.history": Method(SlackDouble.conversations_history, (NEED_CHANNEL,)),
    "conversations.info": Method(SlackDouble.conversations_info, (NEED_CHANNEL,)),
    "users.info": Method(SlackDouble.users_info, (need("user", error="user_not_found"),)),
    "assistant.threads.setStatus": Method(
        SlackDouble.assistant_threads_set_status, (NEED_CHANNEL_ID, NEED_THREAD_TS, need("status", allow_empty=True))
    ),
    "assistant.threads.setSuggestedPrompts": Method(
        SlackDouble.assistant_threads_set_suggested_prompts, (NEED_CHANNEL_ID, NEED_THREAD_TS, need("prompts"))
    ),
    "assistant.threads.setTitle": Method(
        SlackDouble.assistant_threads_set_title, (NEED_CHANNEL_ID, NEED_THREAD_TS, need("title"))
    ),
    "reactions.add": Method(
        SlackDouble.reactions_add,
        (NEED_CHANNEL, need("timestamp", error="message_not_found"), need("name", error="invalid_name")),
    ),
    "reactions.remove": Method(
        SlackDouble.reactions_remove,
        (NEED_CHANNEL, need("timestamp", error="message_not_found"), need("name", error="invalid_name")),
    ),
    "views.open": Method(SlackDouble.views_open, (need("trigger_id"), need("view"))),
    "views.update": Method(SlackDouble.views_update, (need("view_id", "external_id", error="not_found"), need("view"))),
    "views.publish": Method(SlackDouble.views_publish, (need("user_id"), need("view"))),
    "files.getUploadURLExternal": Method(SlackDouble.files_get_upload_url_external, (need("filename"), need("length"))),
    "files.completeUploadExternal": Method(SlackDouble.files_complete_upload_external, (need("files"),)),
    "files.info": Method(SlackDouble.files_info, (need("file", error="file_not_found"),)),
}

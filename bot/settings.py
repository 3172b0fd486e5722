"""Settings read from the environment and a `.env` file, validated once at start."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.conversations.profiles import BUILTIN_TOOLS
from bot.errors import ConfigurationError

OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/bot.sqlite3"
# The README's examples ("xoxb-...") are copied as they are, too.
PLACEHOLDER_SECRETS = {
    "changeme",
    "xoxb-your-token",
    "sk-your-key",
    "your-signing-secret",
    "...",
    "xoxb-...",
    "xapp-...",
    "sk-...",
}
SECRET_FIELDS = (
    "slack_bot_token",
    "openai_api_key",
    "slack_signing_secret",
    "slack_app_token",
    "slack_client_secret",
    "mcp_secret_key",
)
# Tokens, keys and signing secrets are visible ASCII without spaces; anything else cannot be sent in a header.
SECRET_CHARACTERS = re.compile(r"[\x21-\x7e]+")
# A header value may hold spaces ("Bearer ..."), never control characters or non-ASCII.
HEADER_VALUE_CHARACTERS = re.compile(r"[\x20-\x7e]*")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The bot scopes manifest.yml asks for, which an OAuth install asks for unless SLACK_SCOPES says otherwise.
MANIFEST_BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "channels:read",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "im:history",
    "im:read",
    "im:write",
    "mpim:history",
    "mpim:read",
    "reactions:write",
    "users:read",
)
# How repr() shows a value it hides, as pydantic shows a SecretStr.
MASK = "**********"


def _json_object(value: Any, name: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f'{name} must be a JSON object, e.g. {{"key": "value"}}') from exc
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return {str(key): str(item) for key, item in value.items()}


def _id_list(value: Any, name: str) -> list[str]:
    """A list of ids (ADMIN_USER_IDS, ALLOWED_PROFILE_IDS) given as a JSON list or comma-separated."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name} must be a JSON list or comma-separated ids") from exc
        else:
            value = text.split(",")
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a JSON list or comma-separated ids")
    return [str(item).strip() for item in value if str(item).strip()]


class Settings(BaseSettings):
    """Every setting the bot reads. Names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # The Slack settings are optional here: `shell` and `doctor` run without them, `run` checks them
    # (missing_slack_settings).
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # OAuth mode (many workspaces): with both set, workspaces install the app at /slack/install and each
    # installation's bot token is used for its workspace; SLACK_BOT_TOKEN is then not used.
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    # The bot scopes an OAuth install asks for: those manifest.yml lists (tests/test_oauth_e2e.py checks).
    slack_scopes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(MANIFEST_BOT_SCOPES))
    # What happens to a workspace's conversations when it uninstalls the app (OAuth mode): kept, or purged
    # with what the backend keeps of them on the API.
    data_on_uninstall: Literal["keep", "purge"] = "keep"
    # Besides workspace admins and owners, these people may change a channel's assistant.
    admin_user_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Profiles (assistants) a channel may be bound to besides the workspace's own: its channels' choices,
    # those made in it and the default. Others of the API organisation need their id listed here.
    allowed_profile_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Remote MCP servers (`/assistant mcp`, responses backend). Their header secrets are encrypted with this
    # Fernet key; without it a server can be registered only without a secret.
    mcp_secret_key: SecretStr | None = None
    # Plain http is refused but on a loopback address when this is set (a server on the same host; tests).
    mcp_allow_http_loopback: bool = False
    # Besides the person who asked, workspace admins (and ADMIN_USER_IDS) may approve or deny a tool call.
    mcp_admins_may_approve: bool = False
    # An approval nobody gave in this long is a denial, and the thread says so.
    mcp_approval_timeout_seconds: float = Field(default=600.0, gt=0)
    image_model: str = "gpt-image-1"
    image_size: str = "1024x1024"

    # Optional only for servers that need no key or gateways that authenticate another way.
    openai_api_key: SecretStr | None = None
    openai_base_url: str = OPENAI_URL
    # Which API the bot speaks: Responses + Conversations, the Assistants API, or chat completions.
    # (The names are the backends in bot.app.BACKENDS; an unknown one is refused at start.)
    openai_backend: str = "responses"
    openai_assistant_id: str | None = None
    openai_extra_headers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    openai_extra_query: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    openai_timeout_seconds: float = Field(default=120.0, gt=0)
    openai_max_retries: int = Field(default=4, ge=0, le=10)

    # The chat backend keeps each conversation's history itself and sends at most this much of it.
    chat_max_history_tokens: int = Field(default=16000, ge=1000)
    # Embeds the chunks of long documents the chat backend retrieves from.
    embedding_model: str = "text-embedding-3-small"

    assistant_model: str = "gpt-4o-mini"
    assistant_name: str = "Slack Assistant"
    assistant_instructions: str = (
        "You are a helpful assistant in a Slack workspace. Answer clearly and concisely. "
        "Messages from several people are prefixed with the speaker's name."
    )
    # The default profile's built-in tools (names from bot.conversations.profiles.BUILTIN_TOOLS). None (unset):
    # web search where the backend runs it. A tool the backend cannot run is refused at start.
    assistant_tools: Annotated[list[str] | None, NoDecode] = None
    # How hard reasoning models think, unless a profile says otherwise; None: the model's own default.
    assistant_reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=0, le=65535)  # 0 picks a free port (tests)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # json: one object per line, with the team, channel, conversation, turn and response ids where known.
    log_format: Literal["text", "json"] = "text"
    # People's messages and the model's answers stay out of the logs unless the operator asks for them.
    log_content: bool = False

    reply_without_mention: bool = True
    stream_update_seconds: float = Field(default=1.0, ge=0.0)
    # Slack drops a thread's status after two minutes; it is set again this often while an answer is worked on.
    status_refresh_seconds: float = Field(default=90.0, gt=0.0, le=110.0)
    max_message_chars: int = Field(default=3900, ge=200, le=39000)
    run_poll_max_seconds: float = Field(default=5.0, gt=0)
    run_deadline_seconds: float = Field(default=600.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    # A worker holds a conversation for LEASE_SECONDS (renewed while it works); a dead worker's lease expires.
    # At least 5 s: a worker stops a third of its lease (at most 2 s) before it could run out, and renews it at
    # most once a heartbeat (1 s), three times in the rest; a shorter lease would leave no room for a late beat.
    lease_seconds: float = Field(default=60.0, ge=5.0)
    # Often, as it is one cheap query: a dead process's work is taken up this soon after its heartbeat goes stale.
    sweep_seconds: float = Field(default=2.0, gt=0)
    max_turn_attempts: int = Field(default=3, ge=1)
    # Answers written at once by one process; more wait, unclaimed, for a free slot (or another replica).
    max_concurrent_answers: int = Field(default=100, ge=1)
    run_queued_deadline_seconds: float = Field(default=120.0, gt=0)
    greeting: str = "Hi! I'm your assistant. Ask me anything, or pick one of these to start."
    max_file_mb: int = Field(default=20, ge=1, le=512)  # largest file the bot downloads: shared, or the assistant's
    # What one message's shared files may take together, held in memory until the message is answered.
    max_message_files_mb: int = Field(default=50, ge=1, le=2048)
    transcription_model: str = "whisper-1"
    max_input_chars: int = Field(default=8000, ge=1)
    # The most one read_thread or read_channel call gives the assistant of what it read (newest messages kept).
    read_tools_max_tokens: int = Field(default=4000, ge=100)
    max_files_per_message: int = Field(default=10, ge=0)
    user_rate_limit: int = Field(default=20, ge=1)  # messages per person per minute
    retention_days: int = Field(default=0, ge=0)  # 0: keep conversations forever
    moderation: Literal["off", "input", "output", "both"] = "both"
    moderation_model: str = "omni-moderation-latest"
    # Category -> score at or above which it counts as flagged, even when the API did not flag it.
    moderation_thresholds: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    moderation_on_error: Literal["block", "allow"] = "block"
    moderation_keep_text: bool = False

    @field_validator("openai_extra_headers", "openai_extra_query", mode="before")
    @classmethod
    def _parse_json_object(cls, value: Any, info: Any) -> dict[str, str]:
        # Values often come from secret files, with a trailing newline that would break every request.
        return {key.strip(): item.strip() for key, item in _json_object(value, info.field_name.upper()).items()}

    @field_validator("openai_extra_headers")
    @classmethod
    def _headers_can_be_sent(cls, headers: dict[str, str]) -> dict[str, str]:
        if not all(HEADER_NAME.fullmatch(name) for name in headers):
            raise ValueError("must name each header with letters, digits and dashes only")
        if not all(HEADER_VALUE_CHARACTERS.fullmatch(value) for value in headers.values()):
            raise ValueError("must have header values of printable ASCII characters on one line")
        return headers

    @field_validator("moderation_thresholds", mode="before")
    @classmethod
    def _parse_thresholds(cls, value: Any) -> dict[str, float]:
        problem = "MODERATION_THRESHOLDS must map categories to scores between 0 and 1"
        try:
            thresholds = {key: float(score) for key, score in _json_object(value, "MODERATION_THRESHOLDS").items()}
        except ValueError:
            raise ValueError(problem) from None
        if not all(0.0 <= score <= 1.0 for score in thresholds.values()):
            raise ValueError(problem)
        return thresholds

    @field_validator("moderation", "moderation_on_error", mode="before")
    @classmethod
    def _lower_choice(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("admin_user_ids", "allowed_profile_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: Any, info: Any) -> list[str]:
        return _id_list(value, info.field_name.upper())

    @field_validator("assistant_tools", mode="before")
    @classmethod
    def _parse_tools(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        tools = [tool.lower() for tool in _id_list(value, "ASSISTANT_TOOLS")]
        unknown = [tool for tool in tools if tool not in BUILTIN_TOOLS]
        if unknown:
            raise ValueError(f"must name only tools among {', '.join(BUILTIN_TOOLS)} (not {', '.join(unknown)})")
        return list(dict.fromkeys(tools))

    @field_validator("assistant_reasoning_effort", mode="before")
    @classmethod
    def _no_effort_when_empty(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("slack_scopes", mode="before")
    @classmethod
    def _parse_scopes(cls, value: Any) -> list[str]:
        return _id_list(value, "SLACK_SCOPES") or list(MANIFEST_BOT_SCOPES)

    @field_validator("slack_client_id", mode="before")
    @classmethod
    def _no_client_id_when_empty(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("data_on_uninstall", mode="before")
    @classmethod
    def _lower_data_choice(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("slack_api_url")
    @classmethod
    def _slack_url_ends_with_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("openai_base_url")
    @classmethod
    def _openai_url_is_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator(*SECRET_FIELDS, mode="before")
    @classmethod
    def _strip_secret(cls, value: Any) -> Any:
        # `kubectl create secret --from-file` and `echo key > file` leave a trailing newline.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return value.strip() if isinstance(value, str) else value

    @field_validator(*SECRET_FIELDS)
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if not secret:
            raise ValueError("is empty")
        if secret.lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is still the placeholder value; set the real secret")
        if not SECRET_CHARACTERS.fullmatch(secret):
            raise ValueError("must be one line of printable ASCII characters without spaces")
        return value

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def oauth_mode(self) -> bool:
        """Many workspaces, each installing the app through /slack/install (SLACK_CLIENT_ID and _SECRET)."""
        return self.slack_client_id is not None and self.slack_client_secret is not None

    def secrets(self) -> list[str]:
        """Every secret value, so that logs can be scrubbed of them.

        All extra header and query values count: gateways authenticate with headers of every name
        (``Ocp-Apim-Subscription-Key``, ``cf-aig-authorization``...), and the API client masks them all too.
        """
        values = [
            self.slack_bot_token,
            self.openai_api_key,
            self.slack_signing_secret,
            self.slack_app_token,
            self.slack_client_secret,
            self.mcp_secret_key,
        ]
        found = [value.get_secret_value() for value in values if value is not None]
        found += [*self.openai_extra_query.values(), *self.openai_extra_headers.values()]
        found.append(_database_password(self.database_url) or "")
        return [value for value in found if value]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """pydantic's, with header and query values and the database password masked: a repr may reach a log."""
        for name, value in super().__repr_args__():
            if name in ("openai_extra_headers", "openai_extra_query"):
                value = {key: MASK for key in value}
            elif name == "database_url":
                value = _without_password(value)
            yield name, value


def _database_password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def _without_password(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return MASK  # unreadable, so where a password would be is unknown
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad variable and what is wrong, never its value."""
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "settings"
        if item["type"] == "missing":
            problems.append(f"{name} is required but not set")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{name} {message}" if message.startswith(("is ", "must ")) else f"{name}: {message}")
    return "; ".join(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; tests call ``get_settings.cache_clear()`` after changing the environment."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
    if settings.openai_api_key is None and settings.openai_base_url == OPENAI_URL:
        raise ConfigurationError("OPENAI_API_KEY is required but not set")
    return settings


def missing_slack_settings(settings: Settings) -> list[str]:
    """The settings `run` needs to talk to Slack that are not set; `shell` and `doctor` need none of them."""
    missing = []
    if settings.slack_client_id is None and settings.slack_client_secret is not None:
        missing.append("SLACK_CLIENT_ID (OAuth mode, with SLACK_CLIENT_SECRET)")
    elif settings.slack_client_id is not None and settings.slack_client_secret is None:
        missing.append("SLACK_CLIENT_SECRET (OAuth mode, with SLACK_CLIENT_ID)")
    elif settings.slack_bot_token is None and not settings.oauth_mode:
        missing.append("SLACK_BOT_TOKEN (or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for OAuth mode)")
    if not settings.socket_mode and settings.slack_signing_secret is None:
        missing.append("SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)")
    return missing


def require_slack_settings(settings: Settings) -> None:
    """Refuse to serve Slack without its settings, naming the missing ones and what works without them."""
    missing = missing_slack_settings(settings)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigurationError(
            f"{' and '.join(missing)} {verb} required to serve Slack but not set; "
            "`python -m bot shell` talks to the assistant in a terminal without them"
        )

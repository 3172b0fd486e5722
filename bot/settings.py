"""Settings read from the environment and a `.env` file, validated once at start."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigurationError

OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/bot.sqlite3"
PLACEHOLDER_SECRETS = {"changeme", "xoxb-your-token", "sk-your-key", "your-signing-secret", "..."}


def _json_object(value: Any, name: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name} must be a JSON object, e.g. {{\"key\": \"value\"}}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return {str(key): str(item) for key, item in value.items()}


class Settings(BaseSettings):
    """Every setting the bot reads. Names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    # Optional only for servers that need no key or gateways that authenticate another way.
    openai_api_key: SecretStr | None = None
    openai_base_url: str = OPENAI_URL
    openai_assistant_id: str | None = None
    openai_extra_headers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    openai_extra_query: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    openai_timeout_seconds: float = Field(default=120.0, gt=0)
    openai_max_retries: int = Field(default=4, ge=0, le=10)

    assistant_model: str = "gpt-4o-mini"
    assistant_name: str = "Slack Assistant"
    assistant_instructions: str = (
        "You are a helpful assistant in a Slack workspace. Answer clearly and concisely. "
        "Messages from several people are prefixed with the speaker's name."
    )

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=0, le=65535)  # 0 picks a free port (tests)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    reply_without_mention: bool = True
    stream_update_seconds: float = Field(default=1.0, ge=0.0)
    max_message_chars: int = Field(default=3900, ge=200, le=39000)
    run_poll_max_seconds: float = Field(default=5.0, gt=0)
    run_deadline_seconds: float = Field(default=600.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    greeting: str = "Hi! I'm your assistant. Ask me anything, or pick one of these to start."

    @field_validator("openai_extra_headers", "openai_extra_query", mode="before")
    @classmethod
    def _parse_json_object(cls, value: Any, info: Any) -> dict[str, str]:
        return _json_object(value, info.field_name.upper())

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

    @field_validator("slack_bot_token", "openai_api_key", "slack_signing_secret", "slack_app_token")
    @classmethod
    def _refuse_placeholders(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is still the placeholder value; set the real secret")
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def secrets(self) -> list[str]:
        """Every secret value, so that logs can be scrubbed of them."""
        values = [self.slack_bot_token, self.openai_api_key, self.slack_signing_secret, self.slack_app_token]
        found = [value.get_secret_value() for value in values if value is not None]
        found += [v for k, v in {**self.openai_extra_query, **self.openai_extra_headers}.items() if _looks_secret(k)]
        return [value for value in found if value]


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in ("token", "key", "secret", "auth", "password"))


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
        settings = Settings()  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
    if settings.openai_api_key is None and settings.openai_base_url == OPENAI_URL:
        raise ConfigurationError("OPENAI_API_KEY is required but not set")
    if not settings.socket_mode and settings.slack_signing_secret is None:
        raise ConfigurationError("SLACK_SIGNING_SECRET is required in HTTP mode (when SLACK_APP_TOKEN is not set)")
    return settings


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, so its folder can be created before first use."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            path = url.removeprefix(prefix).split("?", 1)[0]
            return Path(path) if path and path != ":memory:" else None
    return None

"""Logging set-up: one line (or JSON object) per record, no secret ever written out, message content only when asked.

Records carry the ids of the work they belong to (team, channel, conversation, turn, the API's response or
run) from a context variable: the conversation service binds them when a worker starts on a batch, and each
worker is an asyncio task of its own, so one conversation's ids never reach another's records.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
# Shorter values are not treated as secrets: replacing every "1" or "v2" in a line would destroy it and hide nothing.
MIN_SECRET_LENGTH = 4
# `extra=CONTENT` marks a record that quotes what people wrote or what the model answered (LOG_CONTENT gates it).
CONTENT: Final[Mapping[str, Any]] = {"carries_content": True}
# Libraries log whole bodies at DEBUG: slack_sdk its requests and answers (messages), slack_bolt the events,
# aiosqlite each statement's parameters (a turn's text). Only the bot's own DEBUG records are known to be clean.
OWN_LOGGERS = ("bot.", "migrations.")
# The keys of a backend's progress that name the API's object for the answer in hand.
API_ID_KEYS = {"response_id": "response", "run_id": "run"}

_fields: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("log_fields", default=MappingProxyType({}))


def set_log_fields(**fields: str | int | None) -> None:
    """Replace the ids of every record logged from now on in this task (and the tasks it starts)."""
    _fields.set(MappingProxyType({}))
    bind_log_fields(**fields)


def bind_log_fields(**fields: str | int | None) -> None:
    """Add ids to every record logged from now on in this task (and the tasks it starts); None leaves one as is."""
    bound = dict(_fields.get())
    bound.update({name: str(value) for name, value in fields.items() if value is not None})
    _fields.set(bound)


def bind_api_ids(progress: Mapping[str, Any]) -> None:
    """Bind the response or run id a backend's checkpoint names, once the API has given it."""
    bind_log_fields(
        **{field: value for key, field in API_ID_KEYS.items() if isinstance(value := progress.get(key), str)}
    )


def log_fields() -> Mapping[str, str]:
    return _fields.get()


def secret_forms(secrets: Iterable[str]) -> list[str]:
    """Every way each secret can appear in text, longest first, so a secret containing another is replaced whole.

    Besides the value itself: Python's and JSON's escaping (an error quoting an illegal header value
    as ``'sk-...\\n'``) and URL encoding (a query token in a logged URL).
    """
    forms: set[str] = set()
    for secret in secrets:
        forms |= {
            secret,
            repr(secret)[1:-1],
            repr(secret.encode("utf-8"))[2:-1],
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
            quote(secret, safe=""),
            quote_plus(secret),
        }
    return sorted((form for form in forms if len(form) >= MIN_SECRET_LENGTH), key=len, reverse=True)


class RedactingFormatter(logging.Formatter):
    """Replaces every known secret in the final text, tracebacks included."""

    def __init__(self, fmt: str | None, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = secret_forms(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class JsonFormatter(RedactingFormatter):
    """One JSON object per record: time, level, logger, message, the bound ids, and any traceback.

    Each value is redacted before it is encoded, so that the line stays valid JSON whatever it hid.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(None, secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **log_fields(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps({key: self.redact(value) for key, value in entry.items()}, ensure_ascii=False)


class ContentGate(logging.Filter):
    """Keeps message content out of the log: records marked CONTENT, and the libraries' DEBUG records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "carries_content", False):
            return False
        return record.levelno > logging.DEBUG or f"{record.name}.".startswith(OWN_LOGGERS)


def configure_logging(level: str, secrets: Iterable[str], *, json_lines: bool = False, content: bool = False) -> None:
    """Log to stderr: as text or JSON lines, secrets scrubbed, message content only with ``content``."""
    handler = logging.StreamHandler(sys.stderr)
    text_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(JsonFormatter(secrets) if json_lines else RedactingFormatter(text_format, secrets))
    if not content:
        handler.addFilter(ContentGate())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every URL at INFO, query string and all; a gateway token may be in it.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))

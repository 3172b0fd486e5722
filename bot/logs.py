"""Logging set-up: one line per record, and no secret ever written out, in any of its escaped forms."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
# Shorter values are not treated as secrets: replacing every "1" or "v2" in a line would destroy it and hide nothing.
MIN_SECRET_LENGTH = 4


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

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = secret_forms(secrets)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every URL at INFO, query string and all; a gateway token may be in it.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))

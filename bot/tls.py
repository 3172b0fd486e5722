"""The TLS context the bot's httpx clients share: building one loads the CA bundle, tens of milliseconds of CPU,
and each client would otherwise build its own at every start."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_tls() -> ssl.SSLContext:
    """httpx's own default (certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR when set), built once."""
    return httpx.create_ssl_context()

"""Every test runs under a secret audit: no known secret in any log record or anything sent to Slack or OpenAI."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from doubles import slack_events

# Secrets some tests use beyond the fixtures' own (the gateway test's query token).
GATEWAY_TOKEN = "gw-token-77"


def record_text(record: logging.LogRecord) -> str:
    """Everything a log line can carry: message, traceback (with chained causes) and stack."""
    parts = [record.getMessage()]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


def _dump(value: Any) -> str:
    return json.dumps(value, default=repr, ensure_ascii=False)


def find_leaks(secrets: Mapping[str, str], places: Iterable[tuple[str, str]]) -> list[str]:
    """'where: which secret' for each place whose text contains a secret."""
    return [
        f"{where}: {name} in {text[:300]!r}"
        for where, text in places
        for name, secret in secrets.items()
        if secret in text
    ]


class Audit:
    """The secrets to look for (a test may add its own) and the bot's HTTP answers to Slack."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.secrets = dict(secrets)
        self.responses: list[str] = []


@pytest.fixture(autouse=True)
def secret_audit(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Capture every logger at DEBUG; afterwards fail, naming the place, if a known secret got out.

    Checked: every log record of the test's setup, call and teardown (tracebacks included), every
    Slack Web API call and response_url post the bot made, every answer it gave to a delivered
    Slack request, and every request body sent to the OpenAI double (the key belongs in a header).
    """
    from conftest import BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET

    audit = Audit(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "OPENAI_API_KEY": OPENAI_KEY,
            "gateway query token": GATEWAY_TOKEN,
        }
    )
    post = slack_events._post

    async def recording_post(*args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        response = await post(*args, **kwargs)
        audit.responses.append(response.text)
        return response

    monkeypatch.setattr(slack_events, "_post", recording_post)
    caplog.set_level(logging.DEBUG)
    yield audit

    places: list[tuple[str, str]] = []
    for phase in ("setup", "call", "teardown"):
        places += [(f"log {phase} {record.name}", record_text(record)) for record in caplog.get_records(phase)]
    places += [("bot's answer to a Slack request", text) for text in audit.responses]
    slack = request.node.funcargs.get("slack_double") or request.node.funcargs.get("slack_server")
    if slack is not None:
        places += [(f"Slack {call.method}", _dump(call.params)) for call in slack.calls]
        places += [(f"Slack response_url {post.url}", _dump(post.body)) for post in slack.response_url_posts]
    openai = request.node.funcargs.get("openai_double") or request.node.funcargs.get("openai_server")
    if openai is not None:
        places += [(f"OpenAI {item.method} {item.path} body", _dump(item.body)) for item in openai.requests]
    leaks = find_leaks(audit.secrets, places)
    if leaks:
        pytest.fail("secrets leaked:\n" + "\n".join(leaks[:20]), pytrace=False)

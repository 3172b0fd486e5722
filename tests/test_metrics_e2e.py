"""End to end: /metrics counts what the bot did, on every backend, and /readyz says whether it can work."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.db_proxy import DatabaseProxy
from support.feedback import rate
from support.model_view import MESSAGE_REQUESTS, reported_usage
from support.slack_view import bot_texts
from support.waiting import eventually
from support.workspace import ADA, BOB, BOT, CHANNEL, DM

from bot.store.db import create_engine

TEAM = "T0TEAM"
# The route family of the request that adds a person's message, on each backend.
MESSAGE_ROUTES = {"responses": "conversations", "assistants": "threads", "chat": "chat"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(bot: Any) -> Samples:
    """The bot's /metrics page, parsed as Prometheus parses it: (sample name, labels) -> value."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(f"{bot.url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_count_turns_timings_tokens_flags_and_api_errors(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.moderation_flags = {"hurt someone": ["violence"]}
    slack_double.add_channel(CHANNEL, name="general", members=[BOT, ADA, BOB])  # feedback notes reach them
    bot = await start_bot()

    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> hello there")
    openai_double.fail_next(
        "POST", MESSAGE_REQUESTS[backend], status=429, code="insufficient_quota", message="You exceeded your quota"
    )
    await bot.say(CHANNEL, ADA, "and now?", thread_ts=ts)
    await bot.say(CHANNEL, BOB, "how do I hurt someone?", thread_ts=ts)
    await bot.say(DM, ADA, "hi in private")
    first_answer = slack_double.bot_messages(CHANNEL, thread_ts=ts)[0]
    await rate(bot, slack_double, first_answer, user=ADA, value="good")
    await rate(bot, slack_double, first_answer, user=BOB, value="bad")
    texts = bot_texts(slack_double, CHANNEL, ts)
    assert texts[0] == "Echo: Ada: hello there" and "out of quota" in texts[1] and len(texts) == 2

    samples = await scrape(bot)

    assert value(samples, "slack_assistant_activity_up") == 1
    # The flagged message was withheld: its turn is answered (with the person's notice), not failed.
    assert value(samples, "slack_assistant_turns", status="answered", surface="channel") == 2
    assert value(samples, "slack_assistant_turns", status="failed", surface="channel") == 1
    assert value(samples, "slack_assistant_turns", status="answered", surface="dm") == 1
    assert value(samples, "slack_assistant_turns_waiting") == 0
    # Only the two echoed answers showed text.
    for surface in ("channel", "dm"):
        assert value(samples, "slack_assistant_first_text_seconds_count", surface=surface) == 1
        assert value(samples, "slack_assistant_answer_seconds_count", surface=surface) == 1
        assert (value(samples, "slack_assistant_answer_seconds_sum", surface=surface) or 0) > 0
    usage = reported_usage(openai_double, backend)
    assert len(usage) == 2
    assert value(samples, "slack_assistant_tokens", team=TEAM, kind="prompt") == sum(prompt for prompt, _ in usage)
    assert value(samples, "slack_assistant_tokens", team=TEAM, kind="completion") == sum(done for _, done in usage)
    assert value(samples, "slack_assistant_moderation_flags", category="violence", direction="input") == 1
    assert value(samples, "slack_assistant_feedback", value="good") == 1
    assert value(samples, "slack_assistant_feedback", value="bad") == 1
    route = MESSAGE_ROUTES[backend]
    assert value(samples, "slack_assistant_api_errors_total", route=route, status="429") == 1
    assert value(samples, "slack_assistant_api_request_seconds_count", route=route, status="429") == 1
    # Every moderation request since the start, the start-up check's probe included.
    moderations = len(openai_double.requests_to("POST", r"^/v1/moderations$")) + 1
    assert value(samples, "slack_assistant_api_request_seconds_count", route="moderations", status="200") == moderations
    assert value(samples, "slack_assistant_lease_takeovers_total") == 0
    assert value(samples, "slack_assistant_backend_info", backend=backend) == 1


@pytest.mark.backends("responses", reason="taking over a batch is the service's, the same on every backend")
async def test_metrics_count_a_batch_taken_over_from_an_earlier_attempt(start_bot, slack_double, openai_double) -> None:
    # Slack refuses the answer's final update once (an error of its own): the turn stays open, and the next
    # sweep's worker takes the batch over from that unfinished attempt.
    bot = await start_bot(sweep_seconds=0.2)
    slack_double.fail_next("chat.update", status=500, times=1)
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> hello there")

    async def answered() -> bool:
        await bot.settle()
        return bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: hello there"]

    await eventually(answered, what="the answer completed by a later attempt")
    samples = await scrape(bot)
    assert (value(samples, "slack_assistant_lease_takeovers_total") or 0) >= 1


# Readiness ----------------------------------------------------------------------------------------


async def readiness(bot: Any) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(f"{bot.url}/readyz")
    return response.status_code, response.json()


@pytest.mark.backends("responses", reason="readiness is the database's, the same on every backend")
async def test_readyz_is_503_while_the_database_is_behind_its_migrations(start_bot, tmp_path) -> None:
    bot = await start_bot()
    assert await readiness(bot) == (200, {"status": "ok"})
    assert (await httpx.AsyncClient().get(f"{bot.url}/healthz")).status_code == 200

    engine = create_engine(f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
        assert await readiness(bot) == (
            503,
            {"status": "unavailable", "problem": "the database's migrations are not current"},
        )
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.backends("responses", reason="readiness is the database's, the same on every backend")
async def test_readyz_is_503_while_the_database_is_unreachable(start_bot, database_url) -> None:
    proxy = await DatabaseProxy(database_url).start()
    try:
        bot = await start_bot(database_url=proxy.url)
        assert await readiness(bot) == (200, {"status": "ok"})
        await proxy.cut()
        assert await readiness(bot) == (503, {"status": "unavailable", "problem": "the database cannot be reached"})
        samples = await scrape(bot)
        assert value(samples, "slack_assistant_activity_up") == 0  # the in-process metrics are still served
        assert (
            value(samples, "slack_assistant_api_request_seconds_count", route="moderations", status="200") or 0
        ) >= 1
        await proxy.restore()
        assert await eventually(lambda: _is_ready(bot), what="ready again once the database is back")
    finally:
        await proxy.stop()


async def _is_ready(bot: Any) -> bool:
    status, _ = await readiness(bot)
    return status == 200

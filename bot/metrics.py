"""Prometheus metrics, served at GET /metrics: what the database counts, and what only this process can time.

Two kinds, for two reasons:

- Counts the database already holds (turns by status and surface, the turns waiting, tokens by team,
  moderation flags by category, feedback by value) are read from it when Prometheus scrapes (see
  bot.store.activity). Nothing is added to an answer's path, nothing is lost at a restart, and every
  replica reports the same figures for the whole deployment: a dashboard takes their ``max``.
- Durations (first text, complete answer, API requests), API errors and lease takeovers happen in one
  process and are observed there, through the neutral observer protocols of the conversation service
  (bot.conversations.observe) and the API client (bot.openai_api.client): neither imports this library.
  A dashboard sums these over replicas.

One registry per bot, made when it starts: nothing is registered on prometheus_client's global registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.errors import StoreError
from bot.store.activity import Activity, ActivityCounts

log = logging.getLogger(__name__)

PREFIX = "slack_assistant"
# An answer takes from under a second (a short reply) to minutes (tools, the code interpreter).
ANSWER_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
API_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# A scrape waits this long for the database's counts; past it they are left out of that scrape.
ACTIVITY_READ_SECONDS = 5.0
NO_ANSWER = "none"  # the status label of an API request that got no answer (connection failed, timed out)


class BotMetrics:
    """The bot's registry, and the observer both the conversation service and the API client report to."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, backend: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        Gauge(
            f"{PREFIX}_backend_info",
            "The model backend this process answers with.",
            ["backend"],
            registry=self.registry,
        ).labels(backend).set(1)
        self._first_text = Histogram(
            f"{PREFIX}_first_text_seconds",
            "From a worker starting on a batch of turns to the first text of its answer handed to Slack.",
            ["surface"],
            buckets=ANSWER_BUCKETS,
            registry=self.registry,
        )
        self._answer = Histogram(
            f"{PREFIX}_answer_seconds",
            "From a worker starting on a batch of turns to its complete answer handed to Slack.",
            ["surface"],
            buckets=ANSWER_BUCKETS,
            registry=self.registry,
        )
        self._api_request = Histogram(
            f"{PREFIX}_api_request_seconds",
            "Each attempt at a model API request, to its answer's headers, by route family and status.",
            ["route", "status"],
            buckets=API_BUCKETS,
            registry=self.registry,
        )
        self._api_errors = Counter(
            f"{PREFIX}_api_errors",
            "Model API request attempts that failed: an error status, or no answer (status none).",
            ["route", "status"],
            registry=self.registry,
        )
        self._takeovers = Counter(
            f"{PREFIX}_lease_takeovers",
            "Batches of turns a worker took up after an earlier attempt left them unfinished.",
            registry=self.registry,
        )
        self._activity = _ActivityCollector()
        self.registry.register(self._activity)

    def read_activity_from(self, activity: Activity) -> None:
        """Report the database's counts from now on (the store exists only once the database is migrated)."""
        self._activity.source = activity

    async def exposition(self) -> bytes:
        """The metrics in Prometheus's text format, with the database's counts read now."""
        await self._activity.refresh()
        return generate_latest(self.registry)

    # AnswerObserver ---------------------------------------------------------------------------

    def first_text(self, *, surface: str, seconds: float) -> None:
        self._first_text.labels(surface).observe(seconds)

    def completed(self, *, surface: str, seconds: float) -> None:
        self._answer.labels(surface).observe(seconds)

    def lease_taken_over(self) -> None:
        self._takeovers.inc()

    # RequestObserver --------------------------------------------------------------------------

    def request_finished(self, *, route: str, status: int | None, seconds: float) -> None:
        label = NO_ANSWER if status is None else str(status)
        self._api_request.labels(route, label).observe(seconds)
        if status is None or status >= 400:
            self._api_errors.labels(route, label).inc()


class _ActivityCollector(Collector):
    """The database's counts as gauges (they fall when retention purges old conversations)."""

    def __init__(self) -> None:
        self.source: Activity | None = None
        self._counts: ActivityCounts | None = None

    async def refresh(self) -> None:
        if self.source is None:
            return
        try:
            async with asyncio.timeout(ACTIVITY_READ_SECONDS):
                self._counts = await self.source.counts()
        except (StoreError, TimeoutError) as exc:
            log.warning("metrics: could not read the counts from the database: %s", exc or "timed out")
            self._counts = None

    def collect(self) -> Iterator[Metric]:
        counts = self._counts
        up = GaugeMetricFamily(
            f"{PREFIX}_activity_up", "1 when this scrape read the counts from the database, 0 when it could not."
        )
        up.add_metric([], 1.0 if counts is not None else 0.0)
        yield up
        if counts is None:
            return
        turns = GaugeMetricFamily(
            f"{PREFIX}_turns",
            "Turns (messages to the bot) in the database, by status (pending, running, answered, failed...) and surface.",
            labels=["status", "surface"],
        )
        for (status, surface), count in sorted(counts.turns.items()):
            turns.add_metric([status, surface], count)
        yield turns
        waiting = GaugeMetricFamily(f"{PREFIX}_turns_waiting", "Turns recorded and not yet taken up by a worker.")
        waiting.add_metric([], counts.waiting)
        yield waiting
        tokens = GaugeMetricFamily(
            f"{PREFIX}_tokens",
            "Tokens the answers used, by Slack team and kind (prompt, completion).",
            labels=["team", "kind"],
        )
        for (team, kind), count in sorted(counts.tokens.items()):
            tokens.add_metric([team, kind], count)
        yield tokens
        flags = GaugeMetricFamily(
            f"{PREFIX}_moderation_flags",
            "Moderation flags kept in moderation_events, by category and direction (input, output).",
            labels=["category", "direction"],
        )
        for (category, direction), count in sorted(counts.flags.items()):
            flags.add_metric([category, direction], count)
        yield flags
        feedback = GaugeMetricFamily(f"{PREFIX}_feedback", "People's ratings of answers, by value.", labels=["value"])
        for value, count in sorted(counts.feedback.items()):
            feedback.add_metric([value], count)
        yield feedback

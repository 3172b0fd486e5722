"""Benchmark: whole turns (signed event -> recorded -> API run -> answer in Slack) against the doubles."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from doubles.openai import OpenAIDouble
from doubles.slack import SlackDouble
from doubles.slack_events import deliver

from bot.app import start_bot
from bot.settings import Settings

SECRET = "bench-signing-secret"
CONCURRENCY = tuple(int(arg) for arg in sys.argv[1:]) or (1, 10, 40)
# BENCH_BACKEND picks the backend; the double is shaped like the server that backend is meant for.
BACKEND = os.environ.get("BENCH_BACKEND", "responses")
SHAPES = {"responses": "openai", "assistants": "full", "chat": "chat_only"}


async def run(
    conversations: int, openai: OpenAIDouble, slack: SlackDouble, database: str
) -> tuple[list[float], list[float], float]:
    slack.reset()
    openai.reset()
    openai.shape = SHAPES[BACKEND]
    slack.add_user("U0ADA", name="ada", display_name="Ada")
    slack.add_channel("C0BENCH", name="bench")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SECRET,
        slack_api_url=slack.api_url,
        openai_api_key="sk-bench",
        openai_base_url=openai.base_url,
        openai_backend=BACKEND,
        database_url=database,
        host="127.0.0.1",
        port=0,
        stream_update_seconds=0.2,
        user_rate_limit=100_000,
    )
    bot = await start_bot(settings)
    url = f"http://127.0.0.1:{bot.port}"
    latencies: list[float] = []
    acks: list[float] = []

    async def one(index: int) -> None:
        post = slack.human_posts("C0BENCH", "U0ADA", f"<@U0BOT> question {index}")
        started = time.perf_counter()
        for envelope in post.envelopes:
            # Slack gives up after 3 s and retries; the bench waits longer to measure how late acks are.
            await deliver(url, envelope, SECRET, timeout=60)
        acks.append(time.perf_counter() - started)
        while not any(
            m.get("bot_id") and m["text"].startswith("Echo") for m in slack.messages("C0BENCH", thread_ts=post.ts)
        ):
            await asyncio.sleep(0.005)
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(conversations)))
    elapsed = time.perf_counter() - started
    await bot.stop()
    return latencies, acks, elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction) - 1)]


async def main() -> None:
    openai = OpenAIDouble(api_key="sk-bench").start()
    slack = SlackDouble().start()
    print(f"backend: {BACKEND}")
    print(f"{'concurrent':>10} {'ack p95 ms':>10} {'answer median ms':>16} {'answer p95 ms':>13} {'turns/s':>8}")
    try:
        for conversations in CONCURRENCY:
            with tempfile.TemporaryDirectory() as folder:
                database = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{folder}/bench.sqlite3"
                latencies, acks, elapsed = await run(conversations, openai, slack, database)
            print(
                f"{conversations:>10} {percentile(acks, 0.95) * 1000:>10.1f} {statistics.median(latencies) * 1000:>16.1f} "
                f"{percentile(latencies, 0.95) * 1000:>13.1f} {conversations / elapsed:>8.1f}"
            )
    finally:
        openai.stop()
        slack.stop()


if __name__ == "__main__":
    asyncio.run(main())

"""The benchmark: a burst of K @mentions against the real `python -m bot run`, the doubles in processes of their own.

    .venv/bin/python bench/burst.py --k 10 --k 200 --backend responses
    .venv/bin/python bench/burst.py --k 400 --replicas 2 --database-url postgresql+asyncpg://127.0.0.1/test

Each run starts fresh doubles, a fresh database and fresh bot processes, then delivers K mentions at once
(each a new thread, over 10 channels) as signed HTTP events, round-robin over the replicas, and waits
until every thread shows its whole answer. It prints one table row per run, and exits 1 when an answer
is missing or shown twice.

Measured: the ack (Slack's HTTP round trip for each event); the overhead to first visible text (from
sending the event to the answer's first words in Slack, less the model's time to first token); the time
to the complete answer; OpenAI requests (besides moderation) and Slack calls per answer; the bot process
tree's CPU per answer (user + system, from just before the burst to the last answer); its peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from doubles.slack_events import sign

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-secret"
CHANNELS = [f"C0BENCH{index}" for index in range(10)]
USERS = [f"U0PERSON{index}" for index in range(10)]
SHAPES = {"responses": "openai", "assistants": "full", "chat": "chat_only"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    k: int
    backend: str
    replicas: int
    database_url: str | None
    first_token: float
    tokens: int
    tokens_per_second: float
    wait_seconds: float
    profile: Path | None = None
    logs: Path | None = None  # where the bots' logs are kept; by default they go with the run's temporary folder
    bot_root: Path = ROOT  # a checkout of another version, to measure before and after


@dataclass
class Result:
    acks: list[float]
    first_text: list[float]
    complete: list[float]
    openai_per_answer: float
    moderation_per_answer: float
    slack_per_answer: float
    slack_methods_per_answer: dict[str, float]
    cpu_ms_per_answer: float
    peak_rss_mb: float
    completed: int
    missing: int
    duplicated: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_double(*args: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "doubles.py"), *args], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"the {args[0]} double did not start")
    return process, json.loads(line)


def process_tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            found += process_tree(int(child))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for member in process_tree(pid):
            try:
                fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def fresh_database(run: Run, folder: Path) -> tuple[str, str | None]:
    """A database URL with nothing in it, and the PostgreSQL database to drop afterwards."""
    if run.database_url is None:
        return f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}", None
    url = make_url(run.database_url)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, database=url.database)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return url.set(database=name).render_as_string(hide_password=False), name


async def drop_database(run: Run, name: str) -> None:
    assert run.database_url is not None
    url = make_url(run.database_url)
    connection = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, database=url.database)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the bot during the burst, writing collapsed stacks (one line per stack, with its count)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "200",
        # Read without pausing the bot: paused 200 times a second, it misses its heartbeats and stops its answers.
        "--nonblocking",
        "-o",
        str(output),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_bot(environment: dict[str, str], log: Path, *, bot_root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            env={**os.environ, **environment, "PORT": str(port)},
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=bot_root,
        )
    return process, f"http://127.0.0.1:{port}"


async def wait_healthy(client: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the bot exited before it was ready:\n{log.read_text(errors='replace')}")
        try:
            if (await client.get(f"{url}/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"the bot was not ready within 60 s:\n{log.read_text(errors='replace')}")


async def deliver(client: httpx.AsyncClient, url: str, envelope: dict[str, Any]) -> float:
    body = json.dumps(envelope).encode()
    started = time.perf_counter()
    # Slack gives up after 3 s and retries; the benchmark waits longer, to measure how late an ack is.
    response = await client.post(f"{url}/slack/events", content=body, headers=sign(body, SECRET), timeout=60)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"the bot answered an event {response.status_code}: {response.text[:200]}")
    return elapsed


async def measure(run: Run) -> Result:
    started_processes: list[subprocess.Popen[bytes]] = []
    profilers: list[subprocess.Popen[bytes]] = []
    dropped: str | None = None
    with tempfile.TemporaryDirectory(prefix="bench-") as folder_name:
        folder = Path(folder_name)
        try:
            slack_process, slack = start_double("slack")
            started_processes.append(slack_process)
            openai_process, openai = start_double(
                "openai",
                "--shape",
                SHAPES[run.backend],
                "--first-token",
                str(run.first_token),
                "--tokens",
                str(run.tokens),
                "--tokens-per-second",
                str(run.tokens_per_second),
            )
            started_processes.append(openai_process)
            database_url, dropped = await fresh_database(run, folder)
            limits = httpx.Limits(max_connections=max(run.k, 10), max_keepalive_connections=max(run.k, 10))
            async with httpx.AsyncClient(limits=limits, timeout=60) as client:
                await client.post(f"{slack['control']}/setup", json={"users": USERS, "channels": CHANNELS})
                environment = {
                    "SLACK_BOT_TOKEN": "xoxb-test-token",
                    "SLACK_SIGNING_SECRET": SECRET,
                    "SLACK_API_URL": slack["url"],
                    "OPENAI_API_KEY": "sk-bench",
                    "OPENAI_BASE_URL": openai["url"],
                    "OPENAI_BACKEND": run.backend,
                    "DATABASE_URL": database_url,
                    "HOST": "127.0.0.1",
                    "USER_RATE_LIMIT": "100000",
                    "LOG_LEVEL": "WARNING",
                }
                bots = []
                for index in range(run.replicas):
                    log = (run.logs or folder) / f"{run.backend}-k{run.k}-bot-{index}.log"
                    log.parent.mkdir(parents=True, exist_ok=True)
                    process, url = start_bot(environment, log, bot_root=run.bot_root)
                    started_processes.append(process)
                    bots.append((process, url, log))
                    # One at a time: the first migrates the fresh database.
                    await wait_healthy(client, url, process, log)
                posts = (
                    await client.post(
                        f"{slack['control']}/posts",
                        json=[
                            {
                                "channel": CHANNELS[index % len(CHANNELS)],
                                "user": USERS[index % len(USERS)],
                                "text": f"<@U0BOT> question {index}",
                            }
                            for index in range(run.k)
                        ],
                    )
                ).json()
                before_slack = (await client.get(f"{slack['control']}/shown")).json()
                before_openai = (await client.get(f"{openai['control']}/requests")).json()
                pids = [process.pid for process, _, _ in bots]
                if run.profile is not None:
                    profilers += [profiler(pid, run.profile / f"{run.backend}-k{run.k}-{pid}.txt") for pid in pids]
                cpu_before = cpu_seconds(pids)
                sent_at: dict[str, float] = {}

                async def one(index: int, post: dict[str, Any]) -> list[float]:
                    url = bots[index % len(bots)][1]
                    sent_at[post["ts"]] = time.time()
                    return [await deliver(client, url, envelope) for envelope in post["envelopes"]]

                ack_lists = await asyncio.gather(*(one(index, post) for index, post in enumerate(posts)))
                deadline = time.monotonic() + run.wait_seconds
                while True:
                    shown = (await client.get(f"{slack['control']}/shown")).json()
                    threads = shown["threads"]
                    done = sum(1 for post in posts if "complete" in threads.get(post["ts"], {}))
                    if done == len(posts) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.25)
                cpu = cpu_seconds(pids) - cpu_before
                await asyncio.sleep(1.0)  # a duplicate would come late: give it a moment to show
                shown = (await client.get(f"{slack['control']}/shown")).json()
                after_openai = (await client.get(f"{openai['control']}/requests")).json()
                rss = max(peak_rss_mb(pid) for pid in pids)
        finally:
            for profiling in profilers:
                profiling.send_signal(signal.SIGINT)  # py-spy writes what it sampled on SIGINT
                profiling.wait(30)
            for process in reversed(started_processes):
                process.kill()
                process.wait(10)
            if dropped is not None:
                await drop_database(run, dropped)
    threads = shown["threads"]
    first_text = [
        threads[post["ts"]]["first"] - sent_at[post["ts"]] - run.first_token
        for post in posts
        if "first" in threads.get(post["ts"], {})
    ]
    complete = [
        threads[post["ts"]]["complete"] - sent_at[post["ts"]]
        for post in posts
        if "complete" in threads.get(post["ts"], {})
    ]
    completed = len(complete)
    answers = max(completed, 1)
    requests = after_openai["total"] - before_openai["total"]
    moderation = after_openai["moderation"] - before_openai["moderation"]
    return Result(
        acks=[ack for acks in ack_lists for ack in acks],
        first_text=first_text,
        complete=complete,
        openai_per_answer=(requests - moderation) / answers,
        moderation_per_answer=moderation / answers,
        slack_per_answer=(shown["calls"] - before_slack["calls"]) / answers,
        slack_methods_per_answer={
            method: (count - before_slack["methods"].get(method, 0)) / answers
            for method, count in sorted(shown["methods"].items())
            if count > before_slack["methods"].get(method, 0)
        },
        cpu_ms_per_answer=cpu * 1000 / answers,
        peak_rss_mb=rss,
        completed=completed,
        missing=run.k - completed,
        duplicated=sum(1 for post in posts if threads.get(post["ts"], {}).get("answers", 0) > 1),
    )


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * fraction) - 1))]


def milliseconds(values: list[float]) -> str:
    return " / ".join(f"{percentile(values, p) * 1000:.0f}" for p in (0.5, 0.95, 0.99))


HEADER = (
    "| backend | db | replicas | K | ack ms p50/p95/p99 | first text overhead ms p50/p95/p99 | complete s p50 "
    "| OpenAI req/answer (+moderation) | Slack calls/answer | CPU ms/answer | peak RSS MB | complete / missing / dup |"
)


def row(run: Run, result: Result) -> str:
    database = "sqlite" if run.database_url is None else "postgresql"
    complete = statistics.median(result.complete) if result.complete else float("nan")
    return (
        f"| {run.backend} | {database} | {run.replicas} | {run.k} | {milliseconds(result.acks)} "
        f"| {milliseconds(result.first_text)} | {complete:.2f} "
        f"| {result.openai_per_answer:.1f} (+{result.moderation_per_answer:.1f}) | {result.slack_per_answer:.1f} "
        f"| {result.cpu_ms_per_answer:.1f} | {result.peak_rss_mb:.0f} "
        f"| {result.completed} / {result.missing} / {result.duplicated} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, action="append", help="mentions at once (repeat for several runs)")
    parser.add_argument("--backend", action="append", choices=sorted(SHAPES), help="repeat for several")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--database-url", help="a PostgreSQL server's database to create a fresh one beside")
    parser.add_argument("--first-token", type=float, default=0.3, help="the model's time to first token, s")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per answer")
    parser.add_argument("--tokens-per-second", type=float, default=50.0)
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the answers")
    parser.add_argument("--profile", type=Path, help="a folder for py-spy's samples of each bot process")
    parser.add_argument("--logs", type=Path, help="a folder to keep each bot process's log in")
    parser.add_argument("--bot-root", type=Path, default=ROOT, help="the checkout whose bot runs (default: this one)")
    args = parser.parse_args()
    if args.replicas > 1 and not args.database_url:
        parser.error("several replicas need a shared database: give --database-url (PostgreSQL)")
    failed = False
    breakdowns = []
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for backend in args.backend or ["responses"]:
        for k in args.k or [10]:
            run = Run(
                k=k,
                backend=backend,
                replicas=args.replicas,
                database_url=args.database_url,
                first_token=args.first_token,
                tokens=args.tokens,
                tokens_per_second=args.tokens_per_second,
                wait_seconds=args.wait,
                profile=args.profile,
                logs=args.logs,
                bot_root=args.bot_root,
            )
            result = asyncio.run(measure(run))
            print(row(run, result), flush=True)
            methods = ", ".join(f"{method} {count:.1f}" for method, count in result.slack_methods_per_answer.items())
            breakdowns.append(f"- {backend}, K={k}: {methods}")
            failed = failed or result.missing > 0 or result.duplicated > 0
    print("\nSlack calls per answer, by method:")
    print("\n".join(breakdowns))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

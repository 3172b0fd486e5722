"""Real bot processes for tests: `python -m bot run` against the doubles, started, killed and stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from doubles.slack_events import deliver, shared_tls
from support.waiting import WAIT_SECONDS, eventually


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class BotProcess:
    """One `python -m bot run` in HTTP mode; its log goes to a file for the test's failure report."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    signing_secret: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = WAIT_SECONDS) -> None:
        async def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"bot exited with {self.process.returncode} before it was ready:\n{self.log()}")
            try:
                async with httpx.AsyncClient(timeout=1.0, verify=shared_tls()) as client:
                    return (await client.get(f"{self.url}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(healthy, timeout=timeout, what="bot /healthz answering 200")

    async def deliver(self, envelope: dict[str, Any], **options: Any) -> httpx.Response:
        return await deliver(self.url, envelope, self.signing_secret, **options)

    def kill(self) -> None:
        """kill -9: no shutdown code runs, exactly as when a machine or container dies."""
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def exited(self, timeout: float = WAIT_SECONDS) -> int:
        """The exit code, once the process has ended by itself."""
        await eventually(lambda: self.process.poll() is not None, timeout=timeout, what="bot process exit")
        return self.process.returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def start_bot_process(settings: dict[str, str], *, log_path: Path) -> BotProcess:
    """Start the bot with these settings (environment variables) on a free port of 127.0.0.1."""
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))
    }
    environment |= {"HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "INFO", **settings}
    log_file = log_path.open("ab")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=log_path.parent,  # no .env of the developer's is read: the working directory is the test's
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    finally:
        log_file.close()
    return BotProcess(process, port, log_path, settings["SLACK_SIGNING_SECRET"])

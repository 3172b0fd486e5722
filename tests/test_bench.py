"""The benchmark runs end to end: the real bot process against the doubles in processes of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_burst_is_answered_once_each_and_reported() -> None:
    finished = subprocess.run(
        [sys.executable, "bench/burst.py", "--k", "3", "--first-token", "0", "--tokens", "5", "--wait", "120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = [line for line in finished.stdout.splitlines() if line.startswith("| responses |")]
    assert len(rows) == 1, finished.stdout
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[:4] == ["responses", "sqlite", "1", "3"]
    assert cells[-1] == "3 / 0 / 0"  # complete / missing / duplicated
    assert float(cells[9]) > 0  # CPU ms per answer: the bot's process tree was measured

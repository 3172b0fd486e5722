"""Benchmark: converting and splitting assistant answers of growing size, as streaming does."""

from __future__ import annotations

import statistics
import time

from bot.slack.render import render_reply

PARAGRAPH = (
    "Here is **what changed** in the release, with a [link](https://example.com/notes) and `inline code`. "
    "It keeps going for a while so that the paragraph is realistic.\n\n"
)
CODE = "```python\n" + "\n".join(f"value_{i} = compute({i}) * 2  # step {i}" for i in range(40)) + "\n```\n\n"


def answer(size: int) -> str:
    text = ""
    while len(text) < size:
        text += PARAGRAPH + (CODE if len(text) % 3 == 0 else "")
    return text[:size]


def measure(text: str, repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        render_reply(text, limit=3900)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    print(f"{'answer chars':>12} {'messages':>8} {'median ms':>10} {'p95 ms':>8} {'stream of 50 updates ms':>24}")
    for size in (500, 2_000, 8_000, 32_000, 100_000):
        text = answer(size)
        timings = measure(text, repeats=20)
        streaming = sum(measure(text[: size * step // 50], repeats=1)[0] for step in range(1, 51))
        print(
            f"{size:>12} {len(render_reply(text, limit=3900)):>8} {statistics.median(timings) * 1000:>10.2f} "
            f"{sorted(timings)[int(len(timings) * 0.95) - 1] * 1000:>8.2f} {streaming * 1000:>24.1f}"
        )


if __name__ == "__main__":
    main()

"""The test doubles of Slack and OpenAI, each in a process of its own, driven over a small control API.

    python bench/doubles.py slack
    python bench/doubles.py openai --shape openai --first-token 0.3 --tokens 60 --tokens-per-second 50

Each prints one JSON line ({"url": ..., "control": ...}) once it serves, then runs until killed. The
benchmark (bench/burst.py) starts them, so that the bot process shares its CPU with neither.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from doubles.openai import OpenAIDouble, ScriptedAnswer
from doubles.slack import SlackDouble
from doubles.slack.methods import Params

# The Web API methods that put an answer's text in front of people.
TEXT_METHODS = frozenset(
    {"chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream"}
)
# Ends every benchmark answer: a thread shows the whole answer once a message of the bot's ends with it.
ANSWER_END = "(end)"


def answer_text(tokens: int) -> str:
    """An answer of about `tokens` tokens (one word each), ending with ANSWER_END."""
    return " ".join(f"word{index}" for index in range(tokens - 1)) + " " + ANSWER_END


class TimedSlack(SlackDouble):
    """The Slack double, noting per thread when the answer's text first showed and when all of it had."""

    def __init__(self) -> None:
        self.shown: dict[str, dict[str, float]] = {}
        self._threads: dict[str, str] = {}  # message ts -> the thread it answers in
        super().__init__()

    def _dispatch(self, name: str, params: Params, token: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        status, body, headers = super()._dispatch(name, params, token)
        if name in TEXT_METHODS and body.get("ok"):
            self._note(name, params, body)
        return status, body, headers

    def _note(self, name: str, params: Params, body: dict[str, Any]) -> None:
        now = time.time()
        channel = params.text("channel") or body.get("channel") or ""
        ts = body.get("ts") or params.text("ts") or ""
        thread = params.text("thread_ts") or self._threads.get(ts)
        if not thread:
            return
        self._threads[ts] = thread
        seen = self.shown.setdefault(thread, {})
        texts = [m.get("text", "") for m in self.messages(channel, thread_ts=thread) if m.get("bot_id")]
        answers = [text for text in texts if text.startswith("word0")]
        if answers and "first" not in seen:
            seen["first"] = now
        if any(text.rstrip().endswith(ANSWER_END) for text in answers) and "complete" not in seen:
            seen["complete"] = now
        seen["answers"] = sum(1 for text in texts if text.rstrip().endswith(ANSWER_END))


def serve_control(routes: web.RouteTableDef) -> int:
    """Serve the control API from a thread of its own; returns its port."""
    ready: list[int] = []
    started = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        ready.append(runner.addresses[0][1])
        started.set()
        loop.run_forever()

    threading.Thread(target=run, name="control", daemon=True).start()
    started.wait(30)
    return ready[0]


def slack_routes(slack: TimedSlack) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/setup")
    async def setup(request: web.Request) -> web.Response:
        body = await request.json()
        for user in body["users"]:
            slack.add_user(user, name=user.lower(), display_name=user)
        for channel in body["channels"]:
            slack.add_channel(channel, name=channel.lower(), members=[*body["users"], "U0BOT"])
        return web.json_response({})

    @routes.post("/posts")
    async def posts(request: web.Request) -> web.Response:
        """People post these mentions (none delivered yet): their envelopes, to deliver as Slack would."""
        made = [
            {"ts": post.ts, "envelopes": post.envelopes}
            for item in await request.json()
            for post in [slack.human_posts(item["channel"], item["user"], item["text"])]
        ]
        return web.json_response(made)

    @routes.get("/shown")
    async def shown(_request: web.Request) -> web.Response:
        calls = slack.calls
        methods = Counter(call.method for call in calls)
        return web.json_response({"threads": slack.shown, "calls": len(calls), "methods": methods})

    return routes


def openai_routes(openai: OpenAIDouble) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/requests")
    async def requests(_request: web.Request) -> web.Response:
        recorded = openai.requests
        return web.json_response(
            {
                "total": len(recorded),
                "moderation": sum(1 for r in recorded if r.path.endswith("/moderations")),
                "model_calls": openai.model_calls,
            }
        )

    return routes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("double", choices=("slack", "openai"))
    parser.add_argument("--shape", default="openai")
    parser.add_argument("--first-token", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per answer")
    parser.add_argument("--tokens-per-second", type=float, default=50.0)
    args = parser.parse_args()
    if args.double == "slack":
        slack = TimedSlack().start()
        control = serve_control(slack_routes(slack))
        url = slack.api_url
    else:
        openai = OpenAIDouble("sk-bench", shape=args.shape).start()
        openai.core.default_answer = ScriptedAnswer(
            text=answer_text(args.tokens),
            chunks=args.tokens,
            chunk_delay=1 / args.tokens_per_second,
            first_token_delay=args.first_token,
        )
        control = serve_control(openai_routes(openai))
        url = openai.base_url
    print(json.dumps({"url": url, "control": f"http://127.0.0.1:{control}"}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

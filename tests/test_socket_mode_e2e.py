"""Socket Mode: with SLACK_APP_TOKEN the bot takes events over Slack's WebSocket, no HTTP endpoint."""

from __future__ import annotations

import asyncio

import httpx
from support.slack_view import bot_texts
from support.workspace import ADA, BOT, CHANNEL


async def test_socket_mode_answers_a_mention_and_serves_only_health(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(slack_app_token=slack_double.app_token, slack_signing_secret=None)
    post = slack_double.human_posts(CHANNEL, ADA, f"<@{BOT}> over the socket")
    for envelope in post.envelopes:
        ack = await asyncio.to_thread(slack_double.socket_deliver, envelope)
        assert ack["envelope_id"]
    await bot.settle()
    assert bot_texts(slack_double, CHANNEL, post.ts) == ["Echo: Ada: over the socket"]
    assert openai_double.user_texts_seen() == ["Ada: over the socket"]
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{bot.url}/healthz")).status_code == 200
        assert (await client.post(f"{bot.url}/slack/events", json={})).status_code == 404

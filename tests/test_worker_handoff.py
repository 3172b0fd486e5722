"""The hand-off between a worker that is finishing and a message that arrives just then (issue 10, #3).

A narrow test: it wraps our own Store.open_turns to put a second message exactly inside the worker's
last check, the window that no real timing hits reliably.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.slack_view import bot_texts, post
from support.waiting import eventually
from support.workspace import ADA, BOT, CHANNEL

# No sweep within the test: only the worker itself can answer the second message.
NO_SWEEP_SECONDS = 3600.0


@pytest.mark.backends("responses", reason="the hand-off between workers is the same on every backend")
async def test_a_message_recorded_during_the_workers_last_check_is_answered(
    start_bot, slack_double, monkeypatch
) -> None:
    bot = await start_bot(sweep_seconds=NO_SWEEP_SECONDS)
    store = bot.bot.store
    real_open_turns = store.open_turns
    first = slack_double.human_posts(CHANNEL, ADA, f"<@{BOT}> first question")
    checks_finding_nothing = 0
    delivered_during_last_check = []

    async def open_turns(conversation_id: int) -> list[Any]:
        nonlocal checks_finding_nothing
        records = await real_open_turns(conversation_id)
        if records or delivered_during_last_check:
            return records
        checks_finding_nothing += 1
        # After the answer the worker looks again under a new claim (finding nothing), releases the lease,
        # and then makes its last check: the second empty look. The follow-up is recorded while that check
        # is still in flight, so what it returns is already stale.
        if checks_finding_nothing == 2:
            delivered_during_last_check.append(await post(bot, slack_double, "and a follow-up", thread_ts=first.ts))
        return records

    monkeypatch.setattr(store, "open_turns", open_turns)
    for envelope in first.envelopes:
        response = await bot.deliver(envelope)
        assert response.status_code == 200, response.text

    await eventually(lambda: delivered_during_last_check, what="the follow-up delivered during the last check")
    await eventually(
        lambda: (
            bot_texts(slack_double, CHANNEL, first.ts) == ["Echo: Ada: first question", "Echo: Ada: and a follow-up"]
        ),
        what="both messages answered, the follow-up without any sweep",
    )

"""The hand-off between a worker that is finishing and a message that arrives just then (issue 10, #3).

A narrow test: it wraps our own Store.finish_batch to put a second message exactly inside the worker's
last check (the batch's end, which releases the lease and looks for waiting turns), the window that no
real timing hits reliably.
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
    real_finish_batch = store.finish_batch
    first = slack_double.human_posts(CHANNEL, ADA, f"<@{BOT}> first question")
    delivered_during_last_check = []

    async def finish_batch(conversation_id: int, **outcome: Any) -> bool:
        waiting = await real_finish_batch(conversation_id, **outcome)
        if not delivered_during_last_check:
            # The follow-up is recorded while the check is still in flight, so what it returns is already stale.
            assert waiting is False
            delivered_during_last_check.append(await post(bot, slack_double, "and a follow-up", thread_ts=first.ts))
        return waiting

    monkeypatch.setattr(store, "finish_batch", finish_batch)
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

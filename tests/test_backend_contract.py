"""The answer contract, run unchanged against every backend through the interface directly.

Each test asserts the events a backend gives and what the model saw (the OpenAI double's neutral
view), never a backend's own requests; where an expectation differs it follows the backend's
capabilities, not its name. Only the lost-answer table (tests/support/contract.py) names requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from conftest import BACKEND_SHAPES
from doubles.openai import ScriptedAnswer
from support.contract import LOST_ANSWERS, Harness, final, last_state, said, texts_of
from support.waiting import eventually

from bot.app import BACKENDS
from bot.conversations.backend import (
    BackendEvent,
    Checkpoint,
    Completed,
    Failed,
    StateChanged,
    TextDelta,
    ToolActivity,
    ToolStatus,
    Usage,
)
from bot.conversations.service import api_failure_reason
from bot.conversations.turn import HistoryMessage
from bot.errors import APIError

LOST_ANSWER_CASES = [
    pytest.param(name, lost, id=f"{name}-{lost}") for name, requests in LOST_ANSWERS.items() for lost in requests
]


def ends_of(events: list[BackendEvent]) -> list[BackendEvent]:
    return [event for event in events if isinstance(event, (Completed, Failed))]


def each_input_once(openai_double: Any, *texts: str) -> None:
    """At every model call each of these user texts was there at most once, and at the last one all were."""
    for seen in openai_double.model_inputs():
        users = texts_of(seen, "user")
        assert all(users.count(text) <= 1 for text in texts), users
    assert [text for text in texts_of(openai_double.model_inputs()[-1], "user") if text in texts] == list(texts)


# A new conversation, a batch, tools -------------------------------------------------------------------


async def test_a_new_conversation_is_seeded_with_its_history(contract: Harness, openai_double: Any) -> None:
    contract.history = [
        HistoryMessage("user", "Ada: ship Friday?"),
        HistoryMessage("assistant", "Monday is safer."),
        HistoryMessage("user", "Bob: or Tuesday?"),
    ]
    events = await contract.answer(said("Ev1", "Ada: what now?"))

    assert final(events) == Completed("Echo: Ada: what now?")
    assert isinstance(events[0], StateChanged)  # stored before anything that depends on it
    assert "".join(event.text for event in events if isinstance(event, TextDelta)) == "Echo: Ada: what now?"
    [usage] = [event for event in events if isinstance(event, Usage)]
    assert usage.prompt_tokens > 0
    assert contract.history_calls == 1
    assert openai_double.model_inputs() == [
        [
            ("system", "Be brief."),
            ("user", "Ada: ship Friday?"),
            ("assistant", "Monday is safer."),
            ("user", "Bob: or Tuesday?"),
            ("user", "Ada: what now?"),
        ]
    ]


async def test_a_batch_of_two_gets_one_answer(contract: Harness, openai_double: Any) -> None:
    first = await contract.answer(said("Ev1", "Ada: hello"))
    events = await contract.answer(said("Ev2", "Ada: one"), said("Ev3", "Bob: two"), state=last_state(first))

    assert final(events) == Completed("Echo: Bob: two")
    assert openai_double.model_calls == 2  # one per batch
    seen = openai_double.model_inputs()[-1]
    assert texts_of(seen, "user") == ["Ada: hello", "Ada: one", "Bob: two"]
    assert texts_of(seen, "assistant") == ["Echo: Ada: hello"]
    assert contract.history_calls == 1  # only a new conversation reads the Slack thread


async def test_a_tool_loop_answers_after_the_tool_output(contract: Harness, openai_double: Any) -> None:
    openai_double.script(
        ScriptedAnswer(tool_calls=[("get_current_time", {"timezone": "UTC"})], text_after_tools="It is late.")
    )
    events = await contract.answer(said("Ev1", "Ada: what time is it?"))

    assert final(events) == Completed("It is late.")
    activity = [event for event in events if isinstance(event, ToolActivity)]
    assert [(event.tool, event.name, event.status) for event in activity] == [
        ("function", "get_current_time", ToolStatus.STARTED),
        ("function", "get_current_time", ToolStatus.COMPLETED),
    ]
    assert activity[0].call_id and activity[0].call_id == activity[1].call_id
    first_call, second_call = openai_double.model_inputs()
    assert texts_of(first_call, "tool") == []
    [output] = texts_of(second_call, "tool")
    assert '"timezone": "UTC"' in output
    assert texts_of(second_call, "user") == ["Ada: what time is it?"]


# Failures ---------------------------------------------------------------------------------------------


async def test_an_answer_cut_short_is_one_failure_in_plain_words(contract: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(status="incomplete"))
    events = await contract.answer(said("Ev1", "Ada: write an essay"))

    assert final(events) == Failed("The answer was cut short because it reached the token limit.")
    assert ends_of(events) == [events[-1]]


async def test_a_failed_answer_is_told_in_plain_words_and_nothing_is_answered(
    contract: Harness, openai_double: Any
) -> None:
    failed = ScriptedAnswer(status="failed", last_error={"code": "rate_limit_exceeded", "message": "slow down"})
    openai_double.script(failed, failed, failed)  # the model fails however often it is asked (retries too)
    events: list[BackendEvent] = []
    try:
        async for event in contract.backend.answer(await contract.request(said("Ev1", "Ada: hello"))):
            events.append(event)
    except APIError as exc:
        # Where the API reports the failure as an HTTP error (chat completions), the backend lets it
        # propagate and the service tells the person this (bot.conversations.service._answer).
        told = Failed(api_failure_reason(exc))
        assert ends_of(events) == []
    else:
        told = final(events)
    assert isinstance(told, Failed)
    assert "try again" in told.reason.lower() and "rate_limit_exceeded" not in told.reason
    assert "slow down" not in told.reason


# Stopping and resuming --------------------------------------------------------------------------------


async def test_cancel_leaves_no_answer_and_the_next_batch_is_answered(contract: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(stall=True))
    seen: list[tuple[BackendEvent, int]] = []  # each event, with how many model calls there were by then

    async def read() -> None:
        async for event in contract.backend.answer(await contract.request(said("Ev1", "Ada: hi"))):
            seen.append((event, openai_double.model_calls))

    def stalled() -> bool:
        """The model was asked; a resumable backend has also checkpointed the answer it started."""
        if openai_double.model_calls < 1:
            return False
        return not contract.backend.capabilities.resumable or any(
            isinstance(event, Checkpoint) and calls >= 1 for event, calls in seen
        )

    reader = asyncio.create_task(read())
    await eventually(lambda: stalled() or reader.done(), what="a stalled answer")
    assert not reader.done()
    events = [event for event, _ in seen]
    progress = [event.progress for event in events if isinstance(event, Checkpoint)]
    state, cancelled = last_state(events), progress[-1] if progress else None
    await contract.backend.cancel(state, cancelled)
    if contract.backend.capabilities.resumable:
        # What ran on the server was stopped, so the batch ends by itself, and not with an answer.
        await eventually(reader.done, what="the cancelled batch to end")
        reader.result()
        assert final([event for event, _ in seen]) == Failed("The run was cancelled before the assistant finished.")
    else:
        reader.cancel()  # nothing runs on the server but the stream, which ends once the service stops reading
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert not any(isinstance(event, Completed) for event, _ in seen)
    await contract.backend.cancel(state, cancelled)  # again, once it is over: not an error
    later = await contract.answer(said("Ev2", "Ada: never mind"), state=last_state(events))
    assert final(later) == Completed("Echo: Ada: never mind")
    after = openai_double.model_inputs()[-1]
    assert texts_of(after, "user") == ["Ada: hi", "Ada: never mind"]
    assert texts_of(after, "assistant") == []  # nothing of the cancelled answer was kept


@pytest.mark.parametrize("dies_at", ["first checkpoint or text", "first text"], ids=["checkpoint", "text"])
async def test_a_batch_resumed_after_a_crash_is_answered_once(
    contract: Harness, openai_double: Any, dies_at: str
) -> None:
    stop_at = (TextDelta,) if dies_at == "first text" else (Checkpoint, TextDelta)
    batch = (said("Ev1", "Ada: hi"), said("Ev2", "Ada: there"))
    crashed = await contract.answer_until(lambda event: isinstance(event, stop_at), *batch)
    assert isinstance(crashed[-1], stop_at) and ends_of(crashed) == []
    asked = openai_double.model_calls
    progress = [event.progress for event in crashed if isinstance(event, Checkpoint)]

    resumed = await contract.answer(
        *batch, state=last_state(crashed), progress=progress[-1] if progress else None, attempt=2
    )
    assert final(resumed) == Completed("Echo: Ada: there")
    each_input_once(openai_double, "Ada: hi", "Ada: there")
    if contract.backend.capabilities.resumable:
        # Followed by what it checkpointed, or found: never a second answer for the same messages.
        assert openai_double.model_calls == 1
    else:
        assert openai_double.model_calls == asked + 1
    assert texts_of(openai_double.model_inputs()[-1], "assistant") == []


# Lost answers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "lost"), LOST_ANSWER_CASES, indirect=["backend"])
async def test_a_request_whose_answer_was_lost_leaves_each_message_once(
    contract: Harness, openai_double: Any, backend: str, lost: str
) -> None:
    first = await contract.answer(said("Ev1", "Ada: hello"))
    method, path = LOST_ANSWERS[backend][lost]
    sent_before = len(openai_double.requests_to(method, path))
    openai_double.lose_response_next(method, path)
    events = await contract.answer(said("Ev2", "Ada: one"), said("Ev3", "Bob: two"), state=last_state(first))

    assert len(openai_double.requests_to(method, path)) > sent_before  # the answer was lost indeed
    assert final(events) == Completed("Echo: Bob: two")
    each_input_once(openai_double, "Ada: hello", "Ada: one", "Bob: two")
    if contract.backend.capabilities.resumable:
        assert openai_double.model_calls == 2  # one answer per batch: the lost one was found, not asked again

    # The next batch sees every message, and every answer, once.
    later = await contract.answer(said("Ev4", "Ada: and?"), state=last_state([*first, *events]))
    assert final(later) == Completed("Echo: Ada: and?")
    seen = openai_double.model_inputs()[-1]
    assert texts_of(seen, "user") == ["Ada: hello", "Ada: one", "Bob: two", "Ada: and?"]
    assert texts_of(seen, "assistant") == ["Echo: Ada: hello", "Echo: Bob: two"]


def test_every_backend_runs_the_contract_and_has_its_lost_answers() -> None:
    assert set(BACKENDS) == set(BACKEND_SHAPES) == set(LOST_ANSWERS)

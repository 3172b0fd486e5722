"""Reasoning models: the effort they are asked for (settings, a profile's own), the parameters they refuse, and
their reasoning summaries shown while they think, never in the answer."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import SIGNING_SECRET
from doubles.openai import ScriptedAnswer
from doubles.slack_events import deliver_form, view_submission_body
from support.commands import TEAM, last_ephemeral, run_command
from support.contract import backend_harness, final, said
from support.model_view import first_answer_requests
from support.slack_view import bot_texts
from support.workspace import ADA, BOT, CHANNEL, DM

from bot.conversations.backend import Completed
from bot.conversations.profiles import ProfileOrigin, ProfileSpec, is_reasoning_model

SAMPLING_PARAMETERS = ("temperature", "top_p")


def reasoning_asked(request: Any, backend: str) -> Any:
    """The reasoning effort (chat, assistants) or reasoning object (responses) a request sent; None if none."""
    body = request.body or {}
    return body.get("reasoning") if backend == "responses" else body.get("reasoning_effort")


@pytest.mark.parametrize(
    ("model", "reasons"),
    [
        ("o1", True),
        ("o3-mini", True),
        ("o4-mini-2025-04-16", True),
        ("gpt-5", True),
        ("gpt-5.1-codex", True),
        ("openai/gpt-5-mini", True),
        ("ft:o4-mini:acme::abc", True),
        ("gpt-4o-mini", False),
        ("gpt-4.1", False),
        ("omni-moderation-latest", False),
        ("llama3.1:8b", False),
    ],
)
def test_reasoning_models_are_told_by_name(model: str, reasons: bool) -> None:
    assert is_reasoning_model(model) is reasons


async def test_a_reasoning_model_gets_the_configured_effort_and_no_sampling_parameters(
    start_bot, slack_double, openai_double, backend
) -> None:
    bot = await start_bot(assistant_model="o4-mini", assistant_reasoning_effort="high")
    await bot.say(CHANNEL, ADA, f"<@{BOT}> think hard")

    [asked] = first_answer_requests(openai_double, backend)
    expected = {"effort": "high", "summary": "auto"} if backend == "responses" else "high"
    assert reasoning_asked(asked, backend) == expected
    assert not any(name in (asked.body or {}) for name in SAMPLING_PARAMETERS)
    openai_double.assert_no_violations()


async def test_other_models_are_never_sent_a_reasoning_effort(start_bot, slack_double, openai_double, backend) -> None:
    bot = await start_bot(assistant_model="gpt-4o-mini", assistant_reasoning_effort="high")
    ts = await bot.say(CHANNEL, ADA, f"<@{BOT}> hello")
    assert bot_texts(slack_double, CHANNEL, ts) == ["Echo: Ada: hello"]

    [asked] = first_answer_requests(openai_double, backend)
    assert reasoning_asked(asked, backend) is None
    assert not any(name in (asked.body or {}) for name in SAMPLING_PARAMETERS)
    openai_double.assert_no_violations()  # the double refuses reasoning parameters to models that do not reason


async def test_a_profiles_own_effort_wins_over_the_configured_one(
    openai_double: Any, sqlite_url: str, backend: str
) -> None:
    async with backend_harness(
        backend, openai_double=openai_double, database_url=sqlite_url, assistant_reasoning_effort="high"
    ) as harness:
        spec = ProfileSpec(name="Deep", model="o3-mini", instructions="Think.", tools=(), reasoning_effort="low")
        created = await harness.backend.profiles.create(spec, origin=ProfileOrigin("T1", "C1", "U0ADA"))
        profile = await harness.backend.profiles.get(created.id)  # as it comes back from where it is kept
        assert profile.reasoning_effort == "low"
        request = await harness.request(said("Ev1", "Ada: plan it"), profile=profile)
        events = [event async for event in harness.backend.answer(request)]

    assert final(events) == Completed("Echo: Ada: plan it")
    [asked] = first_answer_requests(openai_double, backend)
    expected = {"effort": "low", "summary": "auto"} if backend == "responses" else "low"
    assert reasoning_asked(asked, backend) == expected


async def test_the_assistant_editor_sets_a_profiles_effort(start_bot, slack_double, openai_double, backend) -> None:
    bot = await start_bot(admin_user_ids=ADA, assistant_reasoning_effort="high")
    await run_command(bot, slack_double, "/assistant", "create", user=ADA)
    [view] = [view for view in slack_double.views() if view["type"] == "modal"]
    [effort_field] = [block for block in view["blocks"] if block.get("block_id") == "reasoning_effort"]
    offered = [option["value"] for option in effort_field["element"]["options"]]
    assert offered == ["default", "minimal", "low", "medium", "high"]
    values = {
        "name": {"value": {"type": "plain_text_input", "value": "Planner"}},
        "model": {"value": {"type": "static_select", "selected_option": option("o3-mini")}},
        "instructions": {"value": {"type": "plain_text_input", "value": ""}},
        "reasoning_effort": {"value": {"type": "static_select", "selected_option": option("minimal")}},
    }
    body = view_submission_body(view, values, team_id=TEAM, user_id=ADA, trigger_id="trigger-effort")
    assert (await deliver_form(bot.url, body, SIGNING_SECRET)).status_code == 200
    await bot.settle()

    await bot.say(CHANNEL, ADA, f"<@{BOT}> plan the week")
    [asked] = first_answer_requests(openai_double, backend)
    expected = {"effort": "minimal", "summary": "auto"} if backend == "responses" else "minimal"
    assert reasoning_asked(asked, backend) == expected
    await run_command(bot, slack_double, "/assistant", "show", user=ADA)
    assert "Reasoning effort: minimal" in last_ephemeral(slack_double, user=ADA)


def option(value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": value}, "value": value}


@pytest.mark.backends("responses", reason="the Responses API streams reasoning summaries; the others report none")
async def test_a_reasoning_summary_shows_as_status_and_never_in_the_answer(
    start_bot, slack_double, openai_double
) -> None:
    summary = "**Comparing release dates**\n\nThe freeze ends on Thursday."
    openai_double.script(ScriptedAnswer(text="Ship on Friday.", reasoning_summary=[summary]))
    bot = await start_bot(assistant_model="o4-mini")
    envelope = slack_double.assistant_thread_started(DM, ADA)
    assert (await bot.deliver(envelope)).status_code == 200
    thread_ts = envelope["event"]["assistant_thread"]["thread_ts"]
    await bot.say(DM, ADA, "when do we ship?", thread_ts=thread_ts)

    assert bot_texts(slack_double, DM, thread_ts)[-1] == "Ship on Friday."
    said_in_messages = " ".join(
        str(call.params.get("text", ""))
        + str(call.params.get("markdown_text", ""))
        + str(call.params.get("chunks", ""))
        for call in slack_double.calls
        if call.method.startswith("chat.")
    )
    assert "freeze" not in said_in_messages and "Comparing release dates" not in said_in_messages
    statuses = [
        str(call.params.get("loading_messages", "")) for call in slack_double.calls_to("assistant.threads.setStatus")
    ]
    assert any("Comparing release dates" in status for status in statuses), statuses

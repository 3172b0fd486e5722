"""The assistants backend through the answer contract, against the OpenAI double and a real store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from doubles.openai import ScriptedAnswer
from support.contract import Harness, backend_harness, final, last_progress, last_state, said

from bot.conversations.backend import (
    BackendEvent,
    Checkpoint,
    Citation,
    Completed,
    Failed,
    FileKind,
    InputFile,
    InputNotice,
    StateChanged,
    TextDelta,
    ToolActivity,
    ToolStatus,
    Usage,
)
from bot.conversations.backends.assistants import AssistantsBackend
from bot.conversations.backends.assistants.backend import StepTools
from bot.conversations.profiles import ProfileOrigin, ProfileSpec
from bot.conversations.turn import HistoryMessage
from bot.errors import ProfileNotFound

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
async def harness(openai_double: Any, database_url: str) -> AsyncIterator[Harness]:
    """On SQLite and PostgreSQL: this backend keeps its default assistant's id in the store."""
    async with backend_harness("assistants", openai_double=openai_double, database_url=database_url) as made:
        assert isinstance(made.backend, AssistantsBackend)
        yield made


def user_texts(openai_double: Any, thread_id: str) -> list[str]:
    return [
        part["text"]["value"]
        for message in openai_double.thread_messages(thread_id)
        if message["role"] == "user"
        for part in message["content"]
        if part["type"] == "text"
    ]


# Conversations -------------------------------------------------------------------------------------


async def test_a_new_conversation_is_seeded_with_history_and_answered(harness: Harness, openai_double: Any) -> None:
    harness.history = [HistoryMessage("user", "Ada: ship Friday?"), HistoryMessage("assistant", "Monday is safer.")]
    events = await harness.answer(said("Ev1", "Ada: what now?"))
    assert isinstance(events[0], StateChanged)
    thread_id = events[0].state["thread_id"]
    [created] = openai_double.requests_to("POST", r"^/v1/threads$")
    assert [(m["role"], m["content"]) for m in created.body["messages"]] == [
        ("user", "Ada: ship Friday?"),
        ("assistant", "Monday is safer."),
    ]
    assert "".join(event.text for event in events if isinstance(event, TextDelta)) == "Echo: Ada: what now?"
    assert final(events) == Completed("Echo: Ada: what now?")
    assert any(isinstance(event, Usage) and event.prompt_tokens > 0 for event in events)
    [run] = openai_double.runs_of(thread_id)
    [message] = [m for m in openai_double.thread_messages(thread_id) if m["metadata"].get("event_id") == "Ev1"]
    assert last_progress(events) == {"message_ids": {"Ev1": message["id"]}, "run_id": run["id"]}
    assert openai_double.user_texts_seen()[-1] == "Ada: what now?"


async def test_a_continued_conversation_neither_seeds_nor_creates_a_thread(
    harness: Harness, openai_double: Any
) -> None:
    first = await harness.answer(said("Ev1", "one"))
    state = last_state(first)
    events = await harness.answer(said("Ev2", "two"), state=state)
    assert final(events) == Completed("Echo: two")
    assert harness.history_calls == 1
    assert len(openai_double.requests_to("POST", r"^/v1/threads$")) == 1
    assert not any(isinstance(event, StateChanged) for event in events)
    assert user_texts(openai_double, state["thread_id"]) == ["one", "two"]


async def test_a_batch_of_two_messages_gets_one_run(harness: Harness, openai_double: Any) -> None:
    events = await harness.answer(said("Ev1", "Ada: one"), said("Ev2", "Bob: two"))
    thread_id = last_state(events)["thread_id"]
    assert user_texts(openai_double, thread_id) == ["Ada: one", "Bob: two"]
    assert [m["metadata"]["event_id"] for m in openai_double.thread_messages(thread_id) if m["role"] == "user"] == [
        "Ev1",
        "Ev2",
    ]
    assert len(openai_double.runs_of(thread_id)) == 1
    assert final(events) == Completed("Echo: Bob: two")
    checkpoints = [event.progress for event in events if isinstance(event, Checkpoint)]
    assert [sorted(c["message_ids"]) for c in checkpoints] == [["Ev1"], ["Ev1", "Ev2"], ["Ev1", "Ev2"]]


async def test_function_tools_loop_until_the_run_answers(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(tool_calls=[("get_current_time", {"timezone": "UTC"})]))
    events = await harness.answer(said("Ev1", "what time is it?"))
    [submitted] = openai_double.submitted_tool_outputs
    assert json.loads(submitted["output"])["timezone"] == "UTC"
    activity = [event for event in events if isinstance(event, ToolActivity)]
    assert [(a.call_id, a.name, a.status) for a in activity] == [
        (submitted["tool_call_id"], "get_current_time", ToolStatus.STARTED),
        (submitted["tool_call_id"], "get_current_time", ToolStatus.COMPLETED),
    ]
    answer = final(events)
    assert isinstance(answer, Completed) and answer.text.startswith("Tool results:")
    [run] = openai_double.requests_to("POST", r"^/v1/threads/[^/]+/runs$")
    assert "instructions" not in run.body
    assert "get_current_time" in [t["function"]["name"] for t in run.body["tools"] if t["type"] == "function"]


async def test_a_failed_run_is_explained(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(status="failed", last_error={"code": "rate_limit_exceeded", "message": "slow"}))
    events = await harness.answer(said("Ev1", "hello"))
    assert final(events) == Failed("The assistant is over its rate limit right now. Please try again in a minute.")


async def test_the_assistant_is_not_fetched_on_every_turn(harness: Harness, openai_double: Any) -> None:
    state = last_state(await harness.answer(said("Ev1", "one")))
    await harness.answer(said("Ev2", "two"), state=state)
    assert len(openai_double.requests_to("GET", r"^/v1/assistants/")) <= 1


# Stopping and forgetting ---------------------------------------------------------------------------


async def test_cancel_stops_the_run_and_the_answer_says_so(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(stall=True))
    answering = harness.backend.answer(await harness.request(said("Ev1", "hello")))
    seen: list[BackendEvent] = []
    async for event in answering:
        seen.append(event)
        if isinstance(event, Checkpoint) and event.progress["run_id"]:
            await harness.backend.cancel(last_state(seen), event.progress)
    thread_id = last_state(seen)["thread_id"]
    assert [run["status"] for run in openai_double.runs_of(thread_id)] == ["cancelled"]
    assert final(seen) == Failed("The run was cancelled before the assistant finished.")


async def test_forget_deletes_the_thread_its_vector_store_and_files(harness: Harness, openai_double: Any) -> None:
    document = InputFile("F1", "report.pdf", FileKind.DOCUMENT, "application/pdf", PDF)
    events = await harness.answer(said("Ev1", "read it", document))
    state = last_state(events)
    assert state["vector_store_id"] and len(state["file_ids"]) == 1
    await harness.backend.forget(state, conversation_id=harness.conversation.id)
    assert openai_double.threads() == [] and openai_double.vector_stores() == [] and openai_double.files() == []
    await harness.backend.forget(state, conversation_id=harness.conversation.id)  # already gone counts as deleted


# Crashes and lost answers --------------------------------------------------------------------------


async def test_a_run_checkpointed_before_a_crash_is_followed_not_started_again(
    harness: Harness, openai_double: Any
) -> None:
    openai_double.script(ScriptedAnswer(text="All done.", chunk_delay=0.01))
    inputs = (said("Ev1", "hello"),)
    dying = harness.backend.answer(await harness.request(*inputs))
    seen: list[BackendEvent] = []
    async for event in dying:
        seen.append(event)
        if isinstance(event, Checkpoint) and event.progress["run_id"]:
            break  # the worker dies here
    await dying.aclose()
    resumed = await harness.answer(*inputs, state=last_state(seen), progress=last_progress(seen), attempt=2)
    thread_id = last_state(seen)["thread_id"]
    assert len(openai_double.runs_of(thread_id)) == 1
    assert len([m for m in openai_double.thread_messages(thread_id) if m["role"] == "user"]) == 1
    assert final(resumed) == Completed("All done.")


async def test_a_run_started_but_never_checkpointed_is_found_not_started_again(
    harness: Harness, openai_double: Any
) -> None:
    inputs = (said("Ev1", "hello"),)
    first = await harness.answer(*inputs)
    # The worker died after the run was started, before any checkpoint reached the database.
    resumed = await harness.answer(*inputs, state=last_state(first), attempt=2)
    thread_id = last_state(first)["thread_id"]
    assert len(openai_double.runs_of(thread_id)) == 1
    assert len(openai_double.requests_to("POST", r"^/v1/threads/[^/]+/messages$")) == 1
    assert final(resumed) == Completed("Echo: hello")


async def test_a_message_whose_answer_was_lost_is_not_added_twice(harness: Harness, openai_double: Any) -> None:
    openai_double.lose_response_next("POST", r"^/v1/threads/[^/]+/messages$")
    events = await harness.answer(said("Ev1", "only once"))
    thread_id = last_state(events)["thread_id"]
    assert [m["role"] for m in openai_double.thread_messages(thread_id)] == ["user", "assistant"]
    assert len(openai_double.requests_to("POST", r"^/v1/threads/[^/]+/messages$")) == 1
    assert final(events) == Completed("Echo: only once")


async def test_a_run_whose_answer_was_lost_is_followed_not_started_again(harness: Harness, openai_double: Any) -> None:
    openai_double.lose_response_next("POST", r"^/v1/threads/[^/]+/runs$")
    events = await harness.answer(said("Ev1", "one run please"))
    thread_id = last_state(events)["thread_id"]
    assert len(openai_double.runs_of(thread_id)) == 1
    assert final(events) == Completed("Echo: one run please")
    assert last_progress(events)["run_id"] == openai_double.runs_of(thread_id)[0]["id"]


async def test_tool_outputs_whose_answer_was_lost_are_not_submitted_twice(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(tool_calls=[("get_current_time", {"timezone": "UTC"})]))
    openai_double.lose_response_next("POST", r"/submit_tool_outputs$")
    events = await harness.answer(said("Ev1", "what time is it?"))
    assert len(openai_double.requests_to("POST", r"/submit_tool_outputs$")) == 1
    answer = final(events)
    assert isinstance(answer, Completed) and answer.text.startswith("Tool results:")


# Files ---------------------------------------------------------------------------------------------


async def test_a_document_is_searched_and_its_citation_numbered(harness: Harness, openai_double: Any) -> None:
    document = InputFile("F1", "Q3 report.pdf", FileKind.DOCUMENT, "application/pdf", PDF)
    events = await harness.answer(said("Ev1", "keep this", document))
    state = last_state(events)
    [store] = openai_double.vector_stores()
    [api_file] = openai_double.files()
    assert state == {"thread_id": state["thread_id"], "file_ids": [api_file["id"]], "vector_store_id": store["id"]}
    [thread] = openai_double.threads()
    assert thread["tool_resources"]["file_search"]["vector_store_ids"] == [store["id"]]
    [message] = [m for m in openai_double.thread_messages(state["thread_id"]) if m["role"] == "user"]
    assert message["attachments"] == [{"file_id": api_file["id"], "tools": [{"type": "file_search"}]}]
    assert message["content"][0]["text"]["value"] == "keep this\n\n[Shared files: Q3 report.pdf]"
    marker = "【4:0†source】"
    openai_double.script(
        ScriptedAnswer(text=f"Revenue grew 5%{marker}.", annotations=[("file_citation", marker, api_file["id"])])
    )
    asked = await harness.answer(said("Ev2", "how did revenue do?"), state=state)
    assert final(asked) == Completed("Revenue grew 5%[1].", citations=(Citation(1, "Q3 report.pdf"),))


async def test_an_image_goes_up_for_vision_and_into_the_content(harness: Harness, openai_double: Any) -> None:
    image = InputFile("F2", "chart.png", FileKind.IMAGE, "image/png", b"\x89PNG\r\n\x1a\n")
    events = await harness.answer(said("Ev1", "what is this?", image))
    [api_file] = openai_double.files()
    assert api_file["purpose"] == "vision"
    [message] = [m for m in openai_double.thread_messages(last_state(events)["thread_id"]) if m["role"] == "user"]
    assert message["content"][1]["image_file"]["file_id"] == api_file["id"]


async def test_a_refused_upload_is_a_notice_and_the_text_is_still_answered(
    harness: Harness, openai_double: Any
) -> None:
    openai_double.fail_next("POST", r"^/v1/files$", status=400, code="invalid_file")
    document = InputFile("F1", "broken.pdf", FileKind.DOCUMENT, "application/pdf", PDF)
    events = await harness.answer(said("Ev1", "read it", document))
    assert InputNotice("broken.pdf", "the assistant found the file invalid or damaged") in events
    assert final(events) == Completed("Echo: read it")
    assert openai_double.files() == [] and openai_double.vector_stores() == []


async def test_a_made_file_comes_back_with_its_sandbox_link(harness: Harness, openai_double: Any) -> None:
    table = openai_double.add_output_file("/mnt/data/sales.csv", b"month,total\nJan,10\n")
    link = "sandbox:/mnt/data/sales.csv"
    openai_double.script(ScriptedAnswer(text=f"Done: [table]({link})", annotations=[("file_path", link, table)]))
    events = await harness.answer(said("Ev1", "make a table"))
    answer = final(events)
    assert isinstance(answer, Completed) and answer.text == f"Done: [table]({link})"
    [made] = answer.files
    assert (made.name, made.data, made.link) == ("sales.csv", b"month,total\nJan,10\n", link)


# Profiles ------------------------------------------------------------------------------------------


async def test_the_default_assistant_is_created_once_and_remembered(harness: Harness, openai_double: Any) -> None:
    first = await harness.backend.profiles.default()
    again = await harness.backend.profiles.default()
    assert first == again and len(openai_double.assistants()) == 1
    assert await harness.store.get_state("default_assistant_id") == first.id
    assert await harness.profile_records.get(first.id) == first  # a copy in our own table


async def test_profiles_are_the_servers_assistants(harness: Harness, openai_double: Any) -> None:
    origin = ProfileOrigin(team_id="T1", channel_id="C1", user_id="U0ADA")
    created = await harness.backend.profiles.create(
        ProfileSpec("Pirate", "gpt-4o", "Talk like a pirate.", ("file_search",)), origin=origin
    )
    [stored] = openai_double.assistants()
    assert stored["metadata"] == {"created_by": "U0ADA", "channel": "C1"}
    assert (created.name, created.model, created.instructions, created.tools) == (
        "Pirate",
        "gpt-4o",
        "Talk like a pirate.",
        ("file_search",),
    )
    edited = await harness.backend.profiles.update(
        created.id, ProfileSpec("Pirate", "gpt-4o", None, ("code_interpreter",))
    )
    assert edited == replace(created, tools=("code_interpreter",))
    assert [p.id for p in await harness.backend.profiles.list()] == [created.id]
    assert await harness.profile_records.get(edited.id) == edited
    with pytest.raises(ProfileNotFound):
        await harness.backend.profiles.get("asst_missing")


async def test_an_image_the_code_interpreter_made_comes_back_as_a_png(harness: Harness, openai_double: Any) -> None:
    plot = openai_double.add_output_file("/mnt/data/plot", b"\x89PNG\r\n\x1a\n")
    openai_double.script(ScriptedAnswer(text="Here is the plot.", image_file_ids=[plot]))
    events = await harness.answer(said("Ev1", "plot the sales"))
    answer = final(events)
    assert isinstance(answer, Completed) and answer.text == "Here is the plot."
    [made] = answer.files
    assert (made.name, made.data, made.link) == ("plot.png", b"\x89PNG\r\n\x1a\n", None)


def test_built_in_tool_calls_in_run_steps_are_reported_started_then_ended() -> None:
    steps = StepTools()
    call = {"id": "call_ci", "type": "code_interpreter", "code_interpreter": {"input": "", "outputs": []}}
    delta = {
        "id": "step_1",
        "object": "thread.run.step.delta",
        "delta": {"step_details": {"type": "tool_calls", "tool_calls": [{"index": 0, **call}]}},
    }
    done = {"id": "step_1", "object": "thread.run.step", "step_details": {"type": "tool_calls", "tool_calls": [call]}}
    function = {"id": "call_fn", "type": "function", "function": {"name": "f", "arguments": "{}", "output": None}}
    seen = [
        *steps.seen("thread.run.step.delta", delta),
        *steps.seen("thread.run.step.delta", delta),
        *steps.seen("thread.run.step.completed", done),
        *steps.seen("thread.run.step.failed", {"step_details": {"type": "tool_calls", "tool_calls": [function]}}),
    ]
    assert seen == [
        ToolActivity("call_ci", "code_interpreter", "code_interpreter", ToolStatus.STARTED),
        ToolActivity("call_ci", "code_interpreter", "code_interpreter", ToolStatus.COMPLETED),
    ]

"""The chat backend through the answer contract, against the OpenAI double and a real SQLite store."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from conftest import OPENAI_KEY
from doubles.openai import ScriptedAnswer
from support.contract import Harness, backend_harness, final, said, state_of
from support.samples import PNG, pdf_with_text

from bot.conversations.backend import (
    BackendEvent,
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
from bot.conversations.backends.chat import PLUGIN, ChatBackend
from bot.conversations.backends.chat.history import entry, trimmed
from bot.conversations.documents import PDF_WITHOUT_TEXT, UNREADABLE_DATA
from bot.conversations.tools import Tool, ToolContext, ToolRegistry
from bot.conversations.turn import HistoryMessage
from bot.errors import APIConnectionError, ServerError
from bot.openai_api.client import OpenAIClient
from bot.store.chat import ChatHistoryRecords, HistoryRef, Passage
from bot.store.db import create_engine, migrate, session_factory
from bot.store.repositories import Store

INSTRUCTIONS = "You are a helpful assistant."


async def _harness(openai_double: Any, sqlite_url: str, **settings: Any) -> AsyncIterator[Harness]:
    async with backend_harness(
        "chat", openai_double=openai_double, database_url=sqlite_url, assistant_instructions=INSTRUCTIONS, **settings
    ) as made:
        assert isinstance(made.backend, ChatBackend)
        yield made


@pytest.fixture
async def harness(openai_double: Any, sqlite_url: str) -> AsyncIterator[Harness]:
    async for made in _harness(openai_double, sqlite_url):
        yield made


def document(name: str, data: bytes, kind: FileKind = FileKind.DOCUMENT, mimetype: str = "text/plain") -> InputFile:
    return InputFile(key=f"F_{name}", name=name, kind=kind, mimetype=mimetype, data=data)


def completion_bodies(openai_double: Any) -> list[dict[str, Any]]:
    return [request.body for request in openai_double.requests_to("POST", r"/chat/completions$")]


# Conversations -------------------------------------------------------------------------------------


async def test_a_new_conversation_is_seeded_with_the_thread_and_streamed(harness: Harness, openai_double: Any) -> None:
    harness.history = [HistoryMessage("user", "Ada: ship Friday?"), HistoryMessage("assistant", "Monday is safer.")]
    events = await harness.answer(said("Ev1", "Ada: what now?"))

    assert isinstance(events[0], StateChanged) and events[0].state["history"] == "bot"
    assert "".join(event.text for event in events if isinstance(event, TextDelta)) == "Echo: Ada: what now?"
    assert final(events) == Completed(text="Echo: Ada: what now?")
    [usage] = [event for event in events if isinstance(event, Usage)]
    assert usage.prompt_tokens > 0 and usage.completion_tokens == 4
    assert openai_double.model_inputs("chat") == [
        [
            ("system", "You are a helpful assistant."),
            ("user", "Ada: ship Friday?"),
            ("assistant", "Monday is safer."),
            ("user", "Ada: what now?"),
        ]
    ]
    [body] = completion_bodies(openai_double)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "gpt-4o-mini"
    assert harness.history_calls == 1


async def test_a_batch_of_two_continues_the_stored_history(harness: Harness, openai_double: Any) -> None:
    first = await harness.answer(said("Ev1", "Ada: hello"))
    state = state_of(first)

    events = await harness.answer(said("Ev2", "Ada: one"), said("Ev3", "Bob: two"), state=state)

    assert not any(isinstance(event, StateChanged) for event in events)
    assert final(events) == Completed(text="Echo: Bob: two")
    assert openai_double.model_inputs("chat")[-1] == [
        ("system", "You are a helpful assistant."),
        ("user", "Ada: hello"),
        ("assistant", "Echo: Ada: hello"),
        ("user", "Ada: one"),
        ("user", "Bob: two"),
    ]
    assert harness.history_calls == 1  # only a new conversation reads the Slack thread


async def test_a_server_that_will_not_stream_still_answers(harness: Harness, openai_double: Any) -> None:
    openai_double.streaming = False
    events = await harness.answer(said("Ev1", "Ada: hello"))
    assert final(events) == Completed(text="Echo: Ada: hello")
    assert [event for event in events if isinstance(event, TextDelta)] == [TextDelta("Echo: Ada: hello")]


# Tools ------------------------------------------------------------------------------------------------


async def test_function_tools_loop_until_the_model_answers(harness: Harness, openai_double: Any) -> None:
    openai_double.script(
        ScriptedAnswer(tool_calls=[("get_current_time", {"timezone": "UTC"})], text_after_tools="It is noon in UTC.")
    )
    events = await harness.answer(said("Ev1", "Ada: what time is it?"))

    assert final(events) == Completed(text="It is noon in UTC.")
    activity = [event for event in events if isinstance(event, ToolActivity)]
    assert [(event.name, event.status) for event in activity] == [
        ("get_current_time", ToolStatus.STARTED),
        ("get_current_time", ToolStatus.COMPLETED),
    ]
    first_body, second_body = completion_bodies(openai_double)
    assert [tool["function"]["name"] for tool in first_body["tools"]] == ["get_current_time"]
    calling, output = second_body["messages"][-2:]
    assert calling["tool_calls"][0]["function"] == {"name": "get_current_time", "arguments": '{"timezone": "UTC"}'}
    assert output["tool_call_id"] == calling["tool_calls"][0]["id"] == activity[0].call_id
    assert json.loads(output["content"])["timezone"] == "UTC"

    # The exchange stays in the history the next batch sends.
    await harness.answer(said("Ev2", "Ada: thanks"), state=state_of(events))
    roles = [role for role, _ in openai_double.model_inputs("chat")[-1]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]


# Failures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("details", "reason"),
    [
        (None, "The answer was cut short because it reached the token limit."),
        ({"reason": "content_filter"}, "The answer was stopped by the content filter."),
    ],
)
async def test_an_answer_cut_short_fails_in_plain_words(
    harness: Harness, openai_double: Any, details: dict | None, reason: str
) -> None:
    openai_double.script(ScriptedAnswer(text="Partial answ", status="incomplete", incomplete_details=details))
    events = await harness.answer(said("Ev1", "Ada: write an essay"))
    assert final(events) == Failed(reason)
    assert any(isinstance(event, Usage) for event in events)

    # Nothing of the cut answer is remembered as said.
    await harness.answer(said("Ev2", "Ada: again"), state=state_of(events))
    assert [role for role, _ in openai_double.model_inputs("chat")[-1]] == ["system", "user", "user"]


async def test_a_server_error_propagates_for_the_service_to_explain(harness: Harness, openai_double: Any) -> None:
    failed = ScriptedAnswer(status="failed", last_error={"code": "server_error", "message": "The model crashed."})
    openai_double.script(failed, failed)  # the client retries once
    with pytest.raises(ServerError, match="The model crashed"):
        await harness.answer(said("Ev1", "Ada: hello"))


# Cancel, crashes and lost answers -------------------------------------------------------------------------


async def test_a_stream_stopped_midway_leaves_no_answer_in_the_history(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(text="A long answer that will never be finished", chunks=8, chunk_delay=0.05))
    seen: list[BackendEvent] = []
    async with aclosing(harness.backend.answer(await harness.request(said("Ev1", "Ada: tell me")))) as events:
        async for event in events:
            seen.append(event)
            if isinstance(event, TextDelta):
                break  # the service stops reading: the person pressed stop
    await harness.backend.cancel(state_of(seen), None)

    events = await harness.answer(said("Ev2", "Ada: never mind"), state=state_of(seen))
    assert final(events) == Completed(text="Echo: Ada: never mind")
    assert [role for role, _ in openai_double.model_inputs("chat")[-1]] == ["system", "user", "user"]


async def test_a_resumed_batch_adds_nothing_twice(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(text="First try, cut", chunks=4, chunk_delay=0.05))
    seen: list[BackendEvent] = []
    batch = (said("Ev1", "Ada: hi"), said("Ev2", "Ada: there"))
    async with aclosing(harness.backend.answer(await harness.request(*batch))) as events:
        async for event in events:
            seen.append(event)
            if isinstance(event, TextDelta):
                break  # the worker died mid-answer

    resumed = await harness.answer(*batch, state=state_of(seen), attempt=2)
    assert final(resumed) == Completed(text="Echo: Ada: there")
    assert openai_double.model_inputs("chat")[-1] == [
        ("system", "You are a helpful assistant."),
        ("user", "Ada: hi"),
        ("user", "Ada: there"),
    ]

    # Died after the answer was stored but before it was shown: the same answer, without asking the model.
    calls = openai_double.model_calls
    again = await harness.answer(*batch, state=state_of(seen), attempt=3)
    assert final(again) == Completed(text="Echo: Ada: there")
    assert not any(isinstance(event, Usage) for event in again)
    assert openai_double.model_calls == calls


async def test_a_stream_cut_midway_raises_and_the_next_attempt_answers_once(
    harness: Harness, openai_double: Any
) -> None:
    openai_double.cut_stream_after = 2
    seen: list[BackendEvent] = []
    with pytest.raises(APIConnectionError) as raised:
        async for event in harness.backend.answer(await harness.request(said("Ev1", "Ada: hello"))):
            seen.append(event)
    assert raised.value.request_sent
    openai_double.cut_stream_after = None

    events = await harness.answer(said("Ev1", "Ada: hello"), state=state_of(seen), attempt=2)
    assert final(events) == Completed(text="Echo: Ada: hello")
    assert openai_double.model_inputs("chat")[-1] == [
        ("system", "You are a helpful assistant."),
        ("user", "Ada: hello"),
    ]


async def test_a_resumed_tool_loop_does_not_run_a_finished_tool_again(harness: Harness, openai_double: Any) -> None:
    runs: list[dict] = []

    def book_room(context: ToolContext, arguments: dict) -> str:
        runs.append(arguments)
        return "booked room 4"

    parameters = {"type": "object", "properties": {"size": {"type": "integer"}}}
    harness.tools = ToolRegistry([Tool("book_room", "Book a meeting room.", parameters, book_room)])
    openai_double.script(ScriptedAnswer(tool_calls=[("book_room", {"size": 4})], text_after_tools="Room 4 is yours."))
    seen: list[BackendEvent] = []
    async with aclosing(harness.backend.answer(await harness.request(said("Ev1", "Ada: book a room")))) as events:
        async for event in events:
            seen.append(event)
            if isinstance(event, ToolActivity) and event.status is ToolStatus.COMPLETED:
                break  # the worker died right after the tool ran

    resumed = await harness.answer(said("Ev1", "Ada: book a room"), state=state_of(seen), attempt=2)
    assert final(resumed) == Completed(text="Room 4 is yours.")
    assert runs == [{"size": 4}]
    assert not any(isinstance(event, ToolActivity) for event in resumed)


async def test_a_lost_answer_is_asked_again_without_duplicating_history(harness: Harness, openai_double: Any) -> None:
    openai_double.lose_response_next("POST", r"/chat/completions$")
    events = await harness.answer(said("Ev1", "Ada: hello"))
    assert final(events) == Completed(text="Echo: Ada: hello")
    assert len(completion_bodies(openai_double)) == 2
    await harness.answer(said("Ev2", "Ada: and?"), state=state_of(events))
    assert [role for role, _ in openai_double.model_inputs("chat")[-1]] == ["system", "user", "assistant", "user"]


async def test_forgetting_a_retired_history_leaves_the_current_one(harness: Harness, openai_double: Any) -> None:
    old = state_of(await harness.answer(said("Ev1", "Ada: old topic")))
    new = state_of(await harness.answer(said("Ev2", "Ada: new topic")))  # after /assistant new: state None again
    assert old != new
    await harness.backend.forget(old, conversation_id=harness.conversation.id)

    await harness.answer(said("Ev3", "Ada: more"), state=new)
    assert [text for _, text in openai_double.model_inputs("chat")[-1]][1:] == [
        "Ada: new topic",
        "Echo: Ada: new topic",
        "Ada: more",
    ]
    await harness.backend.forget(new, conversation_id=harness.conversation.id)
    await harness.answer(said("Ev4", "Ada: still there?"), state=new)
    assert [text for _, text in openai_double.model_inputs("chat")[-1]][1:] == ["Ada: still there?"]


# History budget ---------------------------------------------------------------------------------------


async def test_the_history_is_trimmed_to_the_budget_keeping_system_and_newest(
    openai_double: Any, sqlite_url: str
) -> None:
    openai_double.shape = "chat_only"
    async for harness in _harness(openai_double, sqlite_url, chat_max_history_tokens=1000):
        # Each of these is ~400 tokens by the estimate: only the newest two fit beside the question.
        harness.history = [HistoryMessage("user", f"Seed {index}: " + "x" * 1200) for index in range(5)]
        events = await harness.answer(said("Ev1", "Ada: what did we say?"))
        seen = openai_double.model_inputs("chat")[-1]
        assert seen[0] == ("system", "You are a helpful assistant.")
        assert seen[-1] == ("user", "Ada: what did we say?")
        assert [text[:6] for _, text in seen[1:-1]] == ["Seed 3", "Seed 4"]

        # The newest message goes even when it alone is over the budget.
        await harness.answer(said("Ev2", "Ada: " + "y" * 4000), state=state_of(events))
        seen = openai_double.model_inputs("chat")[-1]
        assert [role for role, _ in seen] == ["system", "user"] and seen[-1][1].startswith("Ada: yyy")


def test_trimming_keeps_a_tool_call_with_its_outputs() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    entries = [
        entry("u1", "user", {"content": "question " * 50}),
        entry("c", "assistant", {"content": None, "tool_calls": [call]}),
        entry("t", "tool", {"content": "result " * 40, "tool_call_id": "call_1"}),
    ]
    tool_block = entries[1].tokens + entries[2].tokens
    assert [item.key for item in trimmed(entries, budget=tool_block)] == ["c", "t"]
    assert [item.key for item in trimmed(entries, budget=entries[2].tokens)] == ["c", "t"]  # never a lone output
    assert [item.key for item in trimmed(entries, budget=10_000)] == ["u1", "c", "t"]


# Files ------------------------------------------------------------------------------------------------


async def test_an_image_goes_as_a_data_url(harness: Harness, openai_double: Any) -> None:
    image = InputFile(key="F1", name="chart.png", kind=FileKind.IMAGE, mimetype="image/png", data=PNG)
    events = await harness.answer(said("Ev1", "Ada: what is this?", image))
    assert isinstance(final(events), Completed)
    user = completion_bodies(openai_double)[-1]["messages"][-1]
    assert user["content"] == [
        {"type": "text", "text": "Ada: what is this?\n\n[Shared files: chart.png]"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
    ]


async def test_a_small_document_goes_inline_with_its_name(harness: Harness, openai_double: Any) -> None:
    notes = document("notes.md", b"# Plan\n\nShip on Monday.")
    report = document("report.pdf", pdf_with_text("Quarterly revenue grew 12 percent."), mimetype="application/pdf")
    events = await harness.answer(said("Ev1", "Ada: summarise", notes, report))
    assert isinstance(final(events), Completed)
    seen_user = openai_double.model_inputs("chat")[-1][-1][1]
    assert seen_user.startswith("Ada: summarise\n\n[Shared files: notes.md, report.pdf]")
    assert '<document name="notes.md">\n# Plan\n\nShip on Monday.\n</document>' in seen_user
    assert '<document name="report.pdf">' in seen_user and "Quarterly revenue grew 12 percent." in seen_user
    assert openai_double.requests_to("POST", "/embeddings") == []


async def test_unreadable_files_get_a_notice_and_the_text_is_answered(harness: Harness, openai_double: Any) -> None:
    scanned = document("scan.pdf", pdf_with_text(), mimetype="application/pdf")
    sheet = document("budget.xlsx", b"PK\x03\x04 not text", kind=FileKind.DATA, mimetype="application/vnd.ms-excel")
    events = await harness.answer(said("Ev1", "Ada: look", scanned, sheet))
    assert [event for event in events if isinstance(event, InputNotice)] == [
        InputNotice("scan.pdf", PDF_WITHOUT_TEXT),
        InputNotice("budget.xlsx", UNREADABLE_DATA),
    ]
    assert final(events) == Completed(text="Echo: Ada: look")


def _long_document() -> bytes:
    """A long handbook whose only passage about launch codes is one paragraph among many others."""
    vocabulary = ["harbour", "lantern", "meadow", "copper", "violet", "orchard", "glacier", "saddle", "timber"]
    paragraphs = [
        f"Chapter {index}. " + " ".join(vocabulary[(index + offset) % len(vocabulary)] for offset in range(180))
        for index in range(14)
    ]
    paragraphs.insert(9, "Launch procedure: the launch code word is pelican, spoken twice.")
    return "\n\n".join(paragraphs).encode()


async def test_a_large_document_is_searched_and_the_model_sees_the_relevant_passage(
    harness: Harness, openai_double: Any
) -> None:
    handbook = document("handbook.txt", _long_document())
    assert len(handbook.data) > 12_000
    events = await harness.answer(said("Ev1", "Ada: what is the launch code word?", handbook))
    assert isinstance(final(events), Completed)

    seen = openai_double.model_inputs("chat")[-1]
    assert seen[1][0] == "system" and "handbook.txt" in seen[1][1]
    first_passage = seen[1][1].split("<passage ")[1]
    assert "the launch code word is pelican" in first_passage  # the best match comes first
    assert seen[1][1].count("<passage ") < len(openai_double.core.family("embeddings").inputs) - 1  # not all of it
    assert "pelican" not in seen[-1][1]  # the question itself does not carry the whole document
    assert "[Shared files: handbook.txt (long" in seen[-1][1]

    # A later batch searches the same passages again without embedding the document a second time.
    embedded = len(openai_double.core.family("embeddings").inputs)
    await harness.answer(said("Ev2", "Ada: and the launch procedure?"), state=state_of(events))
    assert len(openai_double.core.family("embeddings").inputs) == embedded + 1
    assert "pelican" in openai_double.model_inputs("chat")[-1][1][1]


async def test_on_a_chat_only_server_nothing_needs_files_or_vector_stores(harness: Harness, openai_double: Any) -> None:
    assert openai_double.shape == "chat_only"
    async with OpenAIClient(api_key=OPENAI_KEY, base_url=openai_double.base_url, max_retries=0) as client:
        [probe] = PLUGIN.probes
        assert await client.request(probe.method, probe.path) == {
            "object": "list",
            "data": [],
            "first_id": None,
            "last_id": None,
            "has_more": False,
        }
    image = InputFile(key="F1", name="chart.png", kind=FileKind.IMAGE, mimetype="image/png", data=PNG)
    files = (image, document("handbook.txt", _long_document()), document("notes.md", b"Ship Monday."))
    events = await harness.answer(said("Ev1", "Ada: what is the launch code word?", *files))
    assert isinstance(final(events), Completed)
    paths = {request.path for request in openai_double.requests}
    assert not any("/files" in path or "/vector_stores" in path for path in paths)


# The repository, on every database ------------------------------------------------------------------


async def test_history_records_append_each_key_once_in_order(database_url: str) -> None:
    engine = create_engine(database_url)
    await migrate(engine)
    store = Store(session_factory(engine))
    row = await store.get_or_create_conversation(team_id="T1", channel_id="C1", thread_key="1.0", surface="channel")
    records = ChatHistoryRecords(store)
    history, other = HistoryRef(row.id, f"{row.id}:Ev1"), HistoryRef(row.id, f"{row.id}:Ev9")
    await records.append(history, [entry("Ev1", "user", {"content": "one"}), entry("Ev2", "user", {"content": "two"})])
    await records.append(
        history, [entry("Ev2", "user", {"content": "changed"}), entry("Ev3", "user", {"content": "three"})]
    )
    await records.append(other, [entry("Ev1", "user", {"content": "elsewhere"})])
    await records.add_passages(history, [Passage("F1", "a.txt", 0, "alpha", (1.0, 0.0))])
    await records.add_passages(history, [Passage("F1", "a.txt", 0, "again", (0.0, 1.0))])

    assert [(item.key, item.fields["content"]) for item in await records.entries(history)] == [
        ("Ev1", "one"),
        ("Ev2", "two"),
        ("Ev3", "three"),
    ]
    assert [passage.text for passage in await records.passages(history)] == ["alpha"]
    assert await records.has_document(history, "F1") and not await records.has_document(other, "F1")
    await records.forget(history.history_id)
    assert await records.entries(history) == [] and await records.passages(history) == []
    assert [item.fields["content"] for item in await records.entries(other)] == ["elsewhere"]
    await engine.dispose()

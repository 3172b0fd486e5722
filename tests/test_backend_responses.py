"""The responses backend through the answer contract, against the OpenAI double and a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from doubles.openai import ScriptedAnswer
from support.contract import Harness, backend_harness, checkpoints, final, last_state, said

from bot.conversations.backend import (
    BackendEvent,
    Checkpoint,
    Completed,
    Failed,
    ReasoningNote,
    StateChanged,
    TextDelta,
    ToolActivity,
    ToolStatus,
    Usage,
)
from bot.conversations.backends.responses import PLUGIN, ResponsesBackend, import_assistant_profile
from bot.conversations.turn import AnswerFile, Citation, HistoryMessage


@pytest.fixture
async def harness(openai_double: Any, sqlite_url: str) -> AsyncIterator[Harness]:
    async with backend_harness("responses", openai_double=openai_double, database_url=sqlite_url) as made:
        assert isinstance(made.backend, ResponsesBackend)
        yield made


def conversation_texts(openai_double: Any, conversation_id: str) -> list[tuple[str, str]]:
    items = openai_double.core.family("conversations").items_of(conversation_id)
    return [
        (item["role"], "\n".join(part.get("text", "") for part in item["content"]))
        for item in items
        if item["type"] == "message"
    ]


def response_posts(openai_double: Any) -> list[Any]:
    return openai_double.requests_to("POST", r"/responses$")


# Conversations -------------------------------------------------------------------------------------


async def test_a_new_conversation_is_seeded_with_history_and_answered(harness: Harness, openai_double: Any) -> None:
    harness.history = [HistoryMessage("user", f"Ada: point {n}") for n in range(24)]
    harness.history.append(HistoryMessage("assistant", "Monday is safer."))
    events = await harness.answer(said("Ev1", "Ada: what now?"))

    assert final(events) == Completed("Echo: Ada: what now?")
    assert isinstance(events[0], StateChanged) and events[0].state["conversation_id"].startswith("conv_")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Echo: Ada: what now?"
    assert harness.history_calls == 1
    # 26 messages: 20 in POST /conversations, the rest through /items, then the input, then the answer.
    seen = openai_double.model_inputs("responses")
    assert len(seen) == 1
    assert seen[0] == [
        ("system", "Be brief."),
        *[("user", f"Ada: point {n}") for n in range(24)],
        ("assistant", "Monday is safer."),
        ("user", "Ada: what now?"),
    ]
    body = response_posts(openai_double)[0].body
    assert body["background"] is True and body["stream"] is True and body["store"] is True
    assert "input" not in body and body["model"] == "gpt-4o-mini"
    assert body["tools"][0]["type"] == "function" and body["tools"][0]["name"] == "get_current_time"
    conversation_id = last_state(events)["conversation_id"]
    assert conversation_texts(openai_double, conversation_id)[-1] == ("assistant", "Echo: Ada: what now?")
    usage = [event for event in events if isinstance(event, Usage)]
    assert len(usage) == 1 and usage[0].prompt_tokens > 0


async def test_a_batch_of_two_goes_into_one_response(harness: Harness, openai_double: Any) -> None:
    first = await harness.answer(said("Ev1", "Ada: hello"))
    state = last_state(first)
    events = await harness.answer(said("Ev2", "Ada: one"), said("Ev3", "Bob: two"), state=state)

    assert final(events) == Completed("Echo: Bob: two")
    assert len(response_posts(openai_double)) == 2
    assert [text for role, text in openai_double.model_inputs("responses")[-1] if role == "user"] == [
        "Ada: hello",
        "Ada: one",
        "Bob: two",
    ]
    assert len(checkpoints(events)[0]["input_item_ids"]) == 2
    assert harness.history_calls == 1


async def test_a_tool_loop_answers_after_the_function_output(harness: Harness, openai_double: Any) -> None:
    openai_double.script(
        ScriptedAnswer(tool_calls=[("get_current_time", {"timezone": "UTC"})], text_after_tools="It is late.")
    )
    events = await harness.answer(said("Ev1", "Ada: time?"))

    assert final(events) == Completed("It is late.")
    posts = response_posts(openai_double)
    assert len(posts) == 2
    output = posts[1].body["input"][0]
    assert output["type"] == "function_call_output" and '"timezone": "UTC"' in output["output"]
    assert [(e.tool, e.name, e.status) for e in events if isinstance(e, ToolActivity)] == [
        ("function", "get_current_time", ToolStatus.STARTED),
        ("function", "get_current_time", ToolStatus.COMPLETED),
    ]
    tool_seen = [text for role, text in openai_double.model_inputs("responses")[-1] if role == "tool"]
    assert len(tool_seen) == 1 and "UTC" in tool_seen[0]


async def test_a_failed_response_is_explained(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(status="failed", last_error={"code": "rate_limit_exceeded", "message": "slow"}))
    events = await harness.answer(said("Ev1", "Ada: hi"))

    assert final(events) == Failed("The assistant is over its rate limit right now. Please try again in a minute.")


async def test_citations_and_made_files_come_with_the_answer(harness: Harness, openai_double: Any) -> None:
    pdf_id = openai_double.core.family("files").store("plan.pdf", b"%PDF", "assistants")["id"]
    chart_id = openai_double.add_output_file("chart.png", b"PNG-chart")
    image_id = openai_double.add_output_file("cat.png", b"PNG-cat")
    text = "The plan says Friday. See sandbox:/mnt/data/chart.png"
    openai_double.script(
        ScriptedAnswer(
            text=text,
            image_file_ids=[image_id],
            annotations=[("file_citation", "Friday.", pdf_id), ("file_path", "sandbox:/mnt/data/chart.png", chart_id)],
        )
    )
    events = await harness.answer(said("Ev1", "Ada: when?"))

    answer = final(events)
    assert answer == Completed(
        "The plan says Friday.[1] See sandbox:/mnt/data/chart.png",
        files=(
            AnswerFile("image-1.png", b"PNG-cat"),
            AnswerFile("chart.png", b"PNG-chart", link="sandbox:/mnt/data/chart.png"),
        ),
        citations=(Citation(1, "plan.pdf"),),
    )
    tools = {(e.tool, e.status) for e in events if isinstance(e, ToolActivity)}
    assert ("code_interpreter", ToolStatus.COMPLETED) in tools and ("image_generation", ToolStatus.STARTED) in tools


# Stopping and resuming -------------------------------------------------------------------------------


async def test_cancel_stops_a_stalled_response(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(stall=True))
    events: list[BackendEvent] = []
    answering = harness.backend.answer(await harness.request(said("Ev1", "Ada: hi")))
    async for event in answering:
        events.append(event)
        if isinstance(event, Checkpoint) and "response_id" in event.progress:
            await harness.backend.cancel(last_state(events), event.progress)
    assert final(events) == Failed("The run was cancelled before the assistant finished.")
    assert openai_double.core.family("responses").response_objects()[0]["status"] == "cancelled"
    # Cancelling again, once it has ended, is not an error.
    await harness.backend.cancel(last_state(events), checkpoints(events)[-1])


async def test_a_resumed_worker_follows_the_checkpointed_response(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(text="Slow and steady.", chunks=4))
    crashed: list[BackendEvent] = []
    answering = harness.backend.answer(await harness.request(said("Ev1", "Ada: hi")))
    async for event in answering:  # the worker dies right after checkpointing the response id
        crashed.append(event)
        if isinstance(event, Checkpoint) and "response_id" in event.progress:
            break
    await answering.aclose()
    progress = checkpoints(crashed)[-1]

    events = await harness.answer(said("Ev1", "Ada: hi"), state=last_state(crashed), progress=progress, attempt=2)
    assert final(events) == Completed("Slow and steady.")
    assert len(response_posts(openai_double)) == 1
    follows = openai_double.requests_to("GET", r"/responses/resp_")
    assert follows and follows[0].query["stream"] == "true" and "starting_after" in follows[0].query
    assert len(openai_double.requests_to("POST", r"/items$")) == 1


async def test_a_cut_stream_is_followed_by_id(harness: Harness, openai_double: Any) -> None:
    openai_double.cut_stream_after = 4
    openai_double.script(ScriptedAnswer(text="Not lost at all.", chunks=5))
    events = await harness.answer(said("Ev1", "Ada: hi"))
    openai_double.cut_stream_after = None

    assert final(events) == Completed("Not lost at all.")
    assert len(response_posts(openai_double)) == 1


# Lost answers -------------------------------------------------------------------------------------------


async def test_items_whose_answer_was_lost_are_not_added_twice(harness: Harness, openai_double: Any) -> None:
    first = await harness.answer(said("Ev1", "Ada: hello"))
    openai_double.lose_response_next("POST", r"/conversations/[^/]+/items$")
    events = await harness.answer(said("Ev2", "Ada: one"), said("Ev3", "Ada: two"), state=last_state(first))

    assert final(events) == Completed("Echo: Ada: two")
    conversation_id = last_state(events)["conversation_id"]
    users = [text for role, text in conversation_texts(openai_double, conversation_id) if role == "user"]
    assert users == ["Ada: hello", "Ada: one", "Ada: two"]
    assert [t for r, t in openai_double.model_inputs("responses")[-1] if r == "user"] == users


async def test_a_crash_before_the_items_checkpoint_finds_them(harness: Harness, openai_double: Any) -> None:
    first = await harness.answer(said("Ev1", "Ada: hello"))
    state = last_state(first)
    # The dead worker added the message but died before its checkpoint was stored.
    await harness.backend._api.add_items(
        state["conversation_id"],
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Ada: again"}]}],
    )
    events = await harness.answer(said("Ev2", "Ada: again"), state=state, attempt=2)

    assert final(events) == Completed("Echo: Ada: again")
    users = [t for r, t in openai_double.model_inputs("responses")[-1] if r == "user"]
    assert users == ["Ada: hello", "Ada: again"]


async def test_a_batch_grown_after_a_crash_adds_only_what_the_dead_worker_had_not(
    harness: Harness, openai_double: Any
) -> None:
    first = await harness.answer(said("Ev1", "Ada: hello"))
    state = last_state(first)
    # The dead worker added its one message and died before its checkpoint; meanwhile another arrived,
    # so the worker taking over answers both at once.
    await harness.backend._api.add_items(
        state["conversation_id"],
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Ada: again"}]}],
    )
    events = await harness.answer(said("Ev2", "Ada: again"), said("Ev3", "Ada: and more"), state=state, attempt=2)

    assert final(events) == Completed("Echo: Ada: and more")
    users = [t for r, t in openai_double.model_inputs("responses")[-1] if r == "user"]
    assert users == ["Ada: hello", "Ada: again", "Ada: and more"]


async def test_a_response_whose_answer_was_lost_is_found_in_the_conversation(
    harness: Harness, openai_double: Any
) -> None:
    first = await harness.answer(said("Ev1", "Ada: hello"))
    openai_double.lose_response_next("POST", r"/responses$")
    openai_double.script(ScriptedAnswer(text="Found me."))
    events = await harness.answer(said("Ev2", "Ada: there?"), state=last_state(first))

    assert final(events) == Completed("Found me.")
    assert len(response_posts(openai_double)) == 2  # one per batch: the lost one was not sent again
    assert openai_double.model_calls == 2
    assert last_state(events)["last_item_id"].startswith("msg_")


async def test_a_lost_response_request_with_no_trace_is_sent_once_more(harness: Harness, openai_double: Any) -> None:
    # The worker died after checkpointing its inputs and before any response existed.
    first = await harness.answer(said("Ev1", "Ada: hello"))
    state = last_state(first)
    added = await harness.backend._api.add_items(
        state["conversation_id"],
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Ada: late"}]}],
    )
    progress = {"input_item_ids": [added[0]["id"]], "anchor": added[0]["id"], "pending_input": [], "requested": True}
    events = await harness.answer(said("Ev2", "Ada: late"), state=state, progress=progress, attempt=2)

    assert final(events) == Completed("Echo: Ada: late")
    assert len(response_posts(openai_double)) == 2
    assert [t for r, t in openai_double.model_inputs("responses")[-1] if r == "user"] == ["Ada: hello", "Ada: late"]


# Forgetting, probes, profiles -----------------------------------------------------------------------------


async def test_forget_deletes_the_conversation_and_tolerates_it_gone(harness: Harness, openai_double: Any) -> None:
    events = await harness.answer(said("Ev1", "Ada: hi"))
    state = last_state(events)
    await harness.backend.forget(state, conversation_id=harness.conversation.id)
    await harness.backend.forget(state, conversation_id=harness.conversation.id)
    assert openai_double.core.family("conversations").conversations == {}


async def test_probes_tell_a_served_api_from_an_unknown_route(harness: Harness, openai_double: Any) -> None:
    for shape, served in (("openai", True), ("chat_only", False)):
        openai_double.shape = shape
        for probe in PLUGIN.probes:
            response = await harness.client._http.request(probe.method, probe.path.lstrip("/"))
            assert response.status_code == 404
            message = response.json()["error"]["message"]
            assert message.startswith("Invalid URL") is not served


async def test_an_assistant_that_is_not_served_is_not_imported(harness: Harness, openai_double: Any) -> None:
    openai_double.shape = "openai"
    assert await import_assistant_profile(harness.client, "asst_gone") is None
    openai_double.shape = "full"
    assert await import_assistant_profile(harness.client, "asst_missing") is None


async def test_text_is_streamed_while_the_response_runs(harness: Harness, openai_double: Any) -> None:
    openai_double.script(ScriptedAnswer(text="abcdef", chunks=3, chunk_delay=0.01))
    deltas = [e.text for e in await harness.answer(said("Ev1", "x")) if isinstance(e, TextDelta)]
    assert deltas == ["ab", "cd", "ef"]


# Web search, reasoning, code interpreter containers ---------------------------------------------------


async def test_a_web_search_shows_once_as_a_task_and_its_sources_become_citations(
    harness: Harness, openai_double: Any
) -> None:
    openai_double.script(
        ScriptedAnswer(
            text="Rates rose in May. Markets fell.",
            web_sources=[
                ("Rates rose in May.", "https://news.example/rates", "Rates | News"),
                ("Markets fell.", "https://markets.example/a", "Markets"),
            ],
        )
    )
    events = await harness.answer(said("Ev1", "Ada: what happened?"))

    assert final(events) == Completed(
        "Rates rose in May.[1] Markets fell.[2]",
        citations=(
            Citation(1, "Rates | News", url="https://news.example/rates"),
            Citation(2, "Markets", url="https://markets.example/a"),
        ),
    )
    searches = [(e.tool, e.status) for e in events if isinstance(e, ToolActivity)]
    # The stream reports the search's start three times and its end twice; each shows once.
    assert searches == [("web_search", ToolStatus.STARTED), ("web_search", ToolStatus.COMPLETED)]
    [body] = [request.body for request in response_posts(openai_double)]
    assert {"type": "web_search"} in body["tools"]  # the default profile's ASSISTANT_TOOLS default
    openai_double.assert_no_violations()


async def test_a_reasoning_models_summary_is_a_note_and_not_the_answer(openai_double: Any, sqlite_url: str) -> None:
    summary = "**Weighing the dates**\n\nFriday is after the freeze."
    openai_double.script(ScriptedAnswer(text="Ship on Friday.", reasoning_summary=[summary]))
    async with backend_harness(
        "responses", openai_double=openai_double, database_url=sqlite_url, assistant_model="o4-mini"
    ) as harness:
        events = await harness.answer(said("Ev1", "Ada: when?"))

    assert [e for e in events if isinstance(e, ReasoningNote)] == [ReasoningNote(summary)]
    notes_before_text = events.index(ReasoningNote(summary)) < next(
        i for i, e in enumerate(events) if isinstance(e, TextDelta)
    )
    assert notes_before_text
    assert final(events) == Completed("Ship on Friday.")
    [body] = [request.body for request in response_posts(openai_double)]
    assert body["reasoning"] == {"summary": "auto"} and "temperature" not in body and "top_p" not in body
    openai_double.assert_no_violations()


async def test_summaries_the_api_refuses_are_left_out_from_then_on(openai_double: Any, sqlite_url: str) -> None:
    refusal = "Your organization must be verified to generate reasoning summaries."
    openai_double.fail_next("POST", r"^/v1/responses$", status=400, message=refusal, code="unsupported_value")
    async with backend_harness(
        "responses",
        openai_double=openai_double,
        database_url=sqlite_url,
        assistant_model="gpt-5-mini",
        assistant_reasoning_effort="low",
    ) as harness:
        first = await harness.answer(said("Ev1", "Ada: hi"))
        second = await harness.answer(said("Ev2", "Ada: again"), state=last_state(first))

    assert final(first) == Completed("Echo: Ada: hi") and final(second) == Completed("Echo: Ada: again")
    bodies = [request.body for request in response_posts(openai_double)]
    assert [body["reasoning"] for body in bodies] == [
        {"effort": "low", "summary": "auto"},  # refused
        {"effort": "low"},
        {"effort": "low"},
    ]


async def test_an_expired_container_is_dropped_from_the_conversation_and_the_answer_goes_on(
    harness: Harness, openai_double: Any
) -> None:
    chart = openai_double.add_output_file("/mnt/data/chart.png", b"PNG-chart")
    link = "sandbox:/mnt/data/chart.png"
    openai_double.script(ScriptedAnswer(text=f"Here: {link}", annotations=[("file_path", link, chart)]))
    first = await harness.answer(said("Ev1", "Ada: chart it"))
    assert final(first).files == (AnswerFile("chart.png", b"PNG-chart", link=link),)
    conversation_id = last_state(first)["conversation_id"]
    with openai_double.core.lock:
        openai_double.core.family("containers").expire_all()

    second = await harness.answer(said("Ev2", "Ada: and now?"), state=last_state(first))

    assert final(second) == Completed("Echo: Ada: and now?")
    assert len(response_posts(openai_double)) == 3  # the refused one, then the one that answered
    items = openai_double.core.family("conversations").items_of(conversation_id)
    assert [item["type"] for item in items if item["type"] != "message"] == []
    assert conversation_texts(openai_double, conversation_id) == [
        ("user", "Ada: chart it"),
        ("assistant", f"Here: {link}"),
        ("user", "Ada: and now?"),
        ("assistant", "Echo: Ada: and now?"),
    ]


async def test_an_inline_link_to_a_web_source_becomes_its_number(harness: Harness, openai_double: Any) -> None:
    link = "([news.example](https://news.example/rates?utm_source=openai))"
    openai_double.script(
        ScriptedAnswer(
            text=f"Rates rose {link}. They may fall [again](https://x.example/later).",
            web_sources=[(link[1:-1], "https://news.example/rates?utm_source=openai", "Rates")],
        )
    )
    events = await harness.answer(said("Ev1", "Ada: rates?"))

    assert final(events) == Completed(
        "Rates rose[1]. They may fall [again](https://x.example/later).",
        citations=(Citation(1, "Rates", url="https://news.example/rates?utm_source=openai"),),
    )

"""Self-tests of the OpenAI API double and its spec validator, over real HTTP with plain httpx."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest
from doubles.openai import OpenAIDouble, ScriptedRun
from doubles.openai.server import ApiCall, Route, ServerCore, StreamEvent, StreamReply
from doubles.openapi_spec import get_validator, require_spec

API_KEY = "sk-test-0123456789abcdef"
BETA_HEADERS = {"OpenAI-Beta": "assistants=v2"}
ANSWER_EVENTS = [
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
]
RUN_START_EVENTS = ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    require_spec()
    with OpenAIDouble(API_KEY) as server:
        yield server


@pytest.fixture
def client(double: OpenAIDouble) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_KEY}", **BETA_HEADERS}
    with httpx.Client(base_url=double.base_url, headers=headers, timeout=10) as http:
        yield http


def read_events(response: httpx.Response) -> list[tuple[str, Any]]:
    """Parse a server-sent event stream into (event, data) pairs; data is JSON except for [DONE]."""
    events: list[tuple[str, Any]] = []
    name: str | None = None
    data_lines: list[str] = []
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data_lines.append(line.removeprefix("data: "))
        elif not line and name is not None:
            data = "\n".join(data_lines)
            events.append((name, data if data == "[DONE]" else json.loads(data)))
            name, data_lines = None, []
    return events


def stream(client: httpx.Client, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return read_events(response)


def names(events: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in events]


def streamed_text(events: list[tuple[str, Any]]) -> str:
    return "".join(
        part["text"]["value"]
        for name, data in events
        if name == "thread.message.delta"
        for part in data["delta"]["content"]
    )


def new_thread_with_question(client: httpx.Client, question: str = "hello there") -> tuple[str, str]:
    """Create an assistant and a thread holding one user message; return their ids."""
    assistant = client.post("/assistants", json={"model": "gpt-4o-mini", "name": "Helper"}).json()
    thread = client.post("/threads", json={"messages": [{"role": "user", "content": question}]}).json()
    return assistant["id"], thread["id"]


def test_whole_streamed_conversation(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant = client.post(
        "/assistants", json={"model": "gpt-4o-mini", "name": "Helper", "instructions": "Be brief."}
    ).json()
    assert re.fullmatch(r"asst_[0-9a-f]+", assistant["id"])
    thread = client.post("/threads", json={}).json()
    assert re.fullmatch(r"thread_[0-9a-f]+", thread["id"])
    message = client.post(f"/threads/{thread['id']}/messages", json={"role": "user", "content": "What is up?"})
    assert message.status_code == 200
    assert message.json()["content"] == [{"type": "text", "text": {"value": "What is up?", "annotations": []}}]

    events = stream(client, f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})

    assert names(events) == [
        *RUN_START_EVENTS,
        *ANSWER_EVENTS,
        "thread.message.delta",
        "thread.message.delta",
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
        "done",
    ]
    assert events[-1] == ("done", "[DONE]")
    assert streamed_text(events) == "Echo: What is up?"
    run = events[-2][1]
    assert run["status"] == "completed" and run["instructions"] == "Be brief."
    assert run["usage"]["total_tokens"] == run["usage"]["prompt_tokens"] + run["usage"]["completion_tokens"] > 0

    listed = client.get(f"/threads/{thread['id']}/messages", params={"order": "asc"}).json()
    assert [m["role"] for m in listed["data"]] == ["user", "assistant"]
    answer = listed["data"][1]
    assert answer["status"] == "completed" and answer["run_id"] == run["id"]
    assert answer["content"][0]["text"]["value"] == "Echo: What is up?"
    assert client.get(f"/threads/{thread['id']}/runs/{run['id']}").json()["status"] == "completed"
    steps = client.get(f"/threads/{thread['id']}/runs/{run['id']}/steps").json()["data"]
    assert [(s["type"], s["status"]) for s in steps] == [("message_creation", "completed")]
    assert steps[0]["step_details"]["message_creation"]["message_id"] == answer["id"]
    assert double.thread_messages(thread["id"])[1]["id"] == answer["id"]
    assert [r["id"] for r in double.runs_of(thread["id"])] == [run["id"]]
    assert [a["id"] for a in double.assistants()] == [assistant["id"]]
    double.assert_no_violations()


def test_scripted_answer_is_streamed_in_chunks_with_delay(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant_id, thread_id = new_thread_with_question(client)
    double.script(ScriptedRun(text="Hello from the model", chunks=4, chunk_delay=0.05))

    started = time.monotonic()
    events = stream(client, f"/threads/{thread_id}/runs", {"assistant_id": assistant_id})

    assert time.monotonic() - started >= 0.15
    deltas = [data for name, data in events if name == "thread.message.delta"]
    assert len(deltas) == 4
    assert streamed_text(events) == "Hello from the model"
    double.assert_no_violations()


def test_create_thread_and_run_streams_thread_first(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant = client.post("/assistants", json={"model": "gpt-4o"}).json()
    body = {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "hi"}]}}

    events = stream(client, "/threads/runs", body)

    assert names(events)[:2] == ["thread.created", "thread.run.created"]
    assert names(events)[-2:] == ["thread.run.completed", "done"]
    assert streamed_text(events) == "Echo: hi"
    double.assert_no_violations()


def test_polling_mode_moves_one_status_per_retrieval(double: OpenAIDouble, client: httpx.Client) -> None:
    double.streaming = False
    assistant_id, thread_id = new_thread_with_question(client, "poll me")

    created = client.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant_id, "stream": True})

    assert created.headers["content-type"].startswith("application/json")
    run = created.json()
    assert run["status"] == "queued"
    run_url = f"/threads/{thread_id}/runs/{run['id']}"
    assert client.get(run_url).json()["status"] == "in_progress"
    assert len(double.thread_messages(thread_id)) == 1, "the answer must not exist before the run completes"
    final = client.get(run_url).json()
    assert final["status"] == "completed" and final["usage"] is not None
    assert client.get(run_url).json()["status"] == "completed"
    answer = client.get(f"/threads/{thread_id}/messages", params={"run_id": run["id"]}).json()["data"]
    assert [m["content"][0]["text"]["value"] for m in answer] == ["Echo: poll me"]
    double.assert_no_violations()


def test_tool_calls_then_streamed_submission(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant_id, thread_id = new_thread_with_question(client, "weather in Oslo?")
    double.script(ScriptedRun(tool_calls=[("get_weather", {"city": "Oslo"}), ("get_time", {})]))

    first = stream(client, f"/threads/{thread_id}/runs", {"assistant_id": assistant_id})

    assert names(first) == [
        *RUN_START_EVENTS,
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.run.requires_action",
        "done",
    ]
    run = first[-2][1]
    tool_calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_time", {}),
    ]
    blocked = client.post(f"/threads/{thread_id}/messages", json={"role": "user", "content": "more"})
    assert blocked.status_code == 400

    outputs = [
        {"tool_call_id": tool_calls[0]["id"], "output": "sunny"},
        {"tool_call_id": tool_calls[1]["id"], "output": "noon"},
    ]
    second = stream(client, f"/threads/{thread_id}/runs/{run['id']}/submit_tool_outputs", {"tool_outputs": outputs})

    assert names(second)[:3] == ["thread.run.step.completed", "thread.run.queued", "thread.run.in_progress"]
    assert names(second)[-2:] == ["thread.run.completed", "done"]
    assert streamed_text(second) == 'Tool results: ["sunny", "noon"]'
    assert [o["output"] for o in double.submitted_tool_outputs] == ["sunny", "noon"]
    steps = client.get(f"/threads/{thread_id}/runs/{run['id']}/steps", params={"order": "asc"}).json()["data"]
    assert [s["type"] for s in steps] == ["tool_calls", "message_creation"]
    assert [c["function"]["output"] for c in steps[0]["step_details"]["tool_calls"]] == ["sunny", "noon"]
    double.assert_no_violations()


def test_tool_outputs_must_answer_every_call(double: OpenAIDouble, client: httpx.Client) -> None:
    double.streaming = False
    assistant_id, thread_id = new_thread_with_question(client)
    double.script(ScriptedRun(tool_calls=[("lookup", {"q": "x"})], text_after_tools="Found it."))
    run = client.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant_id}).json()
    run_url = f"/threads/{thread_id}/runs/{run['id']}"
    client.get(run_url)
    waiting = client.get(run_url).json()
    assert waiting["status"] == "requires_action"

    wrong = client.post(
        f"{run_url}/submit_tool_outputs", json={"tool_outputs": [{"tool_call_id": "call_x", "output": "1"}]}
    )
    assert wrong.status_code == 400

    call_id = waiting["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    submitted = client.post(
        f"{run_url}/submit_tool_outputs", json={"tool_outputs": [{"tool_call_id": call_id, "output": "1"}]}
    )
    assert submitted.json()["status"] == "queued"
    assert client.get(run_url).json()["status"] == "in_progress"
    assert client.get(run_url).json()["status"] == "completed"
    assert double.thread_messages(thread_id)[-1]["content"][0]["text"]["value"] == "Found it."
    double.assert_no_violations()


@pytest.mark.parametrize(
    ("scripted", "field", "expected"),
    [
        (
            ScriptedRun(status="failed", last_error={"code": "rate_limit_exceeded", "message": "Slow down."}),
            "last_error",
            {"code": "rate_limit_exceeded", "message": "Slow down."},
        ),
        (
            ScriptedRun(status="failed"),
            "last_error",
            {"code": "server_error", "message": "Sorry, something went wrong."},
        ),
        (ScriptedRun(status="incomplete"), "incomplete_details", {"reason": "max_completion_tokens"}),
        # Timestamps are expected as of when the test runs, not when the suite was collected minutes earlier.
        (ScriptedRun(status="expired"), "expires_at", lambda: pytest.approx(time.time() + 600, abs=60)),
        (ScriptedRun(status="cancelled"), "cancelled_at", lambda: pytest.approx(time.time(), abs=60)),
    ],
    ids=["failed-scripted-error", "failed-default-error", "incomplete", "expired", "cancelled"],
)
def test_runs_end_in_scripted_status(
    double: OpenAIDouble, client: httpx.Client, scripted: ScriptedRun, field: str, expected: Any
) -> None:
    assistant_id, thread_id = new_thread_with_question(client)
    double.script(scripted)

    events = stream(client, f"/threads/{thread_id}/runs", {"assistant_id": assistant_id})

    assert names(events)[-2:] == [f"thread.run.{scripted.status}", "done"]
    run = client.get(f"/threads/{thread_id}/runs/{events[-2][1]['id']}").json()
    assert run["status"] == scripted.status and run[field] == (expected() if callable(expected) else expected)
    assert (run["usage"] is not None) == (scripted.status == "incomplete")
    assert [m["role"] for m in double.thread_messages(thread_id)] == ["user"], "no answer unless one is scripted"
    double.assert_no_violations()


def test_a_scripted_partial_answer_ends_incomplete(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant_id, thread_id = new_thread_with_question(client)
    double.script(ScriptedRun(text="The answer is cut", status="incomplete"))

    events = stream(client, f"/threads/{thread_id}/runs", {"assistant_id": assistant_id})

    assert names(events)[-4:] == [
        "thread.message.incomplete",
        "thread.run.step.completed",
        "thread.run.incomplete",
        "done",
    ]
    answer = double.thread_messages(thread_id)[-1]
    assert answer["content"][0]["text"]["value"] == "The answer is cut"
    assert (answer["status"], answer["incomplete_details"]) == ("incomplete", {"reason": "max_tokens"})
    double.assert_no_violations()


def test_stalled_run_blocks_the_thread_until_cancelled(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant_id, thread_id = new_thread_with_question(client)
    double.script(ScriptedRun(stall=True))
    run = client.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant_id}).json()
    run_url = f"/threads/{thread_id}/runs/{run['id']}"
    assert client.get(run_url).json()["status"] == "queued"
    assert client.get(run_url).json()["status"] == "queued"

    message = client.post(f"/threads/{thread_id}/messages", json={"role": "user", "content": "again"})
    second_run = client.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant_id})

    assert message.status_code == 400
    assert message.json()["error"]["message"] == f"Can't add messages to {thread_id} while a run {run['id']} is active."
    assert second_run.status_code == 400
    assert second_run.json()["error"]["message"] == f"Thread {thread_id} already has an active run {run['id']}."
    assert client.post(f"{run_url}/cancel").json()["status"] == "cancelling"
    cancelled = client.get(run_url).json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] is not None
    assert client.post(f"{run_url}/cancel").status_code == 400
    assert client.post(f"/threads/{thread_id}/messages", json={"role": "user", "content": "again"}).status_code == 200
    double.assert_no_violations()


def test_cancel_during_a_stream_ends_it_cancelled(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant_id, thread_id = new_thread_with_question(client)
    double.script(ScriptedRun(text="a slow and long answer", chunks=10, chunk_delay=0.1))
    events: list[tuple[str, Any]] = []

    def consume() -> None:
        events.extend(stream(client, f"/threads/{thread_id}/runs", {"assistant_id": assistant_id}))

    consumer = threading.Thread(target=consume)
    consumer.start()
    while not any(m["role"] == "assistant" for m in double.thread_messages(thread_id)):
        time.sleep(0.01)
    run_id = double.runs_of(thread_id)[0]["id"]
    assert client.post(f"/threads/{thread_id}/runs/{run_id}/cancel").json()["status"] == "cancelling"
    consumer.join(timeout=5)

    assert names(events)[-5:] == [
        "thread.run.cancelling",
        "thread.message.incomplete",
        "thread.run.step.cancelled",
        "thread.run.cancelled",
        "done",
    ]
    assert len([name for name in names(events) if name == "thread.message.delta"]) < 10
    answer = double.thread_messages(thread_id)[-1]
    assert (answer["status"], answer["incomplete_details"]) == ("incomplete", {"reason": "run_cancelled"})
    double.assert_no_violations()


def test_cut_stream_leaves_the_run_completed(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant_id, thread_id = new_thread_with_question(client, "resume me")
    double.cut_stream_after = 4

    received: list[tuple[str, Any]] = []
    with pytest.raises(httpx.RemoteProtocolError):
        body = {"assistant_id": assistant_id, "stream": True}
        with client.stream("POST", f"/threads/{thread_id}/runs", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    received.append((line.removeprefix("event: "), None))

    assert names(received) == [*RUN_START_EVENTS, "thread.run.step.created"]
    run = double.runs_of(thread_id)[0]
    assert client.get(f"/threads/{thread_id}/runs/{run['id']}").json()["status"] == "completed"
    assert double.thread_messages(thread_id)[-1]["content"][0]["text"]["value"] == "Echo: resume me"
    double.assert_no_violations()


def test_pagination_of_messages(double: OpenAIDouble, client: httpx.Client) -> None:
    thread = client.post("/threads", json={"messages": [{"role": "user", "content": str(n)} for n in range(5)]}).json()
    url = f"/threads/{thread['id']}/messages"
    ids = [m["id"] for m in double.thread_messages(thread["id"])]

    first = client.get(url, params={"order": "asc", "limit": 2}).json()
    second = client.get(url, params={"order": "asc", "limit": 2, "after": first["last_id"]}).json()
    newest = client.get(url, params={"limit": 2}).json()
    before = client.get(url, params={"order": "asc", "limit": 2, "before": ids[3]}).json()

    assert [m["id"] for m in first["data"]] == ids[:2] and first["has_more"] is True
    assert (first["first_id"], first["last_id"]) == (ids[0], ids[1])
    assert [m["id"] for m in second["data"]] == ids[2:4] and second["has_more"] is True
    assert [m["id"] for m in newest["data"]] == [ids[4], ids[3]]
    assert [m["id"] for m in before["data"]] == ids[1:3] and before["has_more"] is True
    empty = client.get(url, params={"after": ids[0]}).json()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    double.assert_no_violations()


def test_unknown_ids_are_404_in_openai_words(double: OpenAIDouble, client: httpx.Client) -> None:
    missing_thread = client.get("/threads/thread_nope")
    _, thread_id = new_thread_with_question(client)
    missing_run = client.get(f"/threads/{thread_id}/runs/run_nope")
    missing_assistant = client.post(f"/threads/{thread_id}/runs", json={"assistant_id": "asst_nope"})
    unknown_url = client.get("/nothing/here")

    assert missing_thread.status_code == 404
    assert missing_thread.json() == {
        "error": {
            "message": "No thread found with id 'thread_nope'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert missing_run.json()["error"]["message"] == "No run found with id 'run_nope'."
    assert missing_assistant.json()["error"]["message"] == "No assistant found with id 'asst_nope'."
    assert unknown_url.status_code == 404
    assert unknown_url.json()["error"]["message"] == "Invalid URL (GET /v1/nothing/here)"
    double.assert_no_violations()


def test_bearer_auth_and_beta_header(double: OpenAIDouble) -> None:
    no_key = httpx.get(f"{double.base_url}/models")
    wrong_key = httpx.get(f"{double.base_url}/models", headers={"Authorization": "Bearer sk-wrong-key-123456"})
    no_beta = httpx.get(f"{double.base_url}/assistants", headers={"Authorization": f"Bearer {API_KEY}"})
    good = httpx.get(f"{double.base_url}/models", headers={"Authorization": f"Bearer {API_KEY}"})

    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "invalid_request_error"
    assert wrong_key.status_code == 401 and wrong_key.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-key-123456" not in wrong_key.json()["error"]["message"]
    assert no_beta.status_code == 400 and "OpenAI-Beta: assistants=v2" in no_beta.json()["error"]["message"]
    assert good.status_code == 200
    assert "ft:gpt-4o-mini:acme::abc123" in [m["id"] for m in good.json()["data"]]
    for response in (no_key, wrong_key, no_beta, good):
        assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers["x-request-id"])
    assert len(double.requests_to("GET", r"/v1/models$")) == 3
    double.assert_no_violations()


def test_query_token_authenticates_in_gateway_mode() -> None:
    require_spec()
    with OpenAIDouble(require_query_token=("api_token", "tok")) as gateway:
        allowed = httpx.get(f"{gateway.base_url}/models", params={"api_token": "tok"})
        refused = httpx.get(f"{gateway.base_url}/models", headers={"Authorization": "Bearer sk-anything"})

        assert allowed.status_code == 200
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert gateway.requests[0].query == {"api_token": "tok"}
        gateway.assert_no_violations()


def test_fail_next_injects_errors_before_normal_handling(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant_id, thread_id = new_thread_with_question(client)
    double.fail_next("POST", r"/runs$", status=429, headers={"Retry-After": "2"}, times=2)
    double.fail_next("POST", r"/moderations$", status=429, code="insufficient_quota")

    throttled = [client.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant_id}) for _ in range(2)]
    accepted = client.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant_id})
    no_quota = client.post("/moderations", json={"input": "hi"})

    assert [r.status_code for r in throttled] == [429, 429]
    assert throttled[0].headers["retry-after"] == "2"
    assert throttled[0].json()["error"]["type"] == "requests"
    assert accepted.status_code == 200
    assert no_quota.status_code == 429
    assert no_quota.json()["error"]["code"] == "insufficient_quota"
    assert len(double.requests_to("POST", r"/runs$")) == 3
    double.assert_no_violations()


def test_moderation_flags_are_scriptable(double: OpenAIDouble, client: httpx.Client) -> None:
    double.moderation_flags = {"kill": ["violence"]}

    results = client.post("/moderations", json={"input": ["How do I kill a process?", "Hello"]}).json()["results"]

    assert [r["flagged"] for r in results] == [True, False]
    assert results[0]["categories"]["violence"] is True and results[0]["categories"]["hate"] is False
    assert results[0]["category_scores"]["violence"] > 0.5 > results[1]["category_scores"]["violence"]
    double.assert_no_violations()


def test_malformed_request_is_a_violation_answered_400(double: OpenAIDouble, client: httpx.Client) -> None:
    _, thread_id = new_thread_with_question(client)

    bad_role = client.post(f"/threads/{thread_id}/messages", json={"role": "bot", "content": "hi"})
    bad_json = client.post("/threads", content=b"{not json", headers={"Content-Type": "application/json"})

    assert bad_role.status_code == 400 and bad_role.json()["error"]["type"] == "invalid_request_error"
    assert "$.role" in bad_role.json()["error"]["message"]
    assert bad_json.status_code == 400
    assert len(double.violations) == 2
    assert "$.role" in double.violations[0] and "'bot' is not one of" in double.violations[0]
    assert len(double.thread_messages(thread_id)) == 1, "a rejected message must not be stored"
    with pytest.raises(AssertionError, match=r"\$\.role"):
        double.assert_no_violations()


def test_reset_forgets_everything(double: OpenAIDouble, client: httpx.Client) -> None:
    _, thread_id = new_thread_with_question(client)
    double.script(ScriptedRun(text="unused"))
    double.streaming = False
    double.require_query_token = ("api_token", "tok")

    double.reset()

    assert double.requests == [] and double.assistants() == [] and double.streaming is True
    assert double.require_query_token is None
    assert client.get(f"/threads/{thread_id}").status_code == 404
    assistant_id, thread_id = new_thread_with_question(client, "after reset")
    events = stream(client, f"/threads/{thread_id}/runs", {"assistant_id": assistant_id})
    assert streamed_text(events) == "Echo: after reset", "the scripted run must be forgotten"


def test_validator_reports_broken_bodies_with_their_location() -> None:
    require_spec()
    validator = get_validator()
    run = {"id": "run_1", "object": "thread.run", "status": "sleeping"}

    response_problems = validator.validate_response("GET", "/v1/threads/thread_1/runs/run_1", status=200, body=run)
    delta_without_index = {"id": "msg_1", "object": "thread.message.delta", "delta": {"content": [{"type": "text"}]}}
    event_problems = validator.validate_stream_event("thread.message.delta", delta_without_index)
    form_problems = validator.validate_request(
        "POST",
        "/v1/audio/transcriptions",
        query={},
        body={"file": b"RIFF", "model": "whisper-1", "temperature": "warm", "timestamp_granularities[]": "word"},
        content_type="multipart/form-data; boundary=x",
    )
    query_problems = validator.validate_request(
        "GET", "/v1/threads/thread_1/messages", query={"order": "sideways"}, body=None, content_type=None
    )

    assert any("$.status" in p and "'sleeping'" in p for p in response_problems)
    assert any("'thread_id' is a required property" in p for p in response_problems)
    assert any("$.delta.content[0]" in p and "'index'" in p for p in event_problems)
    assert form_problems == [
        "request POST /v1/audio/transcriptions body: at $.temperature: 'warm' is not of type 'number'"
    ]
    assert len(query_problems) == 1 and "'sideways' is not one of ['asc', 'desc']" in query_problems[0]
    assert validator.validate_stream_event("done", "[DONE]") == []
    assert validator.validate_response("GET", "/v1/threads/x", status=500, body={"error": {"message": "x"}}) != []


# -- server shapes, what the model saw, and the core's streams ----------------------------------------


def test_shapes_refuse_the_families_a_real_server_lacks() -> None:
    require_spec()
    headers = {"Authorization": f"Bearer {API_KEY}", **BETA_HEADERS}
    with (
        OpenAIDouble(API_KEY, shape="openai") as server,
        httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as http,
    ):
        no_assistants = http.get("/assistants")
        no_threads = http.post("/threads", json={})
        files_served = http.post("/files", files={"file": ("a.txt", b"hi")}, data={"purpose": "user_data"})

        server.shape = "chat_only"
        no_files = http.get(f"/files/{files_served.json()['id']}")
        moderated = http.post("/moderations", json={"input": "hello"})
        server.reset()
        after_reset = http.get("/assistants")

        assert no_assistants.status_code == 404
        assert no_assistants.json() == {
            "error": {
                "message": "Invalid URL (GET /v1/assistants)",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        assert no_threads.status_code == 404
        assert no_threads.json()["error"]["message"] == "Invalid URL (POST /v1/threads)"
        assert files_served.status_code == 200
        assert no_files.status_code == 404 and no_files.json()["error"]["message"].startswith("Invalid URL (GET")
        assert moderated.status_code == 200
        assert server.shape == "openai" and after_reset.status_code == 404
        assert server.threads() == [], "a refused request must not reach the family"
        server.assert_no_violations()
    with pytest.raises(ValueError, match="shape must be one of"):
        OpenAIDouble(API_KEY, shape="gateway")


def test_model_inputs_record_what_the_model_saw(double: OpenAIDouble, client: httpx.Client) -> None:
    assistant = client.post("/assistants", json={"model": "gpt-4o-mini", "instructions": "Be brief."}).json()
    thread = client.post("/threads", json={"messages": [{"role": "user", "content": "first"}]}).json()
    stream(client, f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    client.post(f"/threads/{thread['id']}/messages", json={"role": "user", "content": "second"})
    double.script(ScriptedRun(tool_calls=[("lookup", {"q": "x"})]))
    events = stream(client, f"/threads/{thread['id']}/runs", {"assistant_id": assistant["id"]})
    run = events[-2][1]
    call_id = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    tool_outputs = {"tool_outputs": [{"tool_call_id": call_id, "output": "found"}]}
    stream(client, f"/threads/{thread['id']}/runs/{run['id']}/submit_tool_outputs", tool_outputs)

    first_call = [("system", "Be brief."), ("user", "first")]
    second_call = [*first_call, ("assistant", "Echo: first"), ("user", "second")]
    assert double.model_inputs() == [first_call, second_call, [*second_call, ("tool", "found")]]
    assert double.model_inputs("chat") == []
    assert double.model_calls == 3
    assert double.user_texts_seen() == ["first", "second"]
    double.reset()
    assert double.model_inputs() == [] and double.user_texts_seen() == []


class _ListedEvents:
    """A StreamSource over fixed events that says "wait" once before the first, as a slow job does."""

    def __init__(self, events: list[StreamEvent]) -> None:
        self._pending: list[StreamEvent | Literal["wait"]] = ["wait", *events]
        self.chunk_delay = 0.0
        self.first_token_delay = 0.0
        self.released = False

    def next_event(self) -> StreamEvent | None | Literal["wait"]:
        return self._pending.pop(0) if self._pending else None

    def release(self) -> None:
        self._pending = [event for event in self._pending if event != "wait"]
        self.released = True


class _FakeChatFamily:
    """POST /chat/completions answering the chunks a test gives, as data-only server-sent events."""

    name = "chat"

    def __init__(self, core: ServerCore) -> None:
        self.chunks: list[dict[str, Any]] = []
        self.sources: list[_ListedEvents] = []

    def routes(self) -> list[Route]:
        return [Route.of("POST", "/chat/completions", self._complete)]

    def reset(self) -> None:
        self.chunks, self.sources = [], []

    def _complete(self, call: ApiCall) -> StreamReply:
        source = _ListedEvents([StreamEvent(None, chunk) for chunk in self.chunks])
        self.sources.append(source)
        return StreamReply(source, done=StreamEvent(None, "[DONE]"), validate_as="chat")


def _chunk(content: str, finish_reason: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content else {}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


@pytest.fixture
def chat_core() -> Iterator[tuple[ServerCore, _FakeChatFamily]]:
    require_spec()
    core = ServerCore(API_KEY)
    family = _FakeChatFamily(core)
    core.register(family)
    core.start()
    yield core, family
    core.stop()


def _post_chat(core: ServerCore) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return httpx.post(f"{core.base_url}/chat/completions", json=body, headers=headers, timeout=10)


def test_a_data_only_stream_has_no_event_lines_and_ends_with_done(
    chat_core: tuple[ServerCore, _FakeChatFamily],
) -> None:
    core, family = chat_core
    family.chunks = [_chunk("Hel"), _chunk("lo"), _chunk("", "stop")]

    response = _post_chat(core)

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    blocks = response.text.split("\n\n")
    assert blocks[-1] == "" and blocks[-2] == "data: [DONE]"
    assert [json.loads(block.removeprefix("data: ")) for block in blocks[:-2]] == family.chunks
    assert "event:" not in response.text
    assert family.sources[0].released, "the core releases a source once its stream ends"
    assert core.violations == []


def test_stream_events_off_the_spec_are_violations(chat_core: tuple[ServerCore, _FakeChatFamily]) -> None:
    core, family = chat_core
    family.chunks = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}]

    _post_chat(core)

    assert len(core.violations) == 2
    assert all(problem.startswith("chat completion chunk: at $: ") for problem in core.violations)
    assert {"'choices' is a required property", "'created' is a required property"} == {
        problem.split(": ")[-1] for problem in core.violations
    }


def test_a_cut_stream_releases_its_source(chat_core: tuple[ServerCore, _FakeChatFamily]) -> None:
    core, family = chat_core
    family.chunks = [_chunk("a"), _chunk("b"), _chunk("", "stop")]
    core.cut_stream_after = 1

    with pytest.raises(httpx.RemoteProtocolError):
        _post_chat(core)

    assert family.sources[0].released
    assert family.sources[0].next_event() == StreamEvent(None, family.chunks[2]), "the core stops pulling at the cut"


def test_validator_checks_responses_events_by_their_type() -> None:
    require_spec()
    validator = get_validator()
    delta = {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hi",
        "sequence_number": 3,
        "logprobs": [],
    }

    assert validator.validate_stream_event("response.output_text.delta", delta, api="responses") == []
    misnamed = validator.validate_stream_event("response.output_text.done", delta, api="responses")
    assert misnamed == [
        "response stream event response.output_text.delta: the event line says 'response.output_text.done'"
    ]
    without_sequence = {key: value for key, value in delta.items() if key != "sequence_number"}
    assert validator.validate_stream_event("response.output_text.delta", without_sequence, api="responses") == [
        "response stream event response.output_text.delta: at $: 'sequence_number' is a required property"
    ]
    unknown = validator.validate_stream_event("response.thinking", {"type": "response.thinking"}, api="responses")
    assert unknown == [
        "response stream event response.thinking: data type 'response.thinking' is not an event of ResponseStreamEvent"
    ]
    assert validator.validate_stream_event(None, "[DONE]", api="chat") == []
    assert validator.validate_stream_event("message", "[DONE]", api="chat") == [
        "chat completion chunk: chunks carry no event line, got 'message'"
    ]


# Responses: web search, reasoning models, expiring containers -------------------------------------------------


def test_a_scripted_web_search_streams_its_call_and_cites_its_sources(
    double: OpenAIDouble, client: httpx.Client
) -> None:
    double.script(ScriptedRun(text="It rained.", web_sources=[("It rained.", "https://w.example/r", "Weather")]))
    events = stream(client, "/responses", {"model": "gpt-4o", "input": "weather?", "tools": [{"type": "web_search"}]})

    names = [name for name, _ in events]
    search = names.index("response.web_search_call.in_progress")
    assert names[search : search + 3] == [
        f"response.web_search_call.{p}" for p in ("in_progress", "searching", "completed")
    ]
    response = events[-1][1]["response"]
    assert [item["type"] for item in response["output"]] == ["web_search_call", "message"]
    [citation] = response["output"][1]["content"][0]["annotations"]
    assert citation == {
        "type": "url_citation",
        "url": "https://w.example/r",
        "title": "Weather",
        "start_index": 0,
        "end_index": 10,
    }
    double.assert_no_violations()


def test_reasoning_parameters_are_refused_where_the_model_does_not_take_them(client: httpx.Client) -> None:
    refused = client.post("/responses", json={"model": "gpt-4o", "input": "hi", "reasoning": {"effort": "low"}})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "reasoning.effort"
    refused = client.post("/responses", json={"model": "o3", "input": "hi", "temperature": 0.2})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "temperature"
    assert (
        client.post("/responses", json={"model": "o3", "input": "hi", "reasoning": {"effort": "low"}}).status_code
        == 200
    )


def test_a_reasoning_model_reports_its_summary_only_when_asked(double: OpenAIDouble, client: httpx.Client) -> None:
    for summary in (None, "auto"):
        double.script(ScriptedRun(text="Yes.", reasoning_summary=["Thinking it over."]))
        reasoning = {"summary": summary} if summary else {}
        events = stream(client, "/responses", {"model": "o4-mini", "input": "ok?", "reasoning": reasoning})
        done = [data["text"] for name, data in events if name == "response.reasoning_summary_text.done"]
        assert done == (["Thinking it over."] if summary else [])
        assert events[-1][1]["response"]["output"][0]["type"] == "reasoning"
    double.assert_no_violations()


def test_an_expired_container_refuses_the_conversation_until_its_calls_are_deleted(
    double: OpenAIDouble, client: httpx.Client
) -> None:
    chart = double.add_output_file("/mnt/data/c.png", b"PNG")
    double.script(
        ScriptedRun(text="See sandbox:/mnt/data/c.png", annotations=[("file_path", "sandbox:/mnt/data/c.png", chart)])
    )
    conversation = client.post("/conversations", json={"items": [{"role": "user", "content": "chart"}]}).json()["id"]
    assert client.post("/responses", json={"model": "gpt-4o", "conversation": conversation}).status_code == 200
    with double.core.lock:
        double.core.family("containers").expire_all()

    refused = client.post("/responses", json={"model": "gpt-4o", "conversation": conversation})
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "Container is expired."
    items = client.get(f"/conversations/{conversation}/items").json()["data"]
    [call] = [item for item in items if item["type"] == "code_interpreter_call"]
    assert client.delete(f"/conversations/{conversation}/items/{call['id']}").status_code == 200
    assert client.delete(f"/conversations/{conversation}/items/{call['id']}").status_code == 404
    assert client.post("/responses", json={"model": "gpt-4o", "conversation": conversation}).status_code == 200
    double.assert_no_violations()

"""What each backend asked of the model, through the OpenAI double, for tests that run on every backend."""

from __future__ import annotations

import re
from typing import Any

# The requests that make the model produce an answer (or continue one after tool outputs).
ANSWER_REQUESTS = {
    "assistants": r"^/v1/threads(/[^/]+)?/runs$|/submit_tool_outputs$",
    "responses": r"^/v1/responses$",
    "chat": r"^/v1/chat/completions$",
}
# The requests that stop the model's work on the server (chat has none: closing the stream stops it).
CANCEL_REQUESTS = {
    "assistants": r"^/v1/threads/[^/]+/runs/[^/]+/cancel$",
    "responses": r"^/v1/responses/[^/]+/cancel$",
    "chat": r"$^",
}


def answer_requests(openai: Any, backend: str) -> list[Any]:
    return openai.requests_to("POST", ANSWER_REQUESTS[backend])


def first_answer_requests(openai: Any, backend: str) -> list[Any]:
    """The requests that started a model's answer (not those that only carried tool outputs back)."""
    pattern = re.compile(ANSWER_REQUESTS[backend])
    return [
        request
        for request in openai.requests
        if request.method == "POST" and pattern.search(request.path) and not _carries_tool_outputs(request, backend)
    ]


def cancel_requests(openai: Any, backend: str) -> list[Any]:
    return openai.requests_to("POST", CANCEL_REQUESTS[backend])


def function_tool_names(request: Any, backend: str) -> list[str]:
    """The names of our function tools a request offered the model."""
    tools = (request.body or {}).get("tools") or []
    if backend == "responses":
        return [tool["name"] for tool in tools if tool.get("type") == "function"]
    return [tool["function"]["name"] for tool in tools if tool.get("type") == "function"]


def _carries_tool_outputs(request: Any, backend: str) -> bool:
    body = request.body or {}
    if backend == "assistants":
        return request.path.endswith("/submit_tool_outputs")
    if backend == "responses":
        items = body.get("input") if isinstance(body.get("input"), list) else []
        return any(item.get("type") == "function_call_output" for item in items)
    messages = body.get("messages") or []
    return bool(messages) and messages[-1].get("role") == "tool"


# The built-in tools each backend can run, which the assistant editor offers (chat runs only our functions).
BUILTIN_TOOLS_OFFERED = {
    "responses": ("file_search", "code_interpreter", "web_search", "image_generation"),
    "assistants": ("file_search", "code_interpreter"),
    "chat": (),
}


def answer_models(openai: Any, backend: str) -> list[str]:
    """The model that made each answer, in order (an Assistants run takes its assistant's model unless told)."""
    requests = first_answer_requests(openai, backend)
    if backend != "assistants":
        return [request.body["model"] for request in requests]
    runs_seen: dict[str, int] = {}
    models = []
    for request in requests:
        thread_id = request.path.split("/")[3]
        index = runs_seen.get(thread_id, 0)
        runs_seen[thread_id] = index + 1
        models.append(openai.runs_of(thread_id)[index]["model"])
    return models


def builtin_tool_names(request: Any) -> list[str]:
    """The built-in tools (not our functions) a request offered the model; the same shape on every API."""
    return [tool["type"] for tool in (request.body or {}).get("tools") or [] if tool.get("type") != "function"]


def server_memories(openai: Any, backend: str) -> list[str]:
    """The conversation memories the server keeps (threads, conversations); chat keeps them in the bot's database."""
    if backend == "assistants":
        return [thread["id"] for thread in openai.threads()]
    if backend == "responses":
        with openai.core.lock:
            return list(openai.core.family("conversations").conversations)
    return []


def answers_stopped(openai: Any, backend: str) -> int:
    """How many answers were stopped halfway: cancelled on the server, or (chat) their stream closed early.

    A chat completion is no job on the server: the bot stops it by closing the stream, which the double sees.
    """
    if backend == "assistants":
        runs = [run for thread in openai.threads() for run in openai.runs_of(thread["id"])]
        return sum(run["status"] == "cancelled" for run in runs)
    if backend == "responses":
        return sum(response["status"] == "cancelled" for response in openai.core.family("responses").response_objects())
    return len([path for path in openai.core.hung_up_streams() if re.search(ANSWER_REQUESTS["chat"], path)])


# The requests that hand a user's message to the conversation's memory (chat: the bot's own, sent with every ask).
MESSAGE_REQUESTS = {
    "assistants": r"^/v1/threads/[^/]+/messages$",
    "responses": r"^/v1/conversations/[^/]+/items$",
    "chat": r"^/v1/chat/completions$",
}
# How a scripted answer's ending (ScriptedAnswer.status) reaches the bot on each API: Responses has no `expired`
# (such a response fails), and a chat completion has no run to end badly, so its failures are HTTP errors.
ENDINGS_AS_REPORTED = {
    "assistants": {"failed": "failed", "expired": "expired", "cancelled": "cancelled", "incomplete": "incomplete"},
    "responses": {"failed": "failed", "expired": "failed", "cancelled": "cancelled", "incomplete": "incomplete"},
    "chat": {"failed": "http_error", "expired": "http_error", "cancelled": "http_error", "incomplete": "incomplete"},
}
# Whether a request whose answer was lost is asked again: a chat completion leaves nothing on the server to look up
# or follow, so asking again is how it is recovered (the other APIs' work is found and followed instead).
ASKED_AGAIN_AFTER_A_LOST_ANSWER = {"assistants": False, "responses": False, "chat": True}


def conversations_seen(openai: Any) -> list[list[tuple[str, str]]]:
    """What each model call saw of its conversation, oldest call first: (role, text) pairs without the instructions."""
    return [[(role, text) for role, text in call if role != "system"] for call in openai.model_inputs()]


def user_texts_with(openai: Any, text: str) -> list[str]:
    """The user texts of the newest model call that saw `text` from a user: that conversation's messages, oldest first."""
    for call in reversed(openai.model_inputs()):
        users = [seen for role, seen in call if role == "user"]
        if text in users:
            return users
    raise AssertionError(f"no model call saw the user text {text!r}")


def reported_usage(openai: Any, backend: str) -> list[tuple[int, int]]:
    """(prompt, completion) tokens the API reported for each model call, oldest first."""
    if backend == "assistants":
        runs = [run for thread in openai.threads() for run in openai.runs_of(thread["id"])]
        return [(run["usage"]["prompt_tokens"], run["usage"]["completion_tokens"]) for run in runs if run.get("usage")]
    if backend == "responses":
        responses = openai.core.family("responses").response_objects()
        return [(r["usage"]["input_tokens"], r["usage"]["output_tokens"]) for r in responses if r.get("usage")]
    with openai.core.lock:
        usages = list(openai.core.family("chat").usages)
    return [(usage["prompt_tokens"], usage["completion_tokens"]) for usage in usages]


POLL_REQUESTS = {
    "assistants": r"^/v1/threads/[^/]+/runs/[^/]+$",
    "responses": r"^/v1/responses/[^/]+$",
}


def answer_polls(openai: Any, backend: str) -> list[Any]:
    """The requests that looked at an answer's progress by id (a chat completion has no id to look at)."""
    return openai.requests_to("GET", POLL_REQUESTS[backend])


# Model calls for an answer cut off once on its way (its worker stopped, killed or superseded) and then taken up:
# runs and responses go on on the server and are followed by id; a chat completion ends with its stream, so the
# bot asks again from its history.
MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER = {"assistants": 1, "responses": 1, "chat": 2}
# How many stream events an answer's stream sends up to and including its first text delta, where the answer
# goes on without its stream (a chat completion ends with it).
EVENTS_TO_FIRST_TEXT = {
    "assistants": 8,  # run created, queued, in_progress; step created, in_progress; message created, in_progress
    "responses": 5,  # response created, in_progress; output item added; content part added
}
# The request that starts a conversation's memory on the server; chat keeps it in the bot, so its one request
# (the completion) is the first.
CONVERSATION_START_REQUESTS = {
    "assistants": r"^/v1/threads$",
    "responses": r"^/v1/conversations$",
    "chat": r"^/v1/chat/completions$",
}


def interrupted_answer_script(answer: Any, backend: str) -> list[Any]:
    """What the model says for one answer that is interrupted once: the answer, again where it is asked again."""
    return [answer] * MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER[backend]


def answer_ids(openai: Any, backend: str) -> list[str]:
    """The ids of the answers the server works on (runs, responses), oldest first; a chat completion has none."""
    if backend == "assistants":
        return [run["id"] for thread in openai.threads() for run in openai.runs_of(thread["id"])]
    if backend == "responses":
        return [response["id"] for response in openai.core.family("responses").response_objects()]
    return []

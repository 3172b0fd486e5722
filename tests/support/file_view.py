"""What the model got of the files people shared, on each backend, as the OpenAI double holds it.

Each backend has its own file strategy: responses uploads to /files, searches documents through the
conversation's vector store and hands data files to the code interpreter's container; assistants
does the same through thread attachments; chat uploads nothing, sending images as data URLs and
documents' text inline (or their best passages, when long). These views answer the same questions
on all three: which images, documents and data files did the newest model call get?
"""

from __future__ import annotations

import base64
import re
from typing import Any

# Whether a backend keeps shared files on the server (/files, vector stores); chat never calls /files.
KEEPS_FILES_ON_SERVER = {"responses": True, "assistants": True, "chat": False}

_INLINE_DOCUMENT = re.compile(r'<document name="([^"]+)">')
_RETRIEVED_PASSAGE = re.compile(r'<passage file="([^"]+)"')


def uploads(openai: Any) -> list[Any]:
    """Every upload to /files, oldest first."""
    return openai.requests_to("POST", r"^/v1/files$")


def images_seen(openai: Any, backend: str) -> list[bytes]:
    """The images of the newest user message the model was given, as their bytes."""
    if backend == "chat":
        urls = [
            part["image_url"]["url"]
            for part in _parts(_newest_chat_user_message(openai))
            if part.get("type") == "image_url"
        ]
        return [base64.b64decode(url.partition(",")[2]) for url in urls]
    if backend == "responses":
        file_ids = [
            part["file_id"]
            for part in _parts(_newest_conversation_user_item(openai))
            if part.get("type") == "input_image"
        ]
    else:
        file_ids = [
            part["image_file"]["file_id"]
            for part in _parts(_newest_thread_user_message(openai))
            if part.get("type") == "image_file"
        ]
    return [openai.file_content(file_id) for file_id in file_ids]


def documents_seen(openai: Any, backend: str) -> set[str]:
    """The names of the shared documents the newest model call could read: by file search, or given inline."""
    if backend == "chat":
        texts = [_text(message) for message in _newest_body(openai, backend)["messages"]]
        return {
            name
            for text in texts
            for pattern in (_INLINE_DOCUMENT, _RETRIEVED_PASSAGE)
            for name in pattern.findall(text)
        }
    return {_file_names(openai)[file_id] for file_id in searched_file_ids(openai, backend)}


def searched_file_ids(openai: Any, backend: str) -> list[str]:
    """The API file ids the newest model call's file search reads (indexed in its vector stores), oldest first."""
    if backend == "responses":
        tools = _newest_body(openai, backend).get("tools") or []
        store_ids = [
            store_id for tool in tools if tool["type"] == "file_search" for store_id in tool["vector_store_ids"]
        ]
    elif backend == "assistants":
        thread_id = _newest_thread_id(openai)
        [thread] = [thread for thread in openai.threads() if thread["id"] == thread_id]
        # A run's tools replace its assistant's: an attachment is searched only if the run has file_search.
        searches = any(tool["type"] == "file_search" for tool in openai.runs_of(thread_id)[-1]["tools"])
        store_ids = thread["tool_resources"].get("file_search", {}).get("vector_store_ids", []) if searches else []
    else:
        raise ValueError("the chat backend has no file search")
    missing = set(store_ids) - {store["id"] for store in openai.vector_stores()}
    if missing:
        raise AssertionError(f"the model was pointed at vector stores the server does not have: {sorted(missing)}")
    return [
        indexed["id"]
        for store_id in store_ids
        for indexed in openai.vector_store_files(store_id)
        if indexed["status"] == "completed"
    ]


def code_interpreter_files(openai: Any, backend: str) -> set[str]:
    """The names of the files the newest model call's code interpreter gets to compute on."""
    if backend == "responses":
        tools = _newest_body(openai, backend).get("tools") or []
        file_ids = [
            file_id
            for tool in tools
            if tool["type"] == "code_interpreter"
            for file_id in tool["container"].get("file_ids", [])
        ]
    elif backend == "assistants":
        thread_id = _newest_thread_id(openai)
        runs = any(tool["type"] == "code_interpreter" for tool in openai.runs_of(thread_id)[-1]["tools"])
        file_ids = (
            [
                attachment["file_id"]
                for message in openai.thread_messages(thread_id)
                if message["role"] == "user"
                for attachment in message.get("attachments") or []
                if {"type": "code_interpreter"} in attachment["tools"]
            ]
            if runs
            else []
        )
    else:
        raise ValueError("the chat backend has no code interpreter")
    names = _file_names(openai)
    return {names[file_id] for file_id in file_ids}


# -- the newest model call, per API ------------------------------------------------------------------

_ANSWER_PATHS = {
    "responses": r"^/v1/responses$",
    "assistants": r"^/v1/threads/[^/]+/runs$",
    "chat": r"^/v1/chat/completions$",
}


def _newest_request(openai: Any, backend: str) -> Any:
    requests = openai.requests_to("POST", _ANSWER_PATHS[backend])
    if not requests:
        raise AssertionError(f"the model was never asked on {backend}")
    return requests[-1]


def _newest_body(openai: Any, backend: str) -> dict[str, Any]:
    return _newest_request(openai, backend).body


def _newest_thread_id(openai: Any) -> str:
    return _newest_request(openai, "assistants").path.split("/")[3]


def _newest_thread_user_message(openai: Any) -> dict[str, Any]:
    return [message for message in openai.thread_messages(_newest_thread_id(openai)) if message["role"] == "user"][-1]


def _newest_conversation_user_item(openai: Any) -> dict[str, Any]:
    conversation_id = _newest_body(openai, "responses")["conversation"]
    items = openai.core.family("conversations").items_of(conversation_id)
    return [item for item in items if item.get("type") == "message" and item["role"] == "user"][-1]


def _newest_chat_user_message(openai: Any) -> dict[str, Any]:
    return [message for message in _newest_body(openai, "chat")["messages"] if message["role"] == "user"][-1]


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or () if part.get("type") == "text")


def _file_names(openai: Any) -> dict[str, str]:
    return {file["id"]: file["filename"] for file in openai.files()}

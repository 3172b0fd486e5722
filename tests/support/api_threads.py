"""What the assistant was told: the user messages of an Assistants API thread on the OpenAI double."""

from __future__ import annotations

from typing import Any


def user_contents(openai: Any, thread_id: str) -> list[str]:
    """The text parts of the thread's user messages, oldest first."""
    return [
        part["text"]["value"]
        for message in openai.thread_messages(thread_id)
        if message["role"] == "user"
        for part in message["content"]
        if part["type"] == "text"
    ]

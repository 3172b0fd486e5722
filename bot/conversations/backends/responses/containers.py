"""Code interpreter containers that expired under a conversation, replaced without the person noticing.

With ``{"type": "auto"}`` the API runs the code in the container of the conversation's earlier
``code_interpreter_call`` while that container lives, and makes a new one otherwise. A container
expires after 20 idle minutes, and then the API refuses a response whose context still holds a
call bound to it (HTTP 400, "Container is expired"; seen 2025-2026). The conversation keeps its
messages; only the calls bound to dead containers are deleted, and the data files shared in it go
into the new container with the request (the tool's ``file_ids``), as on every turn.
"""

from __future__ import annotations

import logging

from bot.conversations.backends.openai_files import unless_gone
from bot.errors import APIStatusError
from bot.openai_api.responses import ResponsesAPI

log = logging.getLogger(__name__)


def refuses_expired_container(error: APIStatusError) -> bool:
    message = error.message.lower()
    return "container" in message and ("expired" in message or "expected container" in message)


async def drop_expired_container_calls(api: ResponsesAPI, conversation_id: str) -> int:
    """Delete the conversation's code interpreter calls, so that its next response gets a fresh container.

    Every call is dropped, not only those of one container: the error does not reliably name it, the
    calls are the model's scratch work (its answers, which cite the files, stay), and the containers
    of older calls expired before the newest one's did.
    """
    calls = [
        item for item in await api.items_after(conversation_id, None) if item.get("type") == "code_interpreter_call"
    ]
    for call in calls:
        await unless_gone(api.delete_item(conversation_id, call["id"]))
    log.info(
        "conversation %s: code interpreter container expired; removed %d calls bound to it", conversation_id, len(calls)
    )
    return len(calls)

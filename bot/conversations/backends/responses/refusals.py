"""Sending a response request, mending the refusals the bot can mend and sending it once more.

A 400 means the API started nothing, so sending again never makes a second response. Two refusals
are mended: an expired code interpreter container bound to the conversation (see containers.py),
and reasoning summaries the organisation may not get (they are then left out for the process's life).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from bot.conversations.backends.responses.containers import drop_expired_container_calls, refuses_expired_container
from bot.conversations.backends.responses.reasoning import refuses_summaries
from bot.errors import BadRequestError
from bot.openai_api.client import SSEvent
from bot.openai_api.responses import ResponsesAPI

log = logging.getLogger(__name__)


class ResponseRequests:
    """POST /responses as a stream, with refusals mended once each per request."""

    def __init__(self, api: ResponsesAPI) -> None:
        self._api = api
        self.reasoning_summaries = True  # off once the API refused them: it would refuse every request

    async def stream(self, conversation_id: str, body: Callable[[], dict[str, Any]]) -> AsyncGenerator[SSEvent, None]:
        """The response's events; ``body`` is asked again after each mend, since a mend may change it."""
        mended: set[str] = set()
        while True:
            async with aclosing(self._api.stream_response(body())) as events:
                try:
                    first = await anext(events)
                except StopAsyncIteration:
                    return
                except BadRequestError as exc:
                    mend = await self._mend(exc, conversation_id=conversation_id, mended=mended)
                    if not mend:
                        raise
                    continue
                yield first
                async for event in events:
                    yield event
                return

    async def _mend(self, error: BadRequestError, *, conversation_id: str, mended: set[str]) -> bool:
        if refuses_expired_container(error) and "container" not in mended:
            mended.add("container")
            await drop_expired_container_calls(self._api, conversation_id)
            return True
        if refuses_summaries(error) and self.reasoning_summaries:
            self.reasoning_summaries = False
            log.warning("the API refuses reasoning summaries (%s); answering without them from now on", error)
            return True
        return False

"""Importing an Assistants API assistant (OPENAI_ASSISTANT_ID) as the default profile of the Responses backend."""

from __future__ import annotations

import logging

from bot.conversations.backends.assistants.api import AssistantsAPI
from bot.conversations.backends.assistants.profiles import profile_of
from bot.conversations.profiles import Profile
from bot.errors import APIError, NotFoundError
from bot.openai_api.client import OpenAIClient

log = logging.getLogger(__name__)


async def import_assistant_profile(client: OpenAIClient, assistant_id: str) -> Profile | None:
    """The assistant's name, model, instructions, built-in tools and reasoning effort as a profile; None when it
    cannot be read.

    Servers shaped like api.openai.com today no longer serve assistants: that 404 is logged once (the
    catalog asks once) and the settings' default profile is used instead; it never fails a turn.
    """
    try:
        assistant = await AssistantsAPI(client).retrieve_assistant(assistant_id)
    except NotFoundError as exc:
        log.warning("OPENAI_ASSISTANT_ID is not served here (%s); using the configured default profile", exc)
        return None
    except APIError as exc:
        log.warning("could not import the assistant of OPENAI_ASSISTANT_ID (%s); using the configured default", exc)
        return None
    return profile_of(assistant) if assistant.model else None

"""Driving a model backend through the answer contract: built by name with real deps, and reading its events.

``backend_harness(name, ...)`` builds a backend the way the wiring does (its PLUGIN, a migrated store,
an OpenAIClient against the OpenAI double shaped like that backend's server, a real profiles table)
and hands back a Harness that builds AnswerRequests. The ``contract`` fixture does this once per
backend, for the suite that runs unchanged against each (tests/test_backend_contract.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import BACKEND_SHAPES, OPENAI_KEY

from bot.app import BACKENDS, default_profile
from bot.conversations.backend import (
    AnswerRequest,
    Backend,
    BackendEvent,
    Checkpoint,
    Completed,
    ConversationRef,
    Failed,
    InputFile,
    StateChanged,
    UserInput,
)
from bot.conversations.backends import BackendDeps
from bot.conversations.profiles import Profile, TableProfileCatalog
from bot.conversations.tools import ToolContext, ToolRegistry, builtin_tools
from bot.conversations.turn import HistoryMessage, Surface, Turn
from bot.openai_api.client import OpenAIClient
from bot.openai_api.files import FilesAPI
from bot.settings import Settings
from bot.store.db import create_engine, migrate, session_factory
from bot.store.files import ApiFileRecords
from bot.store.profiles import ProfileRecords
from bot.store.repositories import Store

TURN = Turn(
    event_id="Ev0",
    team_id="T1",
    channel_id="C1",
    thread_key="1.0",
    surface=Surface.CHANNEL,
    user_id="U0ADA",
    user_name="Ada",
    text="hi",
    message_ts="1.0",
    reply_thread_ts="1.0",
)
# The default profile every backend answers with (the Assistants API's default assistant is made from it).
DEFAULT_SETTINGS: dict[str, Any] = {
    "assistant_name": "Helper",
    "assistant_model": "gpt-4o-mini",
    "assistant_instructions": "Be brief.",
    # Short waits, so that a recovery that polls until a deadline gives up quickly.
    "run_poll_max_seconds": 0.05,
    "run_queued_deadline_seconds": 1.0,
}

# The requests whose answer a lost-answer test loses, per backend: the one that adds the batch's
# messages to the conversation, and the one that starts the model's answer.
LOST_ANSWERS: dict[str, dict[str, tuple[str, str]]] = {
    "responses": {
        "adding": ("POST", r"^/v1/conversations/[^/]+/items$"),
        "answering": ("POST", r"^/v1/responses$"),
    },
    "assistants": {
        "adding": ("POST", r"^/v1/threads/[^/]+/messages$"),
        "answering": ("POST", r"^/v1/threads/[^/]+/runs$"),
    },
    "chat": {
        "answering": ("POST", r"^/v1/chat/completions$"),  # the bot's own history: nothing to add on the server
    },
}


@dataclass
class Harness:
    """One backend with its deps, and one conversation to answer batches in."""

    backend: Backend
    client: OpenAIClient
    store: Store
    profile_records: ProfileRecords
    conversation: ConversationRef
    history: list[HistoryMessage] = field(default_factory=list)  # what the Slack thread held before
    history_calls: int = 0
    tools: ToolRegistry = field(default_factory=builtin_tools)

    async def _history(self) -> Sequence[HistoryMessage]:
        self.history_calls += 1
        return self.history

    async def request(
        self,
        *inputs: UserInput,
        state: dict | None = None,
        progress: dict | None = None,
        attempt: int = 1,
        profile: Profile | None = None,
    ) -> AnswerRequest:
        """A batch of inputs, answered with the given profile or else the backend's default."""
        return AnswerRequest(
            conversation=self.conversation,
            state=state,
            progress=progress,
            inputs=inputs,
            history=self._history,
            profile=profile or await self.backend.profiles.default(),
            tools=self.tools,
            tool_context=ToolContext(TURN),
            attempt=attempt,
        )

    async def answer(
        self, *inputs: UserInput, state: dict | None = None, progress: dict | None = None, attempt: int = 1
    ) -> list[BackendEvent]:
        """Every event of one batch, read to the end."""
        request = await self.request(*inputs, state=state, progress=progress, attempt=attempt)
        return await collect(self.backend.answer(request))

    async def answer_until(
        self, stop: Callable[[BackendEvent], bool], *inputs: UserInput, state: dict | None = None
    ) -> list[BackendEvent]:
        """The events of a batch up to the first one ``stop`` picks; then the reader dies (stops and closes)."""
        seen: list[BackendEvent] = []
        answering = self.backend.answer(await self.request(*inputs, state=state))
        try:
            async for event in answering:
                seen.append(event)
                if stop(event):
                    break
        finally:
            await answering.aclose()
        return seen


@asynccontextmanager
async def backend_harness(
    name: str, *, openai_double: Any, database_url: str, **settings: Any
) -> AsyncIterator[Harness]:
    """The named backend, built through its PLUGIN as the wiring builds it, on a freshly migrated database.

    The OpenAI double takes the shape of the server this backend is meant for; ``settings`` override
    DEFAULT_SETTINGS.
    """
    openai_double.shape = BACKEND_SHAPES[name]
    engine = create_engine(database_url)
    await migrate(engine)
    store = Store(session_factory(engine))
    row = await store.get_or_create_conversation(team_id="T1", channel_id="C1", thread_key="1.0", surface="channel")
    client = OpenAIClient(api_key=OPENAI_KEY, base_url=openai_double.base_url, max_retries=1, backoff_base=0.01)
    configured = Settings(  # type: ignore[call-arg]
        _env_file=None,
        slack_bot_token="xoxb-test",
        openai_api_key=OPENAI_KEY,
        openai_base_url=openai_double.base_url,
        **{**DEFAULT_SETTINGS, **settings},
    )
    records = ProfileRecords(store)
    deps = BackendDeps(
        client=client,
        files=FilesAPI(client),
        store=store,
        file_records=ApiFileRecords(store),
        table_profiles=TableProfileCatalog(records, configured_default=default_profile(configured, BACKENDS[name])),
        settings=configured,
    )
    try:
        yield Harness(BACKENDS[name].build(deps), client, store, records, ConversationRef(row.id, "T1", "C1", "1.0"))
    finally:
        await client.aclose()
        await engine.dispose()


@pytest.fixture
async def contract(backend: str, openai_double: Any, sqlite_url: str) -> AsyncIterator[Harness]:
    """The backend of this parameter (conftest's ``backend``), for tests that run unchanged against each."""
    async with backend_harness(backend, openai_double=openai_double, database_url=sqlite_url) as harness:
        yield harness


# Reading events ----------------------------------------------------------------------------------


async def collect(events: AsyncIterator[BackendEvent]) -> list[BackendEvent]:
    return [event async for event in events]


def final(events: Sequence[BackendEvent]) -> Completed | Failed:
    """The batch's one ending, which must be its last event."""
    ends = [event for event in events if isinstance(event, (Completed, Failed))]
    assert len(ends) == 1 and events[-1] is ends[0], f"not exactly one ending, last: {events[-1:]}"
    return ends[0]


def last_state(events: Sequence[BackendEvent]) -> dict:
    return [event.state for event in events if isinstance(event, StateChanged)][-1]


def state_of(events: Sequence[BackendEvent]) -> dict:
    """The one state a batch announced."""
    [changed] = [event for event in events if isinstance(event, StateChanged)]
    return changed.state


def checkpoints(events: Sequence[BackendEvent]) -> list[dict]:
    return [event.progress for event in events if isinstance(event, Checkpoint)]


def last_progress(events: Sequence[BackendEvent]) -> dict:
    return checkpoints(events)[-1]


def said(key: str, text: str, *files: InputFile) -> UserInput:
    return UserInput(key=key, text=text, files=files)


def texts_of(seen: Sequence[tuple[str, str]], role: str) -> list[str]:
    """The texts of one role in what the model saw at one call (see OpenAIDouble.model_inputs)."""
    return [text for who, text in seen if who == role]

"""The store on SQLite and PostgreSQL: migrations match the models, keys and leases hold."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from bot.store.channels import ChannelStore
from bot.store.db import create_engine, migrate, session_factory
from bot.store.models import Base, Conversation, TurnStatus
from bot.store.repositories import Store


async def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    await migrate(engine)
    await migrate(engine)  # a second run finds nothing to do
    async with engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata)
        )
    await engine.dispose()
    assert differences == []


async def _conversation(store: Store, team: str = "T1", channel: str = "C1", key: str = "1.0"):
    return await store.get_or_create_conversation(team_id=team, channel_id=channel, thread_key=key, surface="channel")


async def _record(store: Store, conversation: Conversation, event_id: str) -> bool:
    conversation_id, recorded = await store.record_arriving_turn(
        team_id=conversation.team_id,
        channel_id=conversation.channel_id,
        thread_key=conversation.thread_key,
        surface=conversation.surface,
        event_id=event_id,
        user_id="U1",
        message_ts="1.0",
        payload={"text": "hi"},
    )
    assert conversation_id == conversation.id
    return recorded


async def test_a_slack_event_is_recorded_once_per_workspace(store: Store) -> None:
    first = await _conversation(store)
    other_team = await _conversation(store, team="T2")
    assert other_team.id != first.id
    assert await _record(store, first, "Ev1") is True
    assert await _record(store, first, "Ev1") is False
    assert await _record(store, other_team, "Ev1") is True
    turns = await store.open_turns(first.id)
    assert [turn.event_id for turn in turns] == ["Ev1"]
    assert turns[0].status == TurnStatus.PENDING.value
    assert (await store.get_turn(team_id="T2", event_id="Ev1")).conversation_id == other_team.id


async def test_conversations_are_found_by_team_channel_and_thread(store: Store) -> None:
    created = await _conversation(store, key="100.1")
    again = await _conversation(store, key="100.1")
    assert again.id == created.id
    assert await store.find_conversation(team_id="T1", channel_id="C1", thread_key="100.1") is not None
    assert await store.find_conversation(team_id="T2", channel_id="C1", thread_key="100.1") is None
    assert await store.find_conversation(team_id="T1", channel_id="C2", thread_key="100.1") is None
    await store.set_backend_state(created.id, backend="responses", state={"conversation_id": "conv_abc"})
    stored = await store.get_conversation(created.id)
    assert (stored.backend, stored.backend_state) == ("responses", {"conversation_id": "conv_abc"})


async def test_concurrent_creation_yields_one_conversation(store: Store) -> None:
    results = await asyncio.gather(*(_conversation(store, key="7.7") for _ in range(5)))
    assert len({conversation.id for conversation in results}) == 1


async def test_a_lease_belongs_to_one_worker_until_it_expires(store: Store) -> None:
    conversation = await _conversation(store)
    await _record(store, conversation, "Ev1")
    assert await store.conversations_needing_work() == [conversation.id]
    assert await store.claim_conversation(conversation.id, owner="a", lease_seconds=60) is True
    assert await store.claim_conversation(conversation.id, owner="b", lease_seconds=60) is False
    assert await store.conversations_needing_work() == []
    assert await store.claim_conversation(conversation.id, owner="a", lease_seconds=-1) is True  # renew (expired)
    assert await store.conversations_needing_work() == [conversation.id]
    assert await store.claim_conversation(conversation.id, owner="b", lease_seconds=60) is True
    await store.release_conversation(conversation.id, owner="a")  # not a's any more: no effect
    assert await store.claim_conversation(conversation.id, owner="c", lease_seconds=60) is False
    await store.release_conversation(conversation.id, owner="b")
    assert await store.claim_conversation(conversation.id, owner="c", lease_seconds=60) is True


async def test_turns_move_through_their_states(store: Store) -> None:
    conversation = await _conversation(store)
    await _record(store, conversation, "Ev1")
    await _record(store, conversation, "Ev2")
    turns = await store.open_turns(conversation.id)
    await store.start_turns([turns[0].id])
    await store.record_progress([turns[0].id], {"response_id": "resp_1"})
    running = await store.get_turn(team_id="T1", event_id="Ev1")
    assert (running.status, running.attempts, running.backend_progress) == ("running", 1, {"response_id": "resp_1"})
    await store.update_turns([turns[0].id], status=TurnStatus.ANSWERED.value, reply_ts="5.5")
    done = await store.get_turn(team_id="T1", event_id="Ev1")
    assert done.status == "answered" and done.finished_at is not None and done.reply_ts == "5.5"
    assert [turn.event_id for turn in await store.open_turns(conversation.id)] == ["Ev2"]


async def test_a_batch_is_claimed_with_its_turns_and_ended_with_its_lease_in_one_write_each(store: Store) -> None:
    conversation = await _conversation(store)
    await _record(store, conversation, "Ev1")
    await _record(store, conversation, "Ev2")
    [first, second] = await store.open_turns(conversation.id)
    await store.start_turns([first.id])
    assert await store.request_stop(conversation.id) is True  # asked of an answer that then ended by itself

    claimed = await store.claim_work(conversation.id, owner="a", lease_seconds=60)
    assert claimed is not None
    claimed_conversation, records = claimed
    assert claimed_conversation.id == conversation.id and claimed_conversation.lease_owner == "a"
    assert [record.event_id for record in records] == ["Ev1", "Ev2"]
    assert await store.stops_requested([conversation.id]) == set(), "an old stop must not stop the next answer"
    assert await store.claim_work(conversation.id, owner="b", lease_seconds=60) is None

    waiting = await store.finish_batch(
        conversation.id, owner="a", turn_ids=[first.id], status="answered", error=None, reply_ts="5.5", tokens=(7, 3)
    )
    assert waiting is True, "Ev2 still waits"
    done = await store.get_turn(team_id="T1", event_id="Ev1")
    assert (done.status, done.reply_ts, done.prompt_tokens, done.completion_tokens) == ("answered", "5.5", 7, 3)
    assert done.finished_at is not None
    assert await store.claim_work(conversation.id, owner="b", lease_seconds=60) is not None, "the lease went free"

    waiting = await store.finish_batch(
        conversation.id, owner="b", turn_ids=[second.id], status="failed", error="boom", reply_ts=None, tokens=None
    )
    assert waiting is False
    failed = await store.get_turn(team_id="T1", event_id="Ev2")
    assert (failed.status, failed.error, failed.prompt_tokens) == ("failed", "boom", None)


async def test_the_newest_turn_of_a_batch_carries_its_tokens(store: Store) -> None:
    conversation = await _conversation(store)
    await _record(store, conversation, "Ev1")
    await _record(store, conversation, "Ev2")
    ids = [turn.id for turn in await store.open_turns(conversation.id)]
    await store.claim_work(conversation.id, owner="a", lease_seconds=60)
    await store.finish_batch(
        conversation.id, owner="a", turn_ids=ids, status="answered", error=None, reply_ts="5.5", tokens=(10, 4)
    )
    older, newer = [await store.get_turn(team_id="T1", event_id=event) for event in ("Ev1", "Ev2")]
    assert (older.status, older.prompt_tokens) == ("answered", None)
    assert (newer.status, newer.prompt_tokens, newer.completion_tokens) == ("answered", 10, 4)


async def test_channel_settings_and_app_state(store: Store) -> None:
    assert await store.channel_profile(team_id="T1", channel_id="C1") is None
    await store.set_channel_profile(team_id="T1", channel_id="C1", profile_id="asst_x", updated_by="U1")
    await store.set_channel_profile(team_id="T1", channel_id="C1", profile_id="prof_y", updated_by="U2")
    assert await store.channel_profile(team_id="T1", channel_id="C1") == "prof_y"
    assert await store.channel_profile(team_id="T2", channel_id="C1") is None
    assert await store.put_state_once("default_assistant_id", "asst_first") == "asst_first"
    assert await store.put_state_once("default_assistant_id", "asst_second") == "asst_first"
    assert await store.get_state("default_assistant_id") == "asst_first"


async def test_assistants_rows_from_before_the_backends_keep_working(database_url: str) -> None:
    """Rows written by the Assistants-only bot (migration 0002) become `assistants` backend state and progress."""
    engine = create_engine(database_url)
    await migrate(engine, "0002")
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO conversations (id, team_id, channel_id, thread_key, surface, api_thread_id, assistant_id,"
                " vector_store_id) VALUES (1, 'T1', 'C1', '1.0', 'channel', 'thread_old', 'asst_1', 'vs_1'),"
                " (2, 'T1', 'C1', '2.0', 'channel', NULL, NULL, NULL)"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO turns (id, team_id, event_id, conversation_id, channel_id, user_id, message_ts, payload,"
                " status, api_message_id, run_id, attempts) VALUES"
                " (1, 'T1', 'Ev1', 1, 'C1', 'U1', '1.0', '{}', 'running', 'msg_1', 'run_1', 1)"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO retired_threads (conversation_id, team_id, api_thread_id, vector_store_id)"
                " VALUES (1, 'T1', 'thread_older', NULL)"
            )
        )
        await connection.execute(
            text("INSERT INTO channel_settings (team_id, channel_id, assistant_id) VALUES ('T1', 'C1', 'asst_9')")
        )
    await migrate(engine)
    store = Store(session_factory(engine))
    migrated = await store.get_conversation(1)
    assert (migrated.backend, migrated.backend_state) == (
        "assistants",
        {"thread_id": "thread_old", "vector_store_id": "vs_1"},
    )
    untouched = await store.get_conversation(2)
    assert (untouched.backend, untouched.backend_state) == (None, None)
    turn = await store.get_turn(team_id="T1", event_id="Ev1")
    assert turn.backend_progress == {"message_ids": {"Ev1": "msg_1"}, "run_id": "run_1"}
    memories = await ChannelStore(store).backend_states(1)
    assert [(memory.backend, memory.state) for memory in memories] == [
        ("assistants", {"thread_id": "thread_old", "vector_store_id": "vs_1"}),
        ("assistants", {"thread_id": "thread_older"}),
    ]
    assert await store.channel_profile(team_id="T1", channel_id="C1") == "asst_9"
    await engine.dispose()

"""DATA_ON_UNINSTALL=purge: a workspace that uninstalls leaves nothing behind, in the bot's database or on the API,
while the other workspace keeps everything; the purge survives a crash and a re-install; expired OAuth states go."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from doubles.openai import ScriptedRun
from doubles.slack.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from sqlalchemy import func, select, update
from support.bot_processes import turn_statuses
from support.commands import run_command
from support.feedback import rate
from support.model_view import server_memories
from support.oauth import ALPHA, BOTS, BRAVO, add_workspaces, ask, install, two_workspaces_answered, uninstall
from support.slack_view import bot_texts
from support.waiting import eventually
from support.workspace import ADA, CHANNEL

from bot.conversations.profiles import ProfileOrigin, ProfileSpec
from bot.conversations.retention import RetentionPurger
from bot.slack.oauth import INSTALL_PATH
from bot.store.channels import ChannelStore
from bot.store.db import create_engine, session_factory
from bot.store.limits import RATE_NOTICE_KEY
from bot.store.models import (
    SLACK_OAUTH_STATES,
    AppState,
    AssistantChange,
    Base,
    ChannelSetting,
    Conversation,
    DocumentChunk,
    McpApproval,
    McpServerRecord,
    McpToolCall,
    StoredProfile,
    WorkspacePurge,
)
from bot.store.repositories import Store
from bot.store.workspaces import WorkspaceRecords

pytestmark = pytest.mark.usefixtures("client_secret_never_shown")

# What stays of a purged workspace: the record that it was purged (its team id and when), for the operator.
PURGE_RECORD = "workspace_purges"
RATE_NOTICES = "app_state (rate-limit notices)"
# Tables a workspace's rows reach only through one of its conversations.
CONVERSATION_TABLES = [
    table.name for table in Base.metadata.sorted_tables if "conversation_id" in table.c and "team_id" not in table.c
]


async def rows_of(store: Store, team: str) -> dict[str, int]:
    """How many rows the workspace has in each table that holds any workspace's rows (every such table)."""
    counts = {}
    conversations = Conversation.__table__
    async with store.transaction() as session:
        for table in Base.metadata.sorted_tables:
            if table.name == PURGE_RECORD:
                continue
            if "team_id" in table.c:
                query = select(func.count()).select_from(table).where(table.c.team_id == team)
            elif table.name in CONVERSATION_TABLES:
                query = (
                    select(func.count())
                    .select_from(table.join(conversations, table.c.conversation_id == conversations.c.id))
                    .where(conversations.c.team_id == team)
                )
            else:
                continue  # the bot's own state: heartbeats, OAuth states, app state (but rate notices, below)
            counts[table.name] = await session.scalar(query) or 0
        notices = RATE_NOTICE_KEY.format(team_id=team, user_id="")
        counts[RATE_NOTICES] = (
            await session.scalar(select(func.count()).where(AppState.key.startswith(notices, autoescape=True))) or 0
        )
    return counts


async def orphans(store: Store) -> dict[str, int]:
    """Rows that still point at a conversation that is gone."""
    found = {}
    async with store.transaction() as session:
        for table in Base.metadata.sorted_tables:
            if "conversation_id" in table.c:
                count = await session.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(
                        table.c.conversation_id.is_not(None),
                        table.c.conversation_id.not_in(select(Conversation.id)),
                    )
                )
                if count:
                    found[table.name] = count
    return found


async def conversation_id(store: Store, team: str, thread_ts: str) -> int:
    async with store.transaction() as session:
        found = await session.scalar(
            select(Conversation.id).where(Conversation.team_id == team, Conversation.thread_key == thread_ts)
        )
    assert found is not None
    return found


async def add_records(store: Store, team: str, thread_ts: str) -> None:
    """What the workspace's admins and tools would leave besides its messages: a profile made in it and its
    audit, an MCP server with an approval and a tool call, a document's passages, a rate-limit notice."""
    in_thread = await conversation_id(store, team, thread_ts)
    async with store.transaction() as session:
        session.add_all(
            [
                StoredProfile(
                    id=f"prof_{team}",
                    name="Support",
                    model="gpt-4o",
                    instructions="Help.",
                    tools=[],
                    vector_store_ids=[],
                    team_id=team,
                    channel_id=CHANNEL,
                    created_by=ADA,
                ),
                AssistantChange(
                    team_id=team, channel_id=CHANNEL, user_id=ADA, action="create", to_profile_id=f"prof_{team}"
                ),
                McpServerRecord(
                    team_id=team,
                    label="tickets",
                    url="https://mcp.example.com",
                    allowed_tools=[],
                    approval="always",
                    approval_tools=[],
                    created_by=ADA,
                ),
                McpApproval(
                    approval_id=f"mcpr_{team}",
                    team_id=team,
                    conversation_id=in_thread,
                    channel_id=CHANNEL,
                    thread_ts=thread_ts,
                    asker_id=ADA,
                    server_label="tickets",
                    tool_name="open_ticket",
                    arguments="{}",
                    decision="approved",
                    expires_at=datetime.now(UTC) + timedelta(minutes=10),
                ),
                McpToolCall(
                    team_id=team,
                    conversation_id=in_thread,
                    server_label="tickets",
                    tool_name="open_ticket",
                    asked_by=ADA,
                    outcome="completed",
                ),
                DocumentChunk(
                    conversation_id=in_thread,
                    history_id=f"history-{team}",
                    file_key="F0DOC",
                    file_name="plan.pdf",
                    position=0,
                    text="The plan.",
                    embedding=[0.1, 0.2],
                ),
                AppState(key=RATE_NOTICE_KEY.format(team_id=team, user_id=ADA), value=datetime.now(UTC).isoformat()),
            ]
        )


def kept(counts: dict[str, int]) -> dict[str, int]:
    return {table: count for table, count in counts.items() if count}


async def purge_record(store: Store, team: str) -> WorkspacePurge | None:
    async with store.transaction() as session:
        return await session.get(WorkspacePurge, team)


# Everything goes, and only that workspace's --------------------------------------------------------------


async def test_with_purge_an_uninstalled_workspace_leaves_no_row_and_no_api_object_and_the_other_keeps_all(
    start_bot, slack_double, openai_double, backend
) -> None:
    openai_double.moderation_flags = {"hurt someone": ["violence"]}
    bot, threads = await two_workspaces_answered(
        start_bot, slack_double, data_on_uninstall="purge", admin_user_ids=[ADA]
    )
    for team in BOTS:
        await ask(bot, slack_double, team, "how do I hurt someone")  # refused, and recorded as a moderation event
        await run_command(bot, slack_double, "/assistant", "reply all", user=ADA, team_id=team)
        [answer] = slack_double.bot_messages(CHANNEL, thread_ts=threads[team], team_id=team)
        await rate(bot, slack_double, answer, user=ADA, value="good", team_id=team)
        await add_records(bot.bot.store, team, threads[team])
    # Each workspace's own assistant (/assistant create); on the Assistants API it lives on the server too.
    made = {
        team: await bot.bot.backend.profiles.create(
            ProfileSpec(name=f"Helper of {team}", model="gpt-4o-mini", instructions="Be brief.", tools=()),
            origin=ProfileOrigin(team_id=team, channel_id=CHANNEL, user_id=ADA),
        )
        for team in BOTS
    }
    store = bot.bot.store
    before = {team: await rows_of(store, team) for team in BOTS}
    # Each kind of row the workspace leaves is there to be purged (and the table check below covers every table).
    assert {
        "conversations",
        "turns",
        "channel_settings",
        "channel_setting_changes",
        "feedback",
        "moderation_events",
        "profiles",
        "assistant_changes",
        "mcp_servers",
        "mcp_approvals",
        "mcp_tool_calls",
        "document_chunks",
        "slack_installations",
        "slack_bots",
        RATE_NOTICES,
    } <= set(kept(before[ALPHA]))
    memories = server_memories(openai_double, backend)
    assert len(memories) == (0 if backend == "chat" else 2)  # chat keeps them in the bot's database

    await uninstall(bot, slack_double, ALPHA)  # waits for the purge, which runs after Slack got its 200

    assert kept(await rows_of(store, ALPHA)) == {}
    assert await rows_of(store, BRAVO) == before[BRAVO]
    assert await orphans(store) == {}
    finished = await purge_record(store, ALPHA)
    assert finished is not None and finished.finished_at is not None and finished.attempts == 1
    assert await purge_record(store, BRAVO) is None
    left = server_memories(openai_double, backend)
    if backend != "chat":
        assert len(left) == 1 and left[0] in memories
        assert openai_double.requests_to("DELETE", re.escape(next(m for m in memories if m not in left)))
    # The other workspace's conversation goes on where it was.
    await ask(bot, slack_double, BRAVO, "second question", thread_ts=threads[BRAVO])
    assert bot_texts(slack_double, CHANNEL, threads[BRAVO], team_id=BRAVO) == [
        "Echo: Ada of T0BRAVO: hello from T0BRAVO",
        "Echo: Ada of T0BRAVO: second question",
    ]
    assert server_memories(openai_double, backend) == left
    deleted_assistants = [request.path for request in openai_double.requests_to("DELETE", r"^/v1/assistants/")]
    if backend == "assistants":
        assert deleted_assistants == [f"/v1/assistants/{made[ALPHA].id}"]
        assert (await bot.bot.backend.profiles.get(made[BRAVO].id)).name == f"Helper of {BRAVO}"
    else:
        assert deleted_assistants == []  # the other backends keep profiles only in the bot's own table


# A re-install before the purge finished ------------------------------------------------------------------


@pytest.mark.backends(
    "responses", "assistants", reason="chat keeps no memory on the API, whose refusal leaves a purge unfinished"
)
async def test_a_workspace_installed_again_before_its_purge_finished_keeps_only_what_it_wrote_since(
    start_bot, slack_double, openai_double, backend
) -> None:
    add_workspaces(slack_double)
    bot = await start_bot(
        slack_bot_token=None,
        slack_client_id=DEFAULT_CLIENT_ID,
        slack_client_secret=DEFAULT_CLIENT_SECRET,
        data_on_uninstall="purge",
        admin_user_ids=[ADA],
    )
    store = bot.bot.store
    assert (await install(bot, slack_double, ALPHA)).status_code == 200
    old_thread, _ = await ask(bot, slack_double, ALPHA, "before the uninstall")
    await run_command(bot, slack_double, "/assistant", "reply all", user=ADA, team_id=ALPHA)
    [old_memory] = server_memories(openai_double, backend)
    # The API refuses to delete the conversation's memory once: the purge cannot finish at the uninstall.
    openai_double.fail_next("DELETE", re.escape(old_memory) + "$", status=403, code="permission_denied")
    await uninstall(bot, slack_double, ALPHA)
    pending = await purge_record(store, ALPHA)
    assert pending is not None and pending.finished_at is None
    assert old_memory in server_memories(openai_double, backend)
    # SQLite stamps rows to the second, so what is written in the uninstall's own second counts as before it.
    uninstalled_at = pending.requested_at.replace(tzinfo=UTC)
    await eventually(lambda: datetime.now(UTC).replace(microsecond=0) > uninstalled_at, what="the next second")

    assert (await install(bot, slack_double, ALPHA)).status_code == 200
    new_thread, _ = await ask(bot, slack_double, ALPHA, "after installing again")
    await run_command(bot, slack_double, "/assistant", "reply mention", user=ADA, team_id=ALPHA)
    # The retry time of the failed attempt comes (a minute, moved up): the bot's own sweep takes the purge up.
    async with store.transaction() as session:
        await session.execute(
            update(WorkspacePurge)
            .where(WorkspacePurge.team_id == ALPHA)
            .values(claim_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    async def purged() -> bool:
        record = await purge_record(store, ALPHA)
        return record is not None and record.finished_at is not None

    await eventually(purged, what="the purge finished by the bot's sweep")

    # What was there at the uninstall is gone, on the API too; what came after stays.
    assert len(server_memories(openai_double, backend)) == 1 and old_memory not in server_memories(
        openai_double, backend
    )
    async with store.transaction() as session:
        threads = set(await session.scalars(select(Conversation.thread_key).where(Conversation.team_id == ALPHA)))
        setting = await session.get(ChannelSetting, (ALPHA, CHANNEL))
    assert threads == {new_thread}
    assert setting is not None and setting.reply_mode == "mention"
    changes = await ChannelStore(store).setting_changes(team_id=ALPHA, channel_id=CHANNEL)
    # From the default: the first attempt deleted the channel's settings (only the conversation was refused).
    assert [(c.from_value, c.to_value) for c in changes] == [("thread", "mention")]
    finished = await purge_record(store, ALPHA)
    assert finished is not None and finished.finished_at is not None and finished.attempts == 2
    await ask(bot, slack_double, ALPHA, "still with me?", thread_ts=new_thread)
    assert bot_texts(slack_double, CHANNEL, new_thread, team_id=ALPHA) == [
        "Echo: Ada of T0ALPHA: after installing again",
        "Echo: Ada of T0ALPHA: still with me?",
    ]
    assert bot_texts(slack_double, CHANNEL, old_thread, team_id=ALPHA) == ["Echo: Ada of T0ALPHA: before the uninstall"]


# A crash in the middle of a purge ------------------------------------------------------------------------

# Long enough that the purge, waiting for that answer to end before forgetting its conversation, is killed
# while it waits. The restarted bot's purge then ends the answer's turn unanswered (no worker can answer it
# without the installation) and forgets the conversation.
SLOW_FIRST_TOKEN_SECONDS = 12.0


@pytest.mark.backends("responses", reason="a purge's durability is the same on every backend")
async def test_a_purge_killed_midway_is_resumed_by_the_restarted_bot_and_finishes_once(
    bot_processes, database_url, slack_double, openai_double
) -> None:
    add_workspaces(slack_double)
    oauth = {
        "SLACK_CLIENT_ID": DEFAULT_CLIENT_ID,
        "SLACK_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "DATA_ON_UNINSTALL": "purge",
    }
    first = bot_processes(database_url, **oauth)
    await first.wait_ready()
    for team in BOTS:
        assert (await install(first, slack_double, team)).status_code == 200
    threads = []
    # One after the other, so that the server's memories are in this order: two conversations of ALPHA, one of BRAVO.
    for team, text in ((ALPHA, "first thread"), (ALPHA, "second thread"), (BRAVO, "hello")):
        post = slack_double.human_posts(CHANNEL, ADA, f"<@{BOTS[team]}> {text}", team_id=team)
        for envelope in post.envelopes:
            assert (await first.deliver(envelope)).status_code == 200
        await eventually(
            lambda ts=post.ts, team=team: bot_texts(slack_double, CHANNEL, ts, team_id=team), what=f"{team} answered"
        )
        threads.append(post.ts)
    idle_memory, busy_memory, other_memory = server_memories(openai_double, "responses")
    engine = create_engine(database_url)
    store = Store(session_factory(engine))
    try:
        # ALPHA's second conversation is being answered again (the model slow to start) when the workspace uninstalls.
        openai_double.script(ScriptedRun(text="A slow answer.", first_token_delay=SLOW_FIRST_TOKEN_SECONDS))
        slow = slack_double.human_posts(
            CHANNEL, ADA, f"<@{BOTS[ALPHA]}> take your time", thread_ts=threads[1], team_id=ALPHA
        )
        for envelope in slow.envelopes:
            assert (await first.deliver(envelope)).status_code == 200

        def slow_answer_begun() -> bool:  # asked: it waits for the model's first token, making no Slack call
            return len(openai_double.requests_to("POST", r"/responses$")) == 4

        await eventually(slow_answer_begun, what="the slow answer begun")
        assert await turn_statuses(database_url) == ["answered", "answered", "answered", "running"]
        for envelope in slack_double.uninstall(ALPHA):
            assert (await first.deliver(envelope)).status_code == 200

        async def idle_conversation_forgotten() -> bool:
            return (await rows_of(store, ALPHA))["conversations"] == 1

        await eventually(idle_conversation_forgotten, what="the purge forgetting the idle conversation")
        first.kill()
        # Killed midway: the idle conversation forgotten (on the API too), the one being answered not yet.
        assert server_memories(openai_double, "responses") == [busy_memory, other_memory]
        midway = await purge_record(store, ALPHA)
        assert midway is not None and midway.finished_at is None and midway.attempts == 1

        second = bot_processes(database_url, **oauth)
        await second.wait_ready()

        async def purged() -> bool:
            record = await purge_record(store, ALPHA)
            return record is not None and record.finished_at is not None

        await eventually(purged, timeout=4 * SLOW_FIRST_TOKEN_SECONDS, what="the purge finished after the restart")
        assert kept(await rows_of(store, ALPHA)) == {}
        assert kept(await rows_of(store, BRAVO))["conversations"] == 1
        # Finished once, by the second bot: each of the workspace's memories deleted once, the other's kept.
        assert server_memories(openai_double, "responses") == [other_memory]
        deleted = [
            request.path.rsplit("/", 1)[-1] for request in openai_double.requests_to("DELETE", r"/conversations/")
        ]
        assert sorted(deleted) == sorted([idle_memory, busy_memory])
        finished = await purge_record(store, ALPHA)
        assert finished is not None and finished.attempts == 2
        assert "purge finished" not in first.log()
        assert second.log().count(f"workspace {ALPHA}: purge finished") == 1
        records = WorkspaceRecords(store)
        assert await records.unfinished_purges() == []
        assert await records.claim_purge(ALPHA, lease_seconds=60) is None  # no process takes it up again
    finally:
        await engine.dispose()


async def test_replicas_claiming_one_purge_at_once_give_it_to_exactly_one_until_its_process_is_gone(
    store: Store, database_url: str
) -> None:
    engine = create_engine(database_url)
    try:
        replicas = [store, *(Store(session_factory(engine)) for _ in range(3))]
        records = [WorkspaceRecords(replica) for replica in replicas]
        await records[0].request_purge(ALPHA)
        claims = await asyncio.gather(*(record.claim_purge(ALPHA, lease_seconds=600) for record in records))
        [winner] = [index for index, claim in enumerate(claims) if claim is not None]
        others = [record for index, record in enumerate(records) if index != winner]
        claim = claims[winner]
        assert claim is not None and claim.attempts == 1
        # An attempt that left something keeps the purge from the others until its retry time...
        assert await records[winner].end_purge(claim, finished=False, retry_seconds=600) is False
        assert [await record.claim_purge(ALPHA, lease_seconds=600) for record in others] == [None] * 3
        assert await others[0].unfinished_purges() == []
        # ...unless its process is gone: then the next one takes it up and finishes it, once.
        await replicas[winner].stop_beating()
        assert await others[0].unfinished_purges() == [ALPHA]
        again = await others[0].claim_purge(ALPHA, lease_seconds=600)
        assert again is not None and again.attempts == 2 and again.requested_at == claim.requested_at
        assert await others[1].claim_purge(ALPHA, lease_seconds=600) is None
        assert await others[0].end_purge(again, finished=True, retry_seconds=600) is True
        assert [await record.claim_purge(ALPHA, lease_seconds=600) for record in records] == [None] * 4
        assert await others[0].unfinished_purges() == []
    finally:
        await engine.dispose()


# Expired OAuth states -------------------------------------------------------------------------------


@pytest.mark.backends("responses", reason="OAuth states touch no backend")
async def test_expired_oauth_states_are_deleted_and_fresh_ones_kept(start_bot, slack_double) -> None:
    bot = await start_bot(
        slack_bot_token=None, slack_client_id=DEFAULT_CLIENT_ID, slack_client_secret=DEFAULT_CLIENT_SECRET
    )
    store = bot.bot.store
    async with httpx.AsyncClient(base_url=bot.url, timeout=10) as browser:
        for _ in range(3):  # three install pages opened, none approved
            assert (await browser.get(INSTALL_PATH)).status_code == 200
    async with store.transaction() as session:
        states = list(await session.scalars(select(SLACK_OAUTH_STATES.c.state).order_by(SLACK_OAUTH_STATES.c.id)))
        await session.execute(
            update(SLACK_OAUTH_STATES)
            .where(SLACK_OAUTH_STATES.c.state.in_(states[:2]))
            .values(expire_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1))
        )

    await RetentionPurger(store=store, backend=bot.bot.backend, retention_days=0).purge_once()

    async with store.transaction() as session:
        assert list(await session.scalars(select(SLACK_OAUTH_STATES.c.state))) == states[2:]

"""MCP servers, approvals and calls in the database: secrets encrypted, workspaces apart, decisions made once."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from bot.conversations.mcp import (
    ApprovalPolicy,
    ApprovalRequest,
    Decision,
    McpRefused,
    McpServer,
    checked_url,
)
from bot.errors import ConfigurationError
from bot.store.mcp import McpRecords, SecretBox
from bot.store.models import McpServerRecord, McpToolCall, TurnStatus
from bot.store.repositories import Store

KEY = Fernet.generate_key().decode()
SECRET = "mcp-header-secret-93c1"
TEAM, OTHER_TEAM = "T0TEAM", "T0OTHER"


def server(label: str = "crm", *, team_id: str = TEAM, header: str | None = "X-Api-Key") -> McpServer:
    return McpServer(
        team_id=team_id,
        label=label,
        url="https://mcp.example.com/mcp",
        allowed_tools=("lookup",),
        policy=ApprovalPolicy.PER_TOOL,
        approval_tools=("lookup",),
        secret_header=header,
    )


async def waiting_turn(store: Store) -> int:
    conversation_id, _ = await store.record_arriving_turn(
        team_id=TEAM,
        channel_id="C1",
        thread_key="1.0",
        surface="channel",
        event_id="Ev1",
        user_id="U0ADA",
        message_ts="1.0",
        payload={},
    )
    turns = await store.open_turns(conversation_id)
    await store.update_turns([turns[0].id], status=TurnStatus.WAITING.value, attempts=1)
    return conversation_id


def request(conversation_id: int, approval_id: str = "mcpr_1") -> ApprovalRequest:
    return ApprovalRequest(
        approval_id=approval_id,
        team_id=TEAM,
        conversation_id=conversation_id,
        channel_id="C1",
        thread_ts="1.0",
        asker_id="U0ADA",
        server_label="crm",
        tool_name="lookup",
        arguments='{"customer": "Acme"}',
    )


async def test_a_header_secret_is_stored_encrypted_listed_only_by_name_and_opened_for_the_request(store) -> None:
    records = McpRecords(store, secrets=SecretBox(KEY))
    await records.add_server(server(), secret=SECRET, created_by="U0ADA")

    async with store.transaction() as session:
        row = await session.scalar(select(McpServerRecord))
    assert row is not None and row.secret_ciphertext and SECRET not in row.secret_ciphertext
    listed = await records.servers(TEAM)
    assert [(s.label, s.secret_header) for s in listed] == [("crm", "X-Api-Key")]
    assert SECRET not in repr(listed)
    [access] = await records.access(TEAM, ["crm"])
    assert access.headers == {"X-Api-Key": SECRET}
    assert access.server.require_approval() == {"always": {"tool_names": ["lookup"]}}


async def test_another_workspace_never_reaches_a_server_of_the_same_label(store) -> None:
    records = McpRecords(store, secrets=SecretBox(KEY))
    await records.add_server(server(), secret=SECRET, created_by="U0ADA")
    assert await records.access(OTHER_TEAM, ["crm"]) == []
    assert await records.servers(OTHER_TEAM) == []
    assert await records.remove_server(OTHER_TEAM, "crm") is False
    assert await records.remove_server(TEAM, "crm") is True
    assert await records.access(TEAM, ["crm"]) == []


async def test_a_secret_is_refused_without_a_key_and_a_bad_key_stops_the_start() -> None:
    with pytest.raises(McpRefused, match="MCP_SECRET_KEY"):
        SecretBox(None).seal(SECRET)
    with pytest.raises(ConfigurationError, match="Fernet"):
        SecretBox("not-a-fernet-key")


async def test_a_secret_sealed_with_another_key_is_not_opened(store) -> None:
    await McpRecords(store, secrets=SecretBox(KEY)).add_server(server(), secret=SECRET, created_by="U0ADA")
    other = McpRecords(store, secrets=SecretBox(Fernet.generate_key().decode()))
    with pytest.raises(ConfigurationError) as raised:
        await other.access(TEAM, ["crm"])
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "loopback", "allowed"),
    [
        ("https://mcp.example.com/mcp", False, True),
        ("http://mcp.example.com/mcp", True, False),
        ("http://127.0.0.1:8000/mcp", False, False),
        ("http://127.0.0.1:8000/mcp", True, True),
        ("http://[::1]:8000/mcp", True, True),
        ("https://user:pw@mcp.example.com/mcp", False, False),
        ("mcp.example.com", False, False),
    ],
)
def test_only_https_urls_and_loopback_http_when_allowed_are_accepted(url: str, loopback: bool, allowed: bool) -> None:
    if allowed:
        assert checked_url(url, allow_http_loopback=loopback) == url
    else:
        with pytest.raises(McpRefused):
            checked_url(url, allow_http_loopback=loopback)


async def test_a_decision_is_made_once_and_reopens_the_waiting_turns_with_their_attempt_given_back(store) -> None:
    records = McpRecords(store, secrets=SecretBox(KEY))
    conversation_id = await waiting_turn(store)
    await records.add_approvals([request(conversation_id)], timeout_seconds=600)
    await records.add_approvals([request(conversation_id)], timeout_seconds=600)  # a resumed batch asks again

    first, second = await asyncio.gather(
        records.decide("mcpr_1", decision=Decision.APPROVED, user_id="U0ADA"),
        records.decide("mcpr_1", decision=Decision.DENIED, user_id="U0BOB"),
    )
    decided = [found for found in (first, second) if found is not None]
    assert len(decided) == 1
    [stored] = await records.approvals(["mcpr_1"])
    assert (stored.decision, stored.decided_by) == (decided[0].decision, decided[0].decided_by)
    [turn] = await store.open_turns(conversation_id)
    assert (turn.status, turn.attempts) == (TurnStatus.PENDING.value, 0)


async def test_a_request_past_its_timeout_is_due_and_one_within_it_is_not(store) -> None:
    records = McpRecords(store, secrets=SecretBox(KEY))
    conversation_id = await waiting_turn(store)
    await records.add_approvals([request(conversation_id, "mcpr_old")], timeout_seconds=0.01)
    await records.add_approvals([request(conversation_id, "mcpr_new")], timeout_seconds=600)
    await asyncio.sleep(0.05)
    assert [due.approval_id for due in await records.due()] == ["mcpr_old"]


async def test_turns_parked_after_their_only_request_was_decided_are_reopened(store) -> None:
    records = McpRecords(store, secrets=SecretBox(KEY))
    conversation_id = await waiting_turn(store)
    await records.add_approvals([request(conversation_id)], timeout_seconds=600)
    assert await records.reopen_decided() == []  # its request is still undecided
    # Decided before the batch was parked: the decision found no waiting turn to reopen.
    await records.decide("mcpr_1", decision=Decision.DENIED, user_id="U0ADA")
    # Only now parked (the race the sweep of decided waits is for).
    await store.update_turns(
        [turn.id for turn in await store.open_turns(conversation_id)], status=TurnStatus.WAITING.value
    )
    assert await records.reopen_decided() == [conversation_id]
    assert [turn.status for turn in await store.open_turns(conversation_id)] == [TurnStatus.PENDING.value]


async def test_a_call_read_again_from_its_response_is_recorded_once(store) -> None:
    records = McpRecords(store, secrets=SecretBox(KEY))
    conversation_id = await waiting_turn(store)
    call = {
        "team_id": TEAM,
        "conversation_id": conversation_id,
        "server_label": "crm",
        "tool_name": "lookup",
        "asked_by": "U0ADA",
        "outcome": "completed",
    }

    # A worker recorded it and died before its checkpoint: the next one reads the same response again.
    await records.record_call(item_id="mcp_1", **call)
    await records.record_call(item_id="mcp_1", **call)
    await records.record_call(item_id="mcp_2", **call)

    async with store.transaction() as session:
        recorded = list(await session.scalars(select(McpToolCall.item_id).order_by(McpToolCall.id)))
    assert recorded == ["mcp_1", "mcp_2"]

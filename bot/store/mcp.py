"""MCP servers (secrets encrypted with MCP_SECRET_KEY), approval requests and tool calls, as domain values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, select, update

from bot.conversations.mcp import (
    ApprovalPolicy,
    ApprovalRequest,
    Decision,
    McpRefused,
    McpServer,
    McpServerAccess,
)
from bot.errors import ConfigurationError, StoreError
from bot.store.models import McpApproval, McpServerRecord, McpToolCall, TurnRecord, TurnStatus
from bot.store.repositories import Store, database_now, insert_ignoring_duplicates, updated_rows, utcnow


class SecretBox:
    """Fernet encryption of header secrets; without a key, no secret can be stored (or read)."""

    def __init__(self, key: str | None) -> None:
        try:
            self._fernet = Fernet(key.encode()) if key else None
        except ValueError:
            raise ConfigurationError("MCP_SECRET_KEY must be a Fernet key (32 url-safe base64-encoded bytes)") from None

    def seal(self, secret: str) -> str:
        if self._fernet is None:
            raise McpRefused("The bot's operator has not set MCP_SECRET_KEY, so it cannot keep a secret header.")
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        if self._fernet is None:
            raise ConfigurationError("an MCP server has a stored secret but MCP_SECRET_KEY is not set")
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ConfigurationError("an MCP server's secret does not open with MCP_SECRET_KEY") from None


def _server(row: McpServerRecord) -> McpServer:
    return McpServer(
        team_id=row.team_id,
        label=row.label,
        url=row.url,
        allowed_tools=tuple(row.allowed_tools),
        policy=ApprovalPolicy(row.approval),
        approval_tools=tuple(row.approval_tools),
        secret_header=row.secret_header if row.secret_ciphertext else None,
    )


def _approval(row: McpApproval) -> ApprovalRequest:
    return ApprovalRequest(
        approval_id=row.approval_id,
        team_id=row.team_id,
        conversation_id=row.conversation_id,
        channel_id=row.channel_id,
        thread_ts=row.thread_ts,
        asker_id=row.asker_id,
        server_label=row.server_label,
        tool_name=row.tool_name,
        arguments=row.arguments,
        decision=Decision(row.decision),
        decided_by=row.decided_by,
        prompt_ts=row.prompt_ts,
        expires_at=row.expires_at,
    )


class McpRecords:
    """Every read and write of MCP servers, approvals and calls, each keyed by workspace."""

    def __init__(self, store: Store, *, secrets: SecretBox) -> None:
        self._store = store
        self._secrets = secrets

    # Servers -------------------------------------------------------------------------------

    async def add_server(self, server: McpServer, *, secret: str | None, created_by: str) -> bool:
        """Register (or replace) the workspace's server by label; True if it replaced one."""
        sealed = self._secrets.seal(secret) if secret else None
        async with self._store.transaction() as session:
            row = await session.scalar(
                select(McpServerRecord).where(
                    McpServerRecord.team_id == server.team_id, McpServerRecord.label == server.label
                )
            )
            replaced = row is not None
            if row is None:
                row = McpServerRecord(team_id=server.team_id, label=server.label)
                session.add(row)
            row.url = server.url
            row.allowed_tools = list(server.allowed_tools)
            row.approval = server.policy.value
            row.approval_tools = list(server.approval_tools)
            row.secret_header = server.secret_header if sealed else None
            row.secret_ciphertext = sealed
            row.created_by = created_by
        return replaced

    async def remove_server(self, team_id: str, label: str) -> bool:
        async with self._store.transaction() as session:
            result = await session.execute(
                delete(McpServerRecord).where(McpServerRecord.team_id == team_id, McpServerRecord.label == label)
            )
            return updated_rows(result) > 0

    async def servers(self, team_id: str) -> list[McpServer]:
        async with self._store.transaction() as session:
            rows = await session.scalars(
                select(McpServerRecord).where(McpServerRecord.team_id == team_id).order_by(McpServerRecord.label)
            )
            return [_server(row) for row in rows]

    async def access(self, team_id: str, labels: Sequence[str]) -> list[McpServerAccess]:
        """The workspace's servers of these labels, with their secret header opened (labels of another
        workspace, or removed since, are not there)."""
        if not labels:
            return []
        async with self._store.transaction() as session:
            rows = list(
                await session.scalars(
                    select(McpServerRecord)
                    .where(McpServerRecord.team_id == team_id, McpServerRecord.label.in_(list(labels)))
                    .order_by(McpServerRecord.label)
                )
            )
        return [
            McpServerAccess(
                _server(row),
                {row.secret_header: self._secrets.open(row.secret_ciphertext)}
                if row.secret_header and row.secret_ciphertext
                else {},
            )
            for row in rows
        ]

    # Approvals -----------------------------------------------------------------------------

    async def add_approvals(self, requests: Sequence[ApprovalRequest], *, timeout_seconds: float) -> None:
        """Store requests not stored yet (a resumed batch asks again: the first one's deadline holds)."""
        async with self._store.transaction() as session:
            for request in requests:
                await session.execute(
                    insert_ignoring_duplicates(session, McpApproval).values(
                        approval_id=request.approval_id,
                        team_id=request.team_id,
                        conversation_id=request.conversation_id,
                        channel_id=request.channel_id,
                        thread_ts=request.thread_ts,
                        asker_id=request.asker_id,
                        server_label=request.server_label,
                        tool_name=request.tool_name,
                        arguments=request.arguments,
                        decision=Decision.PENDING.value,
                        expires_at=utcnow() + timedelta(seconds=timeout_seconds),
                    )
                )

    async def approvals(self, approval_ids: Sequence[str]) -> list[ApprovalRequest]:
        async with self._store.transaction() as session:
            rows = await session.scalars(select(McpApproval).where(McpApproval.approval_id.in_(list(approval_ids))))
            return [_approval(row) for row in rows]

    async def set_prompt_ts(self, approval_id: str, ts: str) -> None:
        async with self._store.transaction() as session:
            await session.execute(
                update(McpApproval).where(McpApproval.approval_id == approval_id).values(prompt_ts=ts)
            )

    async def decide(self, approval_id: str, *, decision: Decision, user_id: str | None) -> ApprovalRequest | None:
        """Record the decision if none was made yet, and reopen the conversation's waiting turns in the same
        transaction (so that a crash right after loses neither); None if it was decided already."""
        async with self._store.transaction() as session:
            decided = await session.execute(
                update(McpApproval)
                .where(McpApproval.approval_id == approval_id, McpApproval.decision == Decision.PENDING.value)
                .values(decision=decision.value, decided_by=user_id, decided_at=utcnow())
            )
            if updated_rows(decided) == 0:
                return None
            row = await session.get(McpApproval, approval_id)
            if row is None:
                raise StoreError(f"approval {approval_id} vanished while being decided")
            await session.execute(
                update(TurnRecord)
                .where(
                    TurnRecord.conversation_id == row.conversation_id,
                    TurnRecord.status == TurnStatus.WAITING.value,
                )
                # The attempt that ended in the wait did not fail: the resumed one takes its place.
                .values(status=TurnStatus.PENDING.value, attempts=TurnRecord.attempts - 1)
            )
            await session.refresh(row)
            return _approval(row)

    async def reopen_decided(self) -> list[int]:
        """Reopen waiting turns whose conversation waits on no undecided request any more (a click that came
        before the batch was parked found nothing to reopen); returns their conversations."""
        async with self._store.transaction() as session:
            undecided = (
                select(McpApproval.approval_id)
                .where(
                    McpApproval.conversation_id == TurnRecord.conversation_id,
                    McpApproval.decision == Decision.PENDING.value,
                )
                .exists()
            )
            found = list(
                await session.scalars(
                    select(TurnRecord.conversation_id)
                    .where(TurnRecord.status == TurnStatus.WAITING.value, ~undecided)
                    .distinct()
                )
            )
            if found:
                await session.execute(
                    update(TurnRecord)
                    .where(TurnRecord.conversation_id.in_(found), TurnRecord.status == TurnStatus.WAITING.value)
                    .values(status=TurnStatus.PENDING.value, attempts=TurnRecord.attempts - 1)
                )
            return found

    async def due(self) -> list[ApprovalRequest]:
        async with self._store.transaction() as session:
            rows = await session.scalars(
                select(McpApproval).where(
                    McpApproval.decision == Decision.PENDING.value, McpApproval.expires_at <= database_now(session)
                )
            )
            return [_approval(row) for row in rows]

    # Calls ---------------------------------------------------------------------------------

    async def record_call(
        self,
        *,
        item_id: str | None,  # None: an item without an id, recorded each time it is read
        team_id: str,
        conversation_id: int,
        server_label: str,
        tool_name: str,
        asked_by: str,
        outcome: str,
    ) -> None:
        """Record a call once: the same response item recorded again (its response followed anew after a crash)
        changes nothing."""
        async with self._store.transaction() as session:
            await session.execute(
                insert_ignoring_duplicates(session, McpToolCall).values(
                    item_id=item_id,
                    team_id=team_id,
                    conversation_id=conversation_id,
                    server_label=server_label,
                    tool_name=tool_name,
                    asked_by=asked_by,
                    outcome=outcome,
                )
            )

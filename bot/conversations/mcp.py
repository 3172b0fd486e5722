"""Remote MCP servers a workspace registers, the approval each tool call may need, and the record of both.

An answer that needs a person's approval does not hold its worker: the backend checkpoints that it
waits on approval ids, stores the requests here (and the platform shows Approve / Deny to the person
who asked), and the batch ends WAITING, its lease released. A click, or the approval timeout,
records the decision, reopens the batch's turns and schedules the conversation; the worker then
resumes the batch from its checkpoint. Everything a resume needs is in the database, so a crash or a
restart while waiting loses nothing.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

from bot.errors import BotError

log = logging.getLogger(__name__)

# How often due approvals are looked for: the timeout is honoured to within this.
EXPIRY_CHECK_SECONDS = 1.0


class McpRefused(BotError):
    """A registration the bot will not keep (a bad URL, label or policy); the message says why, plainly."""


class ApprovalPolicy(str, enum.Enum):
    ALWAYS = "always"  # every call waits for the person's approval
    NEVER = "never"  # calls run at once
    PER_TOOL = "per_tool"  # only the tools listed in McpServer.approval_tools wait


@dataclass(frozen=True)
class McpServer:
    """A registered server as everyone may see it: never its secret, only whether it has one."""

    team_id: str
    label: str
    url: str
    allowed_tools: tuple[str, ...]  # empty: every tool the server lists
    policy: ApprovalPolicy
    approval_tools: tuple[str, ...] = ()  # with PER_TOOL: the tools that need approval
    secret_header: str | None = None  # the header's name; its value is stored encrypted

    def require_approval(self) -> str | dict[str, dict[str, list[str]]]:
        """The policy as the Responses API's ``require_approval``."""
        if self.policy is ApprovalPolicy.PER_TOOL:
            return {"always": {"tool_names": list(self.approval_tools)}}
        return str(self.policy.value)


@dataclass(frozen=True)
class McpServerAccess:
    """A server with the headers a call to it carries (the decrypted secret): for the backend's request only."""

    server: McpServer
    headers: dict[str, str]


def checked_url(url: str, *, allow_http_loopback: bool) -> str:
    """The server URL if the bot may call it: https, or http on a loopback address when the operator allows it."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise McpRefused("That is not a URL. Give the server's address, such as https://mcp.example.com/mcp.")
    if parts.username or parts.password:
        raise McpRefused("Put credentials in the secret header, not in the URL.")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and allow_http_loopback and _is_loopback(parts.hostname):
        return url
    raise McpRefused("MCP servers must be reached over https.")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Decision(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    TIMED_OUT = "timed_out"  # denied because nobody decided in time

    @property
    def approves(self) -> bool:
        return self is Decision.APPROVED

    @property
    def pending(self) -> bool:
        return self is Decision.PENDING


@dataclass(frozen=True)
class ApprovalRequest:
    """The model's request to run a tool, as the bot stores it and shows it to the person who asked."""

    approval_id: str  # the API's mcp_approval_request item id
    team_id: str
    conversation_id: int
    channel_id: str
    thread_ts: str | None
    asker_id: str
    server_label: str
    tool_name: str
    arguments: str  # JSON text, as the model wrote it
    decision: Decision = Decision.PENDING
    decided_by: str | None = None
    prompt_ts: str | None = None  # the platform message holding the buttons
    expires_at: datetime | None = None


class ClickOutcome(enum.Enum):
    DECIDED = "decided"
    NOT_YOURS = "not_yours"
    ALREADY_DECIDED = "already_decided"
    UNKNOWN = "unknown"


class McpRecords(Protocol):
    """Where servers, approvals and calls are kept (bot.store.mcp.McpRecords)."""

    async def add_server(self, server: McpServer, *, secret: str | None, created_by: str) -> bool: ...

    async def remove_server(self, team_id: str, label: str) -> bool: ...

    async def servers(self, team_id: str) -> list[McpServer]: ...

    async def access(self, team_id: str, labels: Sequence[str]) -> list[McpServerAccess]: ...

    async def add_approvals(self, requests: Sequence[ApprovalRequest], *, timeout_seconds: float) -> None: ...

    async def approvals(self, approval_ids: Sequence[str]) -> list[ApprovalRequest]: ...

    async def set_prompt_ts(self, approval_id: str, ts: str) -> None: ...

    async def decide(self, approval_id: str, *, decision: Decision, user_id: str | None) -> ApprovalRequest | None: ...

    async def due(self) -> list[ApprovalRequest]: ...

    async def reopen_decided(self) -> list[int]: ...

    async def record_call(
        self,
        *,
        item_id: str | None,
        team_id: str,
        conversation_id: int,
        server_label: str,
        tool_name: str,
        asked_by: str,
        outcome: str,
    ) -> None: ...


class ApprovalPrompts(Protocol):
    """The chat platform's side: show a request's buttons, and show what was decided (bot.slack.mcp)."""

    async def ask(self, request: ApprovalRequest) -> str: ...

    async def settle(self, request: ApprovalRequest) -> None: ...


class McpApprovals:
    """Approval requests from the backend, decisions from people or the clock, and the waiting batch resumed."""

    def __init__(
        self,
        records: McpRecords,
        *,
        timeout_seconds: float,
        admins_may_approve: bool,
    ) -> None:
        self.records = records
        self._timeout_seconds = timeout_seconds
        self._admins_may_approve = admins_may_approve
        self._prompts: ApprovalPrompts | None = None
        self._schedule: Callable[[int], None] | None = None

    def connect(self, *, prompts: ApprovalPrompts, schedule: Callable[[int], None]) -> None:
        """The platform that shows requests and the service that resumes batches (both built after the backend)."""
        self._prompts, self._schedule = prompts, schedule

    @property
    def connected(self) -> bool:
        """Whether approvals can be asked and answered here (not in the terminal shell, which has no buttons)."""
        return self._prompts is not None and self._schedule is not None

    async def ask(self, requests: Sequence[ApprovalRequest]) -> list[ApprovalRequest]:
        """Store the requests and show each one not shown yet (a resumed batch asks again: nothing twice);
        returns them as stored."""
        await self.records.add_approvals(requests, timeout_seconds=self._timeout_seconds)
        stored = await self.records.approvals([request.approval_id for request in requests])
        for request in stored:
            if request.prompt_ts is None and request.decision.pending and self._prompts is not None:
                await self.records.set_prompt_ts(request.approval_id, await self._prompts.ask(request))
        return stored

    async def decisions(self, approval_ids: Sequence[str]) -> dict[str, Decision] | None:
        """Each request's decision, or None while any of them waits for one."""
        found = {request.approval_id: request.decision for request in await self.records.approvals(approval_ids)}
        if any(found.get(approval_id, Decision.PENDING).pending for approval_id in approval_ids):
            return None
        return found

    async def click(self, approval_id: str, *, user_id: str, approve: bool, is_admin: bool) -> ClickOutcome:
        """A person's click: only the one who asked (or an admin, when allowed) decides, and only once."""
        found = await self.records.approvals([approval_id])
        if not found:
            return ClickOutcome.UNKNOWN
        request = found[0]
        if user_id != request.asker_id and not (is_admin and self._admins_may_approve):
            log.info("user %s may not decide approval %s", user_id, approval_id)
            return ClickOutcome.NOT_YOURS
        decision = Decision.APPROVED if approve else Decision.DENIED
        return await self._decide(request, decision, user_id=user_id)

    async def expire_due(self) -> int:
        """Deny every request whose time ran out, and resume batches decided before they were parked; returns
        how many requests timed out."""
        expired = 0
        for request in await self.records.due():
            if await self._decide(request, Decision.TIMED_OUT, user_id=None) is ClickOutcome.DECIDED:
                expired += 1
        for conversation_id in await self.records.reopen_decided():
            log.info("conversation %s: its approvals were decided before it was parked; resuming it", conversation_id)
            if self._schedule is not None:
                self._schedule(conversation_id)
        return expired

    async def expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_SECONDS)
            try:
                await self.expire_due()
            except Exception:  # a loop that dies leaves every later request waiting for ever
                log.exception("could not expire due MCP approvals; trying again")

    async def _decide(self, request: ApprovalRequest, decision: Decision, *, user_id: str | None) -> ClickOutcome:
        decided = await self.records.decide(request.approval_id, decision=decision, user_id=user_id)
        if decided is None:
            return ClickOutcome.ALREADY_DECIDED
        log.info(
            "approval %s (%s/%s) %s by %s",
            request.approval_id,
            request.server_label,
            request.tool_name,
            decision.value,
            user_id or "the timeout",
        )
        if self._prompts is not None:
            await self._prompts.settle(decided)
        if self._schedule is not None:
            self._schedule(request.conversation_id)
        return ClickOutcome.DECIDED


def waiting_notice(requests: Sequence[ApprovalRequest]) -> str:
    tools = ", ".join(f"{request.tool_name} ({request.server_label})" for request in requests)
    return f"Waiting for approval to use {tools}."

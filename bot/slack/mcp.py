"""`/assistant mcp ...` and the Approve / Deny buttons of MCP tool calls: Bolt listeners that ack, then convert.

    /assistant mcp add <label> <url> [tools=a,b] [approval=always|never|tool,tool] [header=Name secret=value]
    /assistant mcp list | remove <label> | enable <label> | disable <label>

A slash command's text reaches only the bot (Slack posts nothing of it), so a secret may be given there;
it is encrypted at once and never shown again, nor logged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError

from bot.background import BackgroundWork
from bot.conversations.channels import ChannelAssistants
from bot.conversations.mcp import (
    ApprovalPolicy,
    ApprovalRequest,
    ClickOutcome,
    Decision,
    McpApprovals,
    McpRefused,
    McpServer,
    checked_url,
)
from bot.conversations.profiles import ProfileSpec, TableProfileCatalog
from bot.errors import BotError, DeliveryError
from bot.settings import HEADER_NAME
from bot.slack.clients import SlackClients
from bot.slack.commands import REFUSED, Invocation
from bot.slack.directory import UserDirectory
from bot.slack.interactions import Interaction
from bot.slack.render import notice_mrkdwn

log = logging.getLogger(__name__)

APPROVE_ACTION = "mcp_approve"
DENY_ACTION = "mcp_deny"
USAGE = (
    "Usage:\n"
    "• `/assistant mcp add <label> <https url> [tools=a,b] [approval=always|never|tool1,tool2] "
    "[header=<name> secret=<value>]`: register a server for this workspace (admins). `approval` is `always` "
    "(the default), `never`, or the tools that need approval. The secret is stored encrypted and never shown again.\n"
    "• `/assistant mcp list`: the workspace's servers, and which this channel's assistant uses\n"
    "• `/assistant mcp remove <label>` (admins)\n"
    "• `/assistant mcp enable <label>` / `disable <label>`: this channel's assistant uses the server, or stops (admins)"
)
MAX_LABEL_CHARS = 64
ARGUMENTS_SHOWN_CHARS = 1500


def unsupported(backend: str) -> str:
    return f"MCP tools need the `responses` backend; this bot runs on the `{backend}` backend, which has none."


@dataclass(frozen=True)
class Registration:
    server: McpServer
    secret: str | None


def parse_add(team_id: str, words: list[str], *, allow_http_loopback: bool) -> Registration:
    """The server `/assistant mcp add` describes; McpRefused says what is wrong with it."""
    if len(words) < 2:
        raise McpRefused(USAGE)
    label, url, *options = words
    if not label.replace("-", "").replace("_", "").isalnum() or len(label) > MAX_LABEL_CHARS:
        raise McpRefused("A label is letters, digits, `-` and `_`, at most 64 characters.")
    values: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("tools", "approval", "header", "secret") or key in values:
            raise McpRefused(f"I don't understand `{notice_mrkdwn(option[:40])}`.\n\n{USAGE}")
        values[key] = value
    tools = tuple(tool for tool in values.get("tools", "").split(",") if tool)
    approval = values.get("approval", ApprovalPolicy.ALWAYS.value)
    approval_tools: tuple[str, ...] = ()
    if approval in (ApprovalPolicy.ALWAYS.value, ApprovalPolicy.NEVER.value):
        policy = ApprovalPolicy(approval)
    else:
        policy, approval_tools = ApprovalPolicy.PER_TOOL, tuple(tool for tool in approval.split(",") if tool)
    header, secret = values.get("header"), values.get("secret")
    if (header is None) != (secret is None) or (header is not None and not HEADER_NAME.fullmatch(header)):
        raise McpRefused("Give both `header=<name>` and `secret=<value>`, or neither.")
    server = McpServer(
        team_id=team_id,
        label=label,
        url=checked_url(url, allow_http_loopback=allow_http_loopback),
        allowed_tools=tools,
        policy=policy,
        approval_tools=approval_tools,
        secret_header=header,
    )
    return Registration(server, secret)


def describe(server: McpServer, *, enabled: bool) -> str:
    tools = ", ".join(f"`{tool}`" for tool in server.allowed_tools) or "every tool it lists"
    if server.policy is ApprovalPolicy.PER_TOOL:
        approval = "approval for " + (", ".join(f"`{tool}`" for tool in server.approval_tools) or "no tool")
    else:
        approval = {"always": "approval for every call", "never": "no approval"}[server.policy.value]
    secret = f"; secret header `{server.secret_header}` (set)" if server.secret_header else ""
    here = " ← this channel's assistant uses it" if enabled else ""
    return f"• *{notice_mrkdwn(server.label)}* {notice_mrkdwn(server.url)}: {tools}; {approval}{secret}{here}"


class McpCommands:
    """`/assistant mcp ...` for admins, and the approval buttons for the person who asked."""

    def __init__(
        self,
        *,
        approvals: McpApprovals,
        assistants: ChannelAssistants,
        profiles: TableProfileCatalog | None,  # None: the backend keeps its profiles elsewhere (no MCP there)
        users: UserDirectory,
        background: BackgroundWork,
        allow_http_loopback: bool,
    ) -> None:
        self._records = approvals.records
        self._approvals = approvals
        self._assistants = assistants
        self._profiles = profiles
        self._users = users
        self._background = background
        self._allow_http_loopback = allow_http_loopback

    def register(self, app: AsyncApp) -> None:
        app.action(APPROVE_ACTION)(self.on_decision)
        app.action(DENY_ACTION)(self.on_decision)

    @property
    def _supported(self) -> bool:
        return self._profiles is not None and self._assistants.backend_name == "responses"

    async def offered(self, team_id: str) -> list[str] | None:
        """The labels of the workspace's servers the assistant form offers; None where the backend has no MCP
        tools (the form then offers none, and refuses any it is sent)."""
        if not self._supported:
            return None
        return [server.label for server in await self._records.servers(team_id)]

    # /assistant mcp ------------------------------------------------------------------------

    async def handle(self, invocation: Invocation, argument: str) -> None:
        words = argument.split()
        name, rest = (words[0].lower(), words[1:]) if words else ("", [])
        if not self._supported:
            await _reply(invocation.respond, unsupported(self._assistants.backend_name))
            return
        if name == "list" and not rest:
            await self._list(invocation)
            return
        if name not in ("add", "remove", "enable", "disable") or (name != "add" and len(rest) != 1):
            await _reply(invocation.respond, USAGE)
            return
        if not await self._is_admin(invocation.team_id, invocation.user_id):
            await _reply(invocation.respond, REFUSED)
            return
        try:
            if name == "add":
                await self._add(invocation, rest)
            elif name == "remove":
                await self._remove(invocation, rest[0])
            else:
                await self._enable(invocation, rest[0], enable=name == "enable")
        except McpRefused as exc:
            await _reply(invocation.respond, str(exc))

    async def _add(self, invocation: Invocation, words: list[str]) -> None:
        registration = parse_add(invocation.team_id, words, allow_http_loopback=self._allow_http_loopback)
        server = registration.server
        replaced = await self._records.add_server(server, secret=registration.secret, created_by=invocation.user_id)
        log.info("user %s registered MCP server %s in %s", invocation.user_id, server.label, invocation.team_id)
        secret = (
            f" The secret header `{server.secret_header}` is stored encrypted and will not be shown again."
            if server.secret_header
            else ""
        )
        verb = "Replaced" if replaced else "Registered"
        await _reply(
            invocation.respond,
            f"{verb} {describe(server, enabled=False).removeprefix('• ')}.{secret}\n"
            f"`/assistant mcp enable {server.label}` lets this channel's assistant use it.",
        )

    async def _remove(self, invocation: Invocation, label: str) -> None:
        removed = await self._records.remove_server(invocation.team_id, label)
        text = f"Removed *{notice_mrkdwn(label)}*." if removed else f"There is no server *{notice_mrkdwn(label)}*."
        await _reply(invocation.respond, text)

    async def _enable(self, invocation: Invocation, label: str, *, enable: bool) -> None:
        known = {server.label for server in await self._records.servers(invocation.team_id)}
        if enable and label not in known:
            raise McpRefused(f"There is no server *{notice_mrkdwn(label)}*; `/assistant mcp list` shows them.")
        current = await self._assistants.current(team_id=invocation.team_id, channel_id=invocation.channel_id)
        profile = current.assistant
        labels = tuple(other for other in profile.mcp_servers if other != label) + ((label,) if enable else ())
        # An edit like the form's, recorded like it (who, when, from where).
        await self._assistants.edit(
            team_id=invocation.team_id,
            channel_id=invocation.channel_id,
            user_id=invocation.user_id,
            assistant_id=profile.id,
            spec=ProfileSpec(
                name=profile.name,
                model=profile.model,
                instructions=None,
                tools=profile.builtin_tools,
                reasoning_effort=profile.reasoning_effort,
                mcp_servers=labels,
            ),
        )
        verb = "now uses" if enable else "no longer uses"
        await _reply(
            invocation.respond,
            f"*{notice_mrkdwn(profile.name)}* (this channel's assistant) {verb} *{notice_mrkdwn(label)}*.",
        )

    async def _list(self, invocation: Invocation) -> None:
        servers = await self._records.servers(invocation.team_id)
        if not servers:
            await _reply(invocation.respond, "No MCP servers are registered in this workspace.\n\n" + USAGE)
            return
        current = await self._assistants.current(team_id=invocation.team_id, channel_id=invocation.channel_id)
        enabled = set(current.assistant.mcp_servers)
        lines = ["*MCP servers of this workspace*", *(describe(s, enabled=s.label in enabled) for s in servers)]
        await _reply(invocation.respond, "\n".join(lines))

    # Approve / Deny ------------------------------------------------------------------------

    async def on_decision(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        clicked = Interaction.of(body)
        approve = action.get("action_id") == APPROVE_ACTION
        work = self._decide(
            clicked.team_id, clicked.user_id, str(action.get("value") or ""), approve=approve, respond=respond
        )
        self._background.start(work, name="mcp-decision")

    async def _decide(
        self, team_id: str, user_id: str, approval_id: str, *, approve: bool, respond: AsyncRespond
    ) -> None:
        try:
            outcome = await self._approvals.click(
                approval_id, user_id=user_id, approve=approve, is_admin=await self._is_admin(team_id, user_id)
            )
        except BotError:
            log.exception("recording an MCP decision failed")
            await _reply(respond, "Something went wrong on my side. Please try again in a moment.")
            return
        if outcome is ClickOutcome.NOT_YOURS:
            await _reply(respond, "Only the person who asked can approve or deny this tool call.")
        elif outcome is ClickOutcome.ALREADY_DECIDED:
            await _reply(respond, "This tool call was already decided.")
        elif outcome is ClickOutcome.UNKNOWN:
            await _reply(respond, "I don't know this tool call any more.")

    async def _is_admin(self, team_id: str, user_id: str) -> bool:
        person = await self._users.get(user_id, team_id=team_id)
        return self._assistants.is_admin(user_id=user_id, is_workspace_admin=person.is_admin)


class SlackApprovalPrompts:
    """Approval requests as thread messages with buttons; a decision replaces the buttons with what was decided."""

    def __init__(self, clients: SlackClients, *, timeout_seconds: float) -> None:
        self._clients = clients
        self._timeout_seconds = timeout_seconds

    async def ask(self, request: ApprovalRequest) -> str:
        text = (
            f"<@{request.asker_id}>, the assistant wants to run *{notice_mrkdwn(request.tool_name)}* on "
            f"*{notice_mrkdwn(request.server_label)}*. Approve it?"
        )
        minutes = max(round(self._timeout_seconds / 60), 1)
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _arguments(request.arguments)}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"Not decided within {minutes} min: denied."}],
            },
            {
                "type": "actions",
                "block_id": "mcp_approval",
                "elements": [
                    _button(APPROVE_ACTION, "Approve", request.approval_id, style="primary"),
                    _button(DENY_ACTION, "Deny", request.approval_id, style="danger"),
                ],
            },
        ]
        client = await self._clients.for_team(request.team_id)
        try:
            posted = await client.chat_postMessage(
                channel=request.channel_id, thread_ts=request.thread_ts, text=text, blocks=blocks
            )
        except SlackApiError as exc:
            raise DeliveryError(f"the approval request could not be posted: {exc.response.get('error')}") from exc
        ts: str = posted["ts"]
        return ts

    async def settle(self, request: ApprovalRequest) -> None:
        what = f"*{notice_mrkdwn(request.tool_name)}* on *{notice_mrkdwn(request.server_label)}*"
        text = {
            Decision.APPROVED: f"Approved by <@{request.decided_by}>: running {what}.",
            Decision.DENIED: f"Denied by <@{request.decided_by}>: {what} was not run.",
            Decision.TIMED_OUT: f"Nobody approved {what} in time, so it was denied and not run.",
        }.get(request.decision, "")
        try:
            client = await self._clients.for_team(request.team_id)
            if request.prompt_ts:
                blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
                await client.chat_update(channel=request.channel_id, ts=request.prompt_ts, text=text, blocks=blocks)
            else:
                await client.chat_postMessage(channel=request.channel_id, thread_ts=request.thread_ts, text=text)
        except SlackApiError as exc:
            log.warning(
                "could not show the decision on approval %s: %s", request.approval_id, exc.response.get("error")
            )


def _arguments(arguments: str) -> str:
    try:
        shown = json.dumps(json.loads(arguments), indent=1, ensure_ascii=False)
    except ValueError:
        shown = arguments
    if len(shown) > ARGUMENTS_SHOWN_CHARS:
        shown = shown[:ARGUMENTS_SHOWN_CHARS] + "…"
    # The model wrote them: escaped, so that they never ping or link; a code block keeps them readable.
    fenced = shown.replace("```", "'''")
    return f"```{notice_mrkdwn(fenced)}```"


def _button(action_id: str, label: str, value: str, *, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "style": style,
        "text": {"type": "plain_text", "text": label},
        "value": value,
    }


async def _reply(respond: AsyncRespond, text: str) -> None:
    await respond(text=text, response_type="ephemeral", replace_original=False)

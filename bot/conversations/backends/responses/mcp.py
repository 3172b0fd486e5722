"""Remote MCP tools on the Responses API: the ``mcp`` tools of a request, and the MCP items a response makes.

The API lists a server's tools (``mcp_list_tools``), asks for approval (``mcp_approval_request``)
where the server's policy says so, and calls the tool itself (``mcp_call``). An approval is
answered in the next request's input (``mcp_approval_response``), on the same conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.conversations.backend import AnswerRequest, ToolActivity, ToolStatus
from bot.conversations.backends.responses.items import ToolItem
from bot.conversations.mcp import ApprovalRequest, Decision, McpApprovals

APPROVAL_REQUEST = "mcp_approval_request"


def tool_item(item: dict[str, Any]) -> ToolItem | None:
    """An MCP call as a task: named server/tool."""
    if item.get("type") != "mcp_call":
        return None
    return ToolItem(item.get("id", ""), "mcp", f"{item.get('server_label', '')}/{item.get('name', '')}")


def approval_requests(output: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in output if item.get("type") == APPROVAL_REQUEST and item.get("id")]


class McpSteps:
    """What the responses backend does about MCP: tools in, approvals asked and answered, calls recorded."""

    def __init__(self, approvals: McpApprovals) -> None:
        self._approvals = approvals

    async def tools(self, request: AnswerRequest) -> list[dict[str, Any]]:
        """The profile's MCP servers of this workspace as ``mcp`` tools (a label no longer registered is left out;
        none where nobody could approve a call)."""
        labels = request.profile.mcp_servers if self._approvals.connected else ()
        found = await self._approvals.records.access(request.conversation.team_id, labels)
        tools = []
        for access in found:
            server = access.server
            tool: dict[str, Any] = {
                "type": "mcp",
                "server_label": server.label,
                "server_url": server.url,
                "require_approval": server.require_approval(),
            }
            if server.allowed_tools:
                tool["allowed_tools"] = list(server.allowed_tools)
            if access.headers:
                tool["headers"] = dict(access.headers)
            tools.append(tool)
        return tools

    async def ask(self, request: AnswerRequest, items: Sequence[dict[str, Any]]) -> list[ApprovalRequest]:
        """Store and show the approval requests, each to the person whose message the batch answers."""
        turn = request.tool_context.turn
        asked = [
            ApprovalRequest(
                approval_id=item["id"],
                team_id=request.conversation.team_id,
                conversation_id=request.conversation.id,
                channel_id=turn.channel_id,
                thread_ts=turn.reply_thread_ts,
                asker_id=turn.user_id,
                server_label=item.get("server_label", ""),
                tool_name=item.get("name", ""),
                arguments=item.get("arguments") or "{}",
            )
            for item in items
        ]
        return await self._approvals.ask(asked)

    async def responses(self, approval_ids: Sequence[str]) -> list[dict[str, Any]] | None:
        """The ``mcp_approval_response`` items for the next request, or None while a decision is missing."""
        decisions = await self._approvals.decisions(approval_ids)
        if decisions is None:
            return None
        return [
            {
                "type": "mcp_approval_response",
                "approval_request_id": approval_id,
                "approve": decisions[approval_id].approves,
                **({} if decisions[approval_id].approves else {"reason": _reasons[decisions[approval_id]]}),
            }
            for approval_id in approval_ids
        ]

    async def blocks(self, state: dict[str, Any]) -> bool:
        """Whether a batch of the conversation still waits on an undecided approval (named in its state)."""
        approval_ids = state.get("awaiting_approval") or []
        return bool(approval_ids) and await self._approvals.decisions(approval_ids) is None

    async def record(self, request: AnswerRequest, output: Sequence[dict[str, Any]]) -> list[ToolActivity]:
        """Record each MCP call of a response (and each server whose tools could not be listed), once however
        often the response is read; their tasks."""
        activity = []
        turn = request.tool_context.turn
        for item in output:
            kind = item.get("type")
            if kind == "mcp_call":
                outcome = "failed" if item.get("error") or item.get("status") == "failed" else "completed"
                name = item.get("name", "")
            elif kind == "mcp_list_tools" and item.get("error"):
                outcome, name = "unreachable", ""
            else:
                continue
            label = item.get("server_label", "")
            await self._approvals.records.record_call(
                item_id=item.get("id") or None,
                team_id=request.conversation.team_id,
                conversation_id=request.conversation.id,
                server_label=label,
                tool_name=name,
                asked_by=turn.user_id,
                outcome=outcome,
            )
            if outcome == "unreachable":
                activity.append(ToolActivity(item.get("id", ""), "mcp", f"{label} (unreachable)", ToolStatus.FAILED))
        return activity


_reasons = {
    Decision.DENIED: "The person who asked denied this tool call.",
    Decision.TIMED_OUT: "Nobody approved this tool call in time.",
}

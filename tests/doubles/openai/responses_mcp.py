"""The Responses double's MCP side: it plays the model and the platform for requests with ``mcp`` tools.

A test plans a tool call (``ResponsesMcp.will_call``). The next request whose tools include that
server's ``mcp`` tool then really lists the server's tools over HTTP (``mcp_list_tools``, or its
error when the server is down), asks for approval where the tool's ``require_approval`` says so
(``mcp_approval_request``, and the response ends), or calls the tool at once. A later request on the
same conversation whose input holds the ``mcp_approval_response`` gets the call made (``mcp_call``
with its output) and an answer using it, or, when denied, an answer saying so. A plan may also have the
model call our functions in the response that asks for approval: the answering request must then carry
their ``function_call_output`` items beside the approval responses, or it is refused as the API does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from .server import ApiError, ServerCore

MCP_TIMEOUT_SECONDS = 5.0


@dataclass
class McpPlan:
    server_label: str
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)
    # The answer once the tool ran ({output}: what it returned), once denied, or once the server was unreachable.
    text_after: str = "The tool said: {output}"
    text_denied: str = "I did not run {tool}: it was not approved."
    text_unreachable: str = "I could not reach {server}, so I answered without it."
    # Our function calls the model makes beside the approval request, in the same response (name, arguments);
    # the request answering the approval must carry their outputs too.
    function_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    text_functions: str = "I ran {names} too."


class McpUnreachable(Exception):
    pass


class ResponsesMcp:
    """Planned MCP calls, and the approval requests waiting for their answer (by approval request id)."""

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.plans: list[McpPlan] = []
        self.waiting: dict[str, McpPlan] = {}
        # approval request id -> the call ids of the function calls made beside it, whose outputs must come with it
        self.beside: dict[str, list[str]] = {}

    def will_call(self, plan: McpPlan) -> None:
        self.plans.append(plan)

    def answer(
        self, inputs: list[dict[str, Any]], prior: list[dict[str, Any]], body: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        """(output items, answer text) for a request this side answers; None for the scripted model's."""
        answers = [item for item in inputs if item.get("type") == "mcp_approval_response"]
        if answers:
            return self._answer_approvals(answers, inputs, prior, body)
        servers = {tool["server_label"]: tool for tool in body.get("tools") or [] if tool.get("type") == "mcp"}
        plan = next((plan for plan in self.plans if plan.server_label in servers), None)
        if plan is None:
            return None
        self.plans.remove(plan)
        tool = servers[plan.server_label]
        try:
            listed = self._list_tools(tool)
        except McpUnreachable as exc:
            item = self._list_item(tool, [], error=f"Error retrieving tool list from MCP server: {exc}")
            return [item], plan.text_unreachable.format(server=plan.server_label)
        items = [self._list_item(tool, listed)]
        if _needs_approval(tool, plan.tool):
            request = {
                "type": "mcp_approval_request",
                "id": self._core.new_id("mcpr"),
                "server_label": plan.server_label,
                "name": plan.tool,
                "arguments": json.dumps(plan.arguments),
            }
            self.waiting[request["id"]] = plan
            calls = [self._function_call(name, arguments) for name, arguments in plan.function_calls]
            self.beside[request["id"]] = [call["call_id"] for call in calls]
            return [*items, *calls, request], None
        call, output = self._call(tool, plan, approval_request_id=None)
        return [*items, call], plan.text_after.format(output=output)

    def _answer_approvals(
        self,
        answers: list[dict[str, Any]],
        inputs: list[dict[str, Any]],
        prior: list[dict[str, Any]],
        body: dict[str, Any],
    ) -> tuple[list[dict[str, Any]], str | None]:
        asked = {item.get("id") for item in prior if item.get("type") == "mcp_approval_request"}
        servers = {tool["server_label"]: tool for tool in body.get("tools") or [] if tool.get("type") == "mcp"}
        items: list[dict[str, Any]] = []
        texts: list[str] = []
        outputs = {item.get("call_id") for item in inputs if item.get("type") == "function_call_output"}
        for answer in answers:
            approval_id = answer.get("approval_request_id")
            plan = self.waiting.get(approval_id) if approval_id in asked else None
            if plan is None:
                raise ApiError(400, f"No approval request with id '{approval_id}' in this context.", param="input")
            if plan.server_label not in servers:
                raise ApiError(400, f"The mcp tool '{plan.server_label}' must be given again.", param="tools")
            missing = [call_id for call_id in self.beside.get(approval_id, ()) if call_id not in outputs]
            if missing:
                raise ApiError(400, f"No tool output found for function call {missing[0]}.", param="input")
            del self.waiting[approval_id]
            if plan.function_calls:
                texts.append(plan.text_functions.format(names=", ".join(name for name, _ in plan.function_calls)))
            if not answer.get("approve"):
                texts.append(plan.text_denied.format(tool=plan.tool))
                continue
            call, output = self._call(servers[plan.server_label], plan, approval_request_id=approval_id)
            items.append(call)
            texts.append(plan.text_after.format(output=output))
        return items, " ".join(texts)

    def _function_call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": self._core.new_id("fc"),
            "call_id": self._core.new_id("call"),
            "name": name,
            "arguments": json.dumps(arguments),
            "status": "completed",
        }

    # -- MCP over HTTP -----------------------------------------------------------------------------

    def _list_tools(self, tool: dict[str, Any]) -> list[dict[str, Any]]:
        result = self._session(tool, "tools/list", {})
        allowed = tool.get("allowed_tools")
        names = allowed.get("tool_names") if isinstance(allowed, dict) else allowed
        return [
            {"name": listed["name"], "description": listed.get("description"), "input_schema": listed["inputSchema"]}
            for listed in result.get("tools") or []
            if not names or listed["name"] in names
        ]

    def _call(
        self, tool: dict[str, Any], plan: McpPlan, *, approval_request_id: str | None
    ) -> tuple[dict[str, Any], str]:
        item: dict[str, Any] = {
            "type": "mcp_call",
            "id": self._core.new_id("mcp"),
            "server_label": plan.server_label,
            "name": plan.tool,
            "arguments": json.dumps(plan.arguments),
            "approval_request_id": approval_request_id,
        }
        try:
            result = self._session(tool, "tools/call", {"name": plan.tool, "arguments": plan.arguments})
        except McpUnreachable as exc:
            error = {"type": "http_error", "code": 502, "message": str(exc)}
            return {**item, "output": None, "error": error, "status": "failed"}, ""
        output = "\n".join(part.get("text", "") for part in result.get("content") or [] if part.get("type") == "text")
        return {**item, "output": output, "error": None, "status": "completed"}, output

    def _session(self, tool: dict[str, Any], method: str, params: dict[str, Any]) -> dict[str, Any]:
        """initialize, notifications/initialized, then one request; its result."""
        headers = {"Accept": "application/json, text/event-stream", **(tool.get("headers") or {})}
        try:
            with httpx.Client(timeout=MCP_TIMEOUT_SECONDS) as client:
                opened = client.post(
                    tool["server_url"],
                    headers=headers,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {
                            "protocolVersion": "2025-06-18",
                            "capabilities": {},
                            "clientInfo": {"name": "openai-double", "version": "1"},
                        },
                    },
                )
                opened.raise_for_status()
                headers["Mcp-Session-Id"] = opened.headers.get("Mcp-Session-Id", "")
                client.post(
                    tool["server_url"], headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
                ).raise_for_status()
                answered = client.post(
                    tool["server_url"],
                    headers=headers,
                    json={"jsonrpc": "2.0", "id": 2, "method": method, "params": params},
                )
                answered.raise_for_status()
        except httpx.HTTPError as exc:
            raise McpUnreachable(type(exc).__name__) from exc
        message = answered.json()
        if "error" in message:
            raise McpUnreachable(message["error"].get("message", "error"))
        result: dict[str, Any] = message.get("result") or {}
        return result

    def _list_item(
        self, tool: dict[str, Any], listed: list[dict[str, Any]], *, error: str | None = None
    ) -> dict[str, Any]:
        return {
            "type": "mcp_list_tools",
            "id": self._core.new_id("mcpl"),
            "server_label": tool["server_label"],
            "tools": listed,
            "error": error,
        }


def _needs_approval(tool: dict[str, Any], name: str) -> bool:
    policy = tool.get("require_approval", "always")
    if policy is None or policy == "always":
        return True
    if policy == "never":
        return False
    always = (policy.get("always") or {}).get("tool_names") or []
    never = (policy.get("never") or {}).get("tool_names") or []
    return name in always or name not in never and not always

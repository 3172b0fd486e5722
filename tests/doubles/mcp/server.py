"""McpDouble: the subset of MCP (streamable HTTP transport, JSON answers) the Responses API uses.

initialize (answered with an ``Mcp-Session-Id``), notifications/initialized, tools/list and tools/call,
each a JSON-RPC 2.0 POST to ``/mcp``. Requests without the required headers get 401, as a server behind
an API key does; every request is recorded with its headers, for tests to see what reached the server.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROTOCOL_VERSION = "2025-06-18"


@dataclass(frozen=True)
class McpTool:
    name: str
    description: str
    # What a call answers, from its arguments.
    run: Callable[[dict[str, Any]], str]
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class RecordedMcpCall:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]


class McpDouble:
    """Start it, add tools, point a registration at ``url``; ``stop`` makes it a server that is down."""

    def __init__(self, *, required_headers: dict[str, str] | None = None) -> None:
        self.required_headers = dict(required_headers or {})
        self.tools: dict[str, McpTool] = {}
        self.calls: list[RecordedMcpCall] = []
        self.violations: list[str] = []
        self._sessions: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_tool(self, tool: McpTool) -> None:
        self.tools[tool.name] = tool

    def start(self) -> McpDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                double._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mcp-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the MCP double first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/mcp"

    def tool_calls(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [
                (c.params.get("name", ""), c.params.get("arguments") or {})
                for c in self.calls
                if c.method == "tools/call"
            ]

    # -- the protocol ------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        length = int(headers.get("content-length") or 0)
        try:
            message = json.loads(request.rfile.read(length) or b"null")
        except ValueError:
            self._send(
                request, 400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
            )
            return
        if request.path != "/mcp" or not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            self._send(request, 400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid"}})
            return
        method, params = str(message.get("method") or ""), message.get("params") or {}
        with self._lock:
            self.calls.append(RecordedMcpCall(method, params, headers))
        if any(headers.get(name.lower()) != value for name, value in self.required_headers.items()):
            self._send(
                request,
                401,
                {"jsonrpc": "2.0", "id": message.get("id"), "error": {"code": -32001, "message": "Unauthorized"}},
            )
            return
        if "application/json" not in headers.get("accept", ""):
            self.violations.append(f"{method}: Accept does not name application/json")
        if method != "initialize" and headers.get("mcp-session-id") not in self._sessions:
            self.violations.append(f"{method}: no session id from initialize")
        if "id" not in message:  # a notification
            self._send(request, 202, None)
            return
        if method == "initialize":
            session = uuid.uuid4().hex
            self._sessions.add(session)
            result: dict[str, Any] = {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "mcp-double", "version": "1.0"},
            }
            self._send(request, 200, {"jsonrpc": "2.0", "id": message["id"], "result": result}, session=session)
        elif method == "tools/list":
            listed = [
                {"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema}
                for tool in self.tools.values()
            ]
            self._send(request, 200, {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": listed}})
        elif method == "tools/call":
            tool = self.tools.get(str(params.get("name")))
            if tool is None:
                error = {"code": -32602, "message": f"Unknown tool: {params.get('name')}"}
                self._send(request, 200, {"jsonrpc": "2.0", "id": message["id"], "error": error})
                return
            text = tool.run(params.get("arguments") or {})
            result = {"content": [{"type": "text", "text": text}], "isError": False}
            self._send(request, 200, {"jsonrpc": "2.0", "id": message["id"], "result": result})
        else:
            error = {"code": -32601, "message": f"Method not found: {method}"}
            self._send(request, 200, {"jsonrpc": "2.0", "id": message["id"], "error": error})

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: Any, *, session: str | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        request.send_response(status)
        if body is not None:
            request.send_header("Content-Type", "application/json")
        if session is not None:
            request.send_header("Mcp-Session-Id", session)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

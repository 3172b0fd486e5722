"""A double of a remote MCP server: a real HTTP server on loopback speaking MCP's streamable-HTTP JSON-RPC."""

from .server import McpDouble, McpTool, RecordedMcpCall

__all__ = ["McpDouble", "McpTool", "RecordedMcpCall"]

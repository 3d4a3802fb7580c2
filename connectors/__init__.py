"""Connectors: the only way the agent reaches internal systems."""

from connectors._base import Connector, Effect, ToolCall, ToolResult, ToolSpec
from connectors._errors import (
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    InvalidArguments,
    UnknownTool,
)

__all__ = [
    "Connector",
    "ConnectorError",
    "ConnectorTimeout",
    "ConnectorUnavailable",
    "Effect",
    "InvalidArguments",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "UnknownTool",
]

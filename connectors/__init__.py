"""Connectors: the only way the agent reaches internal systems."""

from connectors._base import Connector, DryRun, Effect, ToolCall, ToolResult, ToolSpec
from connectors._errors import (
    CircuitOpen,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    InvalidArguments,
    UnknownTool,
)
from connectors._http import HttpConnector, tools_from_openapi
from connectors._resilience import CircuitBreaker, Resilient, is_retryable
from connectors._schema import Violation, validate_arguments, violations
from connectors._smtp import SmtpConnector
from connectors._sql import SqlConnector, SqlGuard, SqlQuery

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "Connector",
    "ConnectorError",
    "ConnectorTimeout",
    "ConnectorUnavailable",
    "DryRun",
    "Effect",
    "HttpConnector",
    "InvalidArguments",
    "Resilient",
    "SmtpConnector",
    "SqlConnector",
    "SqlGuard",
    "SqlQuery",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "UnknownTool",
    "Violation",
    "is_retryable",
    "tools_from_openapi",
    "validate_arguments",
    "violations",
]

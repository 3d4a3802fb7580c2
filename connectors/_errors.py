"""Connector errors, in one tree.

ConnectorError                 a connector could not carry out a call
├── UnknownTool                the call names a tool this connector does not have
├── InvalidArguments           the arguments do not satisfy the tool's JSON schema
└── ConnectorUnavailable       the system behind the connector cannot be reached (retryable)
    ├── ConnectorTimeout       the system did not answer in time
    └── CircuitOpen            too many failures in a row: calls fail fast for a while
"""

from __future__ import annotations


class ConnectorError(Exception):
    """A connector could not carry out a call."""


class UnknownTool(ConnectorError):
    """The call names a tool this connector does not have."""


class InvalidArguments(ConnectorError):
    """The arguments do not satisfy the tool's JSON schema."""


class ConnectorUnavailable(ConnectorError):
    """The system behind the connector cannot be reached."""


class ConnectorTimeout(ConnectorUnavailable):
    """The system did not answer in time."""


class CircuitOpen(ConnectorUnavailable):
    """The connector's circuit breaker is open: its system failed ``failures`` times in a
    row, so calls fail at once (no request) until ``retry_after`` seconds have passed."""

    def __init__(self, connector: str, failures: int, retry_after: float, last: str) -> None:
        self.connector = connector
        self.failures = failures
        self.retry_after = retry_after
        super().__init__(
            f"{connector}: circuit open after {failures} consecutive failures (last: {last}); "
            f"calls to {connector} fail fast for {retry_after:.0f}s more, then one is tried"
        )

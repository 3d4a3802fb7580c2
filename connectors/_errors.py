"""Connector errors, in one tree.

ConnectorError                 a connector could not carry out a call
├── UnknownTool                the call names a tool this connector does not have
├── InvalidArguments           the arguments do not satisfy the tool's JSON schema
├── ConnectorUnavailable       the system behind the connector cannot be reached
└── ConnectorTimeout           the system did not answer in time
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

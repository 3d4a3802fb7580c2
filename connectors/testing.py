"""Test helpers: a connector that wraps a plain function (like httpx's MockTransport)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from connectors._base import ToolCall, ToolResult, ToolSpec
from connectors._errors import UnknownTool

Handler = Callable[[ToolCall, str], ToolResult]


@dataclass
class FunctionConnector:
    """A connector whose ``invoke`` is ``handler(call, idempotency_key)``; it logs calls."""

    name: str
    specs: Sequence[ToolSpec]
    handler: Handler
    calls: list[tuple[ToolCall, str]] = field(default_factory=list)

    def tools(self) -> Sequence[ToolSpec]:
        return list(self.specs)

    def invoke(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        if call.tool not in {spec.name for spec in self.specs}:
            raise UnknownTool(f"{self.name} has no tool {call.tool!r}")
        self.calls.append((call, idempotency_key))
        return self.handler(call, idempotency_key)

"""The connector protocol: tools as specs, one ``invoke`` per call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Effect = Literal["read", "write"]


@dataclass(frozen=True)
class ToolSpec:
    """One tool a connector offers: its name, what it does, its JSON schema, its effect."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    effect: Effect = "read"
    connector: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"tool name must be a non-empty identifier, got {self.name!r}")
        if self.effect not in ("read", "write"):
            raise ValueError(f"tool {self.name}: effect must be 'read' or 'write'")
        if self.parameters.get("type", "object") != "object":
            raise ValueError(f"tool {self.name}: parameters must be a JSON schema of type object")

    def alpha_umi_doc(self) -> dict[str, Any]:
        """The tool in the α-UMi/ToolBench doc form: ``{"Name", "function", "input"}``."""
        props = self.parameters.get("properties", {})
        inputs = {}
        for arg, schema in props.items():
            kind = schema.get("type", "string")
            if isinstance(kind, list):
                kind = "/".join(kind)
            inputs[arg] = f"{kind}, {schema.get('description', '')}".rstrip()
            if not schema.get("description"):
                inputs[arg] = f"{kind}, "
        return {"Name": self.name, "function": self.description, "input": inputs}


@dataclass(frozen=True)
class ToolCall:
    """A call the caller model asked for: a tool name and JSON arguments."""

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResult:
    """What a connector returned: JSON-able data, or an error the model may read."""

    ok: bool
    data: Any = None
    error: str | None = None
    status: int | None = None

    def observation(self) -> str:
        """The observation text the planner sees (JSON, as ToolBench observations are)."""
        import json

        if self.ok:
            return json.dumps({"error": "", "response": self.data}, ensure_ascii=False)
        return json.dumps(
            {"error": self.error or "failed", "response": self.data}, ensure_ascii=False
        )


@runtime_checkable
class Connector(Protocol):
    """A way into one internal system.

    ``tools()`` lists what the system offers; ``invoke`` carries out one call. A
    side-effecting call carries an idempotency key (``task_id:step``) so that a
    redelivered task never repeats a write the system already made.
    """

    name: str

    def tools(self) -> Sequence[ToolSpec]: ...

    def invoke(self, call: ToolCall, idempotency_key: str) -> ToolResult: ...


@runtime_checkable
class DryRun(Protocol):
    """A connector that can show a write without making it (a department in shadow).

    ``dry_run`` validates the call as ``invoke`` would and returns what ``invoke`` would
    refuse, or ``ToolResult(ok=True, data={"dry_run": True, "sent": False, "would_send":
    …})`` with exactly what would go out; the target system does not change.
    """

    def dry_run(self, call: ToolCall, idempotency_key: str) -> ToolResult: ...

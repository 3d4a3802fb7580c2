"""The gate in front of every write a task makes: the kill switch, then the dry run.

A :class:`GatedToolbox` wraps the worker's toolbox for one task. Reads pass through.
Before every write it asks the kill switches (the department's and the global one) anew,
and stops the write when either is on or when they cannot be read (fail closed); in
``shadow`` it has the connector validate the write and describe exactly what it would
send (``DryRun``), and sends nothing. The episode records what comes back as the call's
result (a ``tool_call`` row of the audit chain), so a stopped or dry-run write is audited
like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from connectors import DryRun, ToolCall, ToolResult, ToolSpec
from worker.rollout.decide import Rollout

log = structlog.get_logger("umiq.rollout")

STOPPED = "stopped"
"""How a stopped write's error begins."""


class GatedToolbox:
    """One task's view of the toolbox: writes pass the kill switch and the dry run."""

    def __init__(
        self, toolbox: Any, rollout: Rollout, kill_switch: Callable[[], str | None]
    ) -> None:
        self.toolbox = toolbox
        self.rollout = rollout
        self._kill_switch = kill_switch

    def specs(self) -> list[ToolSpec]:
        return list(self.toolbox.specs())

    def spec(self, tool: str) -> ToolSpec:
        return self.toolbox.spec(tool)  # type: ignore[no-any-return]

    def connector_for(self, tool: str) -> Any:
        connector = self.toolbox.connector_for(tool)
        if self.toolbox.spec(tool).effect != "write":
            return connector
        return _GatedWrite(connector, self)

    def stopped(self) -> str | None:
        """Why writes must stop now, or None; a kill switch that cannot be read stops them."""
        try:
            return self._kill_switch()
        except Exception as exc:  # fail closed: whatever went wrong, no write
            return f"the kill switch could not be read ({type(exc).__name__}: {exc})"


class _GatedWrite:
    """A connector whose writes pass the gate (only ever handed out for write tools)."""

    def __init__(self, connector: Any, gate: GatedToolbox) -> None:
        self.connector = connector
        self.name = connector.name
        self.gate = gate

    def tools(self) -> Any:
        return self.connector.tools()

    def invoke(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        why = self.gate.stopped()
        if why is not None:
            log.warning("rollout.write_stopped", tool=call.tool, reason=why)
            return ToolResult(ok=False, error=f"{STOPPED}: {why}; the write was not made")
        if not self.gate.rollout.dry_run:
            return self.connector.invoke(call, idempotency_key)  # type: ignore[no-any-return]
        if not isinstance(self.connector, DryRun):
            return ToolResult(
                ok=False,
                error=f"not sent: the department is in shadow and connector {self.name!r} "
                "cannot dry-run a write",
            )
        result = self.connector.dry_run(call, idempotency_key)
        log.info("rollout.dry_run", tool=call.tool, ok=result.ok)
        return result

"""One call of an episode through the policies to a connector (DESIGN §6).

A call passes, in order, the access policy, token resolution, the tool's schema, the
idempotency check (key ``task_id:caller-step``) and the approval policy before a
connector runs it, and the response passes minimization before the model sees it. The
checks taken together are one ``policy`` step of the episode's trail. A refusal becomes
an observation the planner can read; two stops leave the loop as exceptions:

- :class:`AwaitingApproval`: a human must approve the call first (the request is a
  ``policy`` step naming the call's key);
- :class:`ReplayMismatch`: a call replayed after a redelivery is not the call committed
  under its key, so neither that call's response nor a new write is made.

A system that is down (``ConnectorUnavailable``) is a denied ``connector`` policy step and
the error goes up for the task to be retried; the model never reads an outage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog

from connectors import (
    ConnectorError,
    ConnectorUnavailable,
    InvalidArguments,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from connectors._schema import validate_arguments
from policies import Decision
from worker.agent import replay
from worker.agent.guard import Guard
from worker.agent.trail import Trail
from worker.audit.events import APPROVAL_REQUESTED
from worker.audit.protocol import AuditLogProtocol
from worker.toolbox import Toolbox

log = structlog.get_logger("umiq.agent")


class AwaitingApproval(Exception):
    """The call ``key`` waits for a human (control flow inside the episode)."""

    def __init__(self, key: str, reasons: Sequence[str]) -> None:
        super().__init__(key)
        self.key = key
        self.reasons = list(reasons)


class ReplayMismatch(Exception):
    """A committed call under this step's key is not the call being replayed."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


class Calls:
    """Runs one task's calls: its guard decides, its trail records, its toolbox calls."""

    def __init__(
        self,
        task_id: str,
        *,
        toolbox: Toolbox,
        guard: Guard,
        audit: AuditLogProtocol,
        trail: Trail,
    ) -> None:
        self.task_id = task_id
        self.toolbox = toolbox
        self.guard = guard
        self.audit = audit
        self.trail = trail

    def execute(self, call: ToolCall, caller_step: int) -> ToolResult:
        """Access, tokens, schema, idempotency, approval, connector, minimization.

        Refusals become observations the planner can read; the caller step's index
        makes the idempotency key, stable across redeliveries and resumes.
        """
        key = f"{self.task_id}:{caller_step}"
        try:
            spec = self.toolbox.spec(call.tool)
        except ConnectorError as exc:
            self.trail.decisions([Decision(False, "access", (str(exc),))], call.tool)
            return ToolResult(ok=False, error=f"refused: {exc}")
        decisions = [self.guard.check_access(spec)]
        raw: dict[str, Any] | None = None
        if decisions[-1].allowed:
            raw, resolved = self.guard.resolve(call.arguments)
            decisions.append(resolved)
        if raw is not None:
            try:
                validate_arguments(spec.parameters, raw)
                decisions.append(Decision(True, "schema", ("arguments match the tool's schema",)))
            except InvalidArguments as exc:
                message = str(self.guard.tokenize(str(exc)))  # it may quote raw values
                decisions.append(Decision(False, "schema", (message,)))
        if raw is None or not decisions[-1].allowed:
            self.trail.decisions(decisions, spec.name)
            denied = decisions[-1]
            prefix = "invalid arguments" if denied.policy == "schema" else "refused"
            return ToolResult(ok=False, error=f"{prefix}: " + "; ".join(denied.reasons))

        committed = self.audit.tool_call_by_key(key)
        if committed is not None:  # a redelivery: the call already happened
            committed = self._open(committed)
            mismatch = replay.call_mismatch(
                key, (committed.tool, committed.request), (spec.name, raw)
            )
            if mismatch is not None:  # never another call's response, never a new write
                mismatch = str(self.guard.tokenize(mismatch))  # the requests hold raw values
                decisions.append(Decision(False, "replay", (mismatch,)))
                self.trail.decisions(
                    decisions, spec.name, extra={"key": key, "committed_tool": committed.tool}
                )
                raise ReplayMismatch(key, mismatch)
            decisions.append(Decision(True, "idempotency", (f"call {key} already made: replayed",)))
            self.trail.decisions(decisions, spec.name)
            result = ToolResult(ok=committed.ok, data=committed.response, error=committed.error)
            return self.minimized(spec, result)
        decisions.append(self.guard.check_approval(spec, raw, key))
        if not decisions[-1].allowed:
            self.trail.decisions(
                decisions,
                spec.name,
                extra={
                    "status": APPROVAL_REQUESTED,
                    "key": key,
                    "caller_step": caller_step,
                    "effect": spec.effect,
                    "arguments": dict(call.arguments),
                },
            )
            raise AwaitingApproval(key, decisions[-1].reasons)
        self.trail.decisions(decisions, spec.name)
        started = time.perf_counter()
        try:
            result = self.toolbox.connector_for(spec.name).invoke(ToolCall(spec.name, raw), key)
        except ConnectorUnavailable as exc:
            # The system is down (retries spent, or its circuit is open): nothing is
            # committed under the key and the task is retried later, when a resume replays
            # up to this call and makes it then. The model never reads an outage.
            why = str(self.guard.tokenize(str(exc)))
            self.trail.decisions(
                [Decision(False, "connector", (why,))],
                spec.name,
                extra={"key": key, "retryable": True, "error": type(exc).__name__},
            )
            raise
        except ConnectorError as exc:
            result = ToolResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        self.audit.append_tool_call(
            task_id=self.task_id,
            step=caller_step,
            idempotency_key=key,
            tool=spec.name,
            effect=spec.effect,
            request=dict(raw),
            response=result.data,
            ok=result.ok,
            error=None if result.error is None else str(self.guard.tokenize(result.error)),
        )
        log.info(
            "tool.called",
            tool=spec.name,
            ok=result.ok,
            latency_ms=round((time.perf_counter() - started) * 1000),
        )
        return self.minimized(spec, result)

    def minimized(self, spec: ToolSpec, result: ToolResult) -> ToolResult:
        """What the model may see of a connector's result; the decision is recorded."""
        visible, decision = self.guard.visible(spec, result)
        if decision is not None:
            self.trail.decisions([decision], spec.name)
        return visible

    def _open(self, value: Any) -> Any:
        unseal = getattr(self.audit, "unseal", None)
        return unseal(value) if unseal is not None else value

"""Checker verdicts: a world's checker judges a finished task, and the verdict is recorded.

The worker cannot judge its own tasks: what a right result is belongs to whoever drew the
task (the live evaluation harness, a shadow run), which holds the instance and the
systems it was run against and checks them through the world protocol
(``worker.world.World.check``, via ``worker.evaluation.live.score_task``). That caller
hands the score to :func:`record_checked`, which appends it as a ``checker`` verdict
(``worker.rollout.verdict``), so the promotion report's pass rate exists without a person
typing it.

In ``shadow`` nothing was written, so a checker that reads the systems' state would fail
every write task. :func:`make_shadow_writes` makes the shadow run's dry-run writes, exactly
as recorded (tool, arguments, idempotency key), through the worker's own connectors on
systems the caller has just reset; the checker then sees the state the agent would have
left, and :func:`shadow_result` is the agent's result as scoring reads it. The caller
resets the systems afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from connectors import ToolCall, ToolResult
from worker.audit.events import outcome_of
from worker.audit.protocol import AuditLogProtocol
from worker.errors import HumanOutcomeError
from worker.rollout.human import NOT_AUTOMATED, shadow_run
from worker.rollout.verdict import record_verdict

log = structlog.get_logger("umiq.rollout")


def record_checked(
    audit: AuditLogProtocol, task_id: str, *, passed: bool, reasons: Sequence[str], checker: str
) -> dict[str, Any] | None:
    """Record checker ``checker``'s verdict on ``task_id``; None, and nothing recorded,
    when the task is unknown or has not ended (a task stuck past its timeout)."""
    task = audit.task(task_id)
    steps = audit.steps(task_id) if task is not None else []
    if not any(s.kind in ("outcome", "rejected") for s in steps):
        log.warning("rollout.not_checked", task_id=task_id, why="the task has not ended")
        return None
    return record_verdict(
        audit, task_id, passed=passed, by=checker, source="checker", reasons=reasons
    )


def shadow_result(audit: AuditLogProtocol, task_id: str) -> dict[str, Any]:
    """The agent's own end of a shadow task (before it went to people), as the result
    dict scoring reads: ``task_id``, ``outcome``, ``answer`` (raw), ``reason``."""
    steps = audit.steps(task_id)
    agent = shadow_run(audit, task_id, steps)
    own = [e for s in steps if (e := outcome_of(s)) is not None and e.outcome == agent["outcome"]]
    reason = own[-1].reason if own else None
    return {
        "task_id": task_id,
        "outcome": agent["outcome"],
        "answer": agent["answer"],
        "reason": str(reason) if reason is not None else "",
    }


def make_shadow_writes(audit: AuditLogProtocol, task_id: str, toolbox: Any) -> list[ToolResult]:
    """Make task ``task_id``'s dry-run writes for real, in their order, through
    ``toolbox`` (``worker.toolbox.Toolbox`` over the systems, just reset by the caller).

    Refused (``HumanOutcomeError``) for a task that did not run in shadow: its writes, if any,
    were already made or stopped.
    """
    steps = audit.steps(task_id)
    ends = [s.details for s in steps if s.kind == "outcome"]
    if not any(d.get("outcome") == NOT_AUTOMATED and d.get("mode") == "shadow" for d in ends):
        raise HumanOutcomeError(
            f"task {task_id!r} did not run in shadow: it has no dry-run writes to make"
        )
    results = []
    for call in audit.tool_calls(task_id):
        if call.effect != "write" or not call.ok:
            continue
        opened = audit.unseal(call)
        response = opened.response if isinstance(opened.response, dict) else {}
        if not response.get("dry_run"):
            continue
        made = toolbox.connector_for(call.tool).invoke(
            ToolCall(call.tool, dict(opened.request)), call.idempotency_key
        )
        log.info("rollout.shadow_write_made", tool=call.tool, ok=made.ok)
        results.append(made)
    return results

"""Reading a task's steps for what waits on it: shared by both kinds of wait."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from worker.audit.events import OutcomeDetails
from worker.audit.protocol import AuditLogProtocol
from worker.audit.records import StepRecord, TaskRecord

T = TypeVar("T")


def last_outcome_if(steps: Sequence[StepRecord], outcome: str) -> StepRecord | None:
    """The task's last ``outcome`` step when it is ``outcome`` (the task still waits in
    that state: nobody decided it since), else None."""
    last = next((s for s in reversed(steps) if s.kind == "outcome"), None)
    if last is None or OutcomeDetails.from_details(last.details).outcome != outcome:
        return None
    return last


def scan(
    audit: AuditLogProtocol,
    find: Callable[[TaskRecord, Sequence[StepRecord]], T | None],
    *,
    department: str | None = None,
    limit: int = 500,
) -> list[T]:
    """``find(task, steps)`` over the ``limit`` most recent tasks (of ``department``): what
    it found, in task order. Shared by everything that waits for a human."""
    out = []
    for task in audit.tasks(limit=limit):
        if department is not None and task.department != department:
            continue
        found = find(task, audit.steps(task.task_id))
        if found is not None:
            out.append(found)
    return out

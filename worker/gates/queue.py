"""One queue of what waits for a human, with two kinds of wait.

A task waits for a human in one of two ways, never both (its last outcome says which):
a **held call** (``awaiting_approval``: a policy held a call before it was made,
:mod:`worker.gates.calls`) or a **held answer** (``held``: the claims policy held the
answer before anyone was told it, :mod:`worker.gates.answers`). Each wait has a
``kind`` (``call`` or ``answer``), a ``task_id``, a ``department``, a ``seq`` (where
it began on the chain: the queue's order) and a ``since``. :func:`approve` and
:func:`reject` decide whichever wait a task has; the review page's tab is :func:`tab`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.audit.protocol import AuditLogProtocol
from worker.audit.records import StepRecord, TaskRecord
from worker.errors import DecisionError
from worker.gates._steps import scan
from worker.gates.answers import AnswerDecision, HeldAnswer, decide_answer, held_in
from worker.gates.calls import ApprovalDecision, PendingApproval, decide, pending_in

Wait = PendingApproval | HeldAnswer
"""Something a task waits for a human on: a held call or a held answer."""
KINDS = ("call", "answer")


def waiting_in(task: TaskRecord, steps: Sequence[StepRecord]) -> Wait | None:
    """What ``task`` (with its ``steps``) waits for a human on, or None."""
    return pending_in(task, steps) or held_in(task, steps)


def waiting(
    audit: AuditLogProtocol,
    *,
    department: str | None = None,
    kind: str | None = None,
    limit: int = 500,
) -> list[Wait]:
    """Every wait among the ``limit`` most recent tasks (of ``department``, of ``kind``),
    oldest first."""
    found = scan(audit, waiting_in, department=department, limit=limit)
    return sorted((w for w in found if kind in (None, w.kind)), key=lambda w: w.seq)


def wait_for(audit: AuditLogProtocol, task_id: str) -> Wait:
    """What ``task_id`` waits for a human on; DecisionError when nothing."""
    task = audit.task(task_id)
    found = None if task is None else waiting_in(task, audit.steps(task_id))
    if found is None:
        raise DecisionError(
            f"task {task_id!r} waits for no human decision (no call waiting for approval, no "
            "answer held for review: `umiq audit show` tells why)"
        )
    return found


def approve(
    audit: AuditLogProtocol, task_id: str, *, by: str, reason: str, **options: Any
) -> ApprovalDecision | AnswerDecision:
    """Let ``task_id``'s wait through: approve its held call, or release its held answer.
    ``options`` go to the kind's own decision (``enqueue``, ``signer``)."""
    wait = wait_for(audit, task_id)
    if wait.kind == "call":
        return decide(audit, task_id, verdict="approved", by=by, reason=reason, **options)
    options.pop("enqueue", None)
    return decide_answer(audit, task_id, verdict="released", by=by, reason=reason, **options)


def reject(
    audit: AuditLogProtocol, task_id: str, *, by: str, reason: str, **options: Any
) -> ApprovalDecision | AnswerDecision:
    """Reject ``task_id``'s wait, a held call or a held answer: the task ends rejected."""
    wait = wait_for(audit, task_id)
    if wait.kind == "call":
        return decide(audit, task_id, verdict="rejected", by=by, reason=reason, **options)
    options.pop("enqueue", None)
    return decide_answer(audit, task_id, verdict="rejected", by=by, reason=reason, **options)


@dataclass(frozen=True)
class Tab:
    """The review page's tab of waits: the held calls and the held answers, oldest first."""

    calls: list[PendingApproval]
    answers: list[HeldAnswer]

    @property
    def count(self) -> int:
        return len(self.calls) + len(self.answers)


def tab(audit: AuditLogProtocol, *, department: str | None = None, limit: int = 500) -> Tab:
    """The waits of the ``limit`` most recent tasks, in one pass, as the review tab shows."""
    found = waiting(audit, department=department, limit=limit)
    return Tab(
        [w for w in found if isinstance(w, PendingApproval)],
        [w for w in found if isinstance(w, HeldAnswer)],
    )

"""Held answers: the claims policy stopped them; a human releases or rejects.

An episode whose answer states a change its calls do not back ends ``held`` (see
``policies._claims``): the answer is in the audit log, nobody has been told it. A
reviewer reads it beside its trace and decides. The decision is a ``policy`` step
(``policy: claims``, ``status`` ``released`` or ``rejected``, who, why) followed by an
``outcome`` step: ``answered`` with the held answer when released (the reviewer vouches
for it), ``rejected`` when not. Both land on the task's chain, so the audit trail shows
who let which answer out.

Pure reads and appends over the audit log: the CLI, the review page and the tests share
these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from worker.audit import decisions
from worker.audit.events import OutcomeDetails, PolicyDetails
from worker.audit.protocol import AuditLogProtocol
from worker.audit.records import StepRecord, TaskRecord
from worker.errors import HeldAnswerError
from worker.gates._steps import last_outcome_if, scan

AnswerVerdict = Literal["released", "rejected"]
VERDICTS: tuple[AnswerVerdict, ...] = ("released", "rejected")


@dataclass(frozen=True)
class HeldAnswer:
    """An answer the claims policy held: what it says and why it was held."""

    kind: ClassVar[str] = "answer"
    task_id: str
    department: str
    query: str
    answer: str
    """As the model wrote it: personal data appears as this task's tokens."""
    reasons: list[str]
    held_at: datetime
    held_seq: int

    @property
    def seq(self) -> int:
        """Where the wait began on the chain (the held outcome's seq): the queue's order."""
        return self.held_seq

    @property
    def since(self) -> datetime:
        return self.held_at

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["held_at"] = self.held_at.isoformat()
        return data


@dataclass(frozen=True)
class AnswerDecision:
    """A recorded decision on a held answer."""

    task_id: str
    verdict: AnswerVerdict
    by: str
    reason: str
    seq: int


def _item(task: TaskRecord, outcome: StepRecord) -> HeldAnswer:
    reason = str(OutcomeDetails.from_details(outcome.details).reason or "")
    return HeldAnswer(
        task_id=task.task_id,
        department=task.department,
        query=task.query,
        answer=outcome.output,
        reasons=[r for r in reason.split("; ") if r],
        held_at=outcome.created_at,
        held_seq=outcome.seq,
    )


def held(
    audit: AuditLogProtocol, *, department: str | None = None, limit: int = 500
) -> list[HeldAnswer]:
    """Answers waiting for a human among the ``limit`` most recent tasks, oldest first."""
    found = scan(audit, held_in, department=department, limit=limit)
    return sorted(found, key=lambda h: h.held_seq)


def held_in(task: TaskRecord, steps: Sequence[StepRecord]) -> HeldAnswer | None:
    """The answer of ``task`` (with its ``steps``) held for review, or None."""
    outcome = last_outcome_if(steps, "held")
    return None if outcome is None else _item(task, outcome)


def held_for(audit: AuditLogProtocol, task_id: str) -> HeldAnswer:
    """The held answer of ``task_id``; HeldAnswerError when there is none."""
    task = audit.task(task_id)
    if task is None:
        raise HeldAnswerError(f"no task {task_id!r} in the audit log")
    outcome = last_outcome_if(audit.steps(task_id), "held")
    if outcome is None:
        raise HeldAnswerError(
            f"task {task_id!r} has no answer held for review (it was never held, or it was "
            "already released or rejected: `umiq audit show` tells which)"
        )
    return _item(task, outcome)


def decide_answer(
    audit: AuditLogProtocol,
    task_id: str,
    *,
    verdict: AnswerVerdict,
    by: str,
    reason: str,
    signer: Ed25519PrivateKey | None = None,
) -> AnswerDecision:
    """Record a human's decision on the held answer of ``task_id``.

    ``released`` ends the task ``answered`` with the held answer; ``rejected`` ends it
    ``rejected``. Either way the reviewer's name and reason are on the chain; with
    ``signer`` (the deciding service's decision key) the decision is signed.
    """
    if verdict not in VERDICTS:
        raise HeldAnswerError(f"verdict must be 'released' or 'rejected', not {verdict!r}")
    by, reason = by.strip(), reason.strip()
    if not by:
        raise HeldAnswerError("a decision must say who takes it (--by)")
    if not reason:
        raise HeldAnswerError("a decision must give its reason (--reason)")
    item = held_for(audit, task_id)
    index = max(s.index for s in audit.steps(task_id)) + 1
    released = verdict == "released"
    decision = PolicyDetails(
        policy="claims",
        allowed=released,
        status=verdict,
        by=by,
        reasons=[f"answer {verdict} by {by}: {reason}"],
    )
    if signer is not None:
        decision = decisions.sign(signer, task_id, replace(decision, on_seq=item.held_seq))
    record = audit.append_step(
        task_id=task_id,
        index=index,
        kind="policy",
        output=verdict,
        details=decision.to_details(),
    )
    audit.append_step(
        task_id=task_id,
        index=index + 1,
        kind="outcome",
        output=item.answer if released else "",
        details=OutcomeDetails(
            outcome="answered" if released else "rejected",
            reason=f"held answer {verdict} by {by}: {reason}",
        ).to_details(),
    )
    return AnswerDecision(task_id, verdict, by, reason, record.seq)

"""Held calls: the calls that wait for a human's approval, and the human's decision.

An episode that meets a call needing approval records a ``policy`` step with
``status="requested"`` and the call's idempotency key, then ends as
``awaiting_approval``. A decision is another ``policy`` step (``status`` ``approved`` or
``rejected``, who, when, why) appended to the same chain, so the audit trail shows who
let which call through. Approval enqueues ``umiq.resume_task``, which replays the
committed steps and goes on; rejection ends the task with an ``outcome`` step.

Four eyes: whoever approves a call is not the task's requester (``requested_by``), is
among the rule's ``approvers`` when it names some, and, when the rule asks for
``distinct_approvers``, approved no earlier call of the same task. The CLI and the review
page both decide through :func:`decide`, so both enforce it. (The names are what the CLI's
``--by`` or the review page's login says; docs/security.md says what that does not cover.)

Pure reads and appends over the audit log: the CLI, the review page and the tests share
these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from worker.audit import decisions
from worker.audit.events import (
    APPROVED,
    OutcomeDetails,
    PolicyDetails,
    policy_of,
)
from worker.audit.protocol import AuditLogProtocol
from worker.audit.records import StepRecord, TaskRecord
from worker.audit.requester import is_requester
from worker.errors import ApprovalError
from worker.gates._steps import last_outcome_if, scan

Verdict = Literal["approved", "rejected"]


@dataclass(frozen=True)
class PendingApproval:
    """A call waiting for a human: what it would do and why it waits."""

    kind: ClassVar[str] = "call"
    task_id: str
    department: str
    query: str
    key: str
    tool: str
    effect: str
    arguments: dict[str, Any]
    """As the model wrote them: personal data appears as this task's tokens."""
    reasons: list[str]
    requested_at: datetime
    request_seq: int
    approvers: list[str] | None = None
    """Who may approve it (None: anyone but the requester)."""
    distinct_approvers: bool = False
    """The approver must not have approved an earlier call of the task."""

    @property
    def seq(self) -> int:
        """Where the wait began on the chain (the request's seq): the queue's order."""
        return self.request_seq

    @property
    def since(self) -> datetime:
        return self.requested_at

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["requested_at"] = self.requested_at.isoformat()
        return data


@dataclass(frozen=True)
class ApprovalDecision:
    """A recorded decision."""

    task_id: str
    key: str
    verdict: Verdict
    by: str
    reason: str
    seq: int


def _waiting_key(outcome: StepRecord) -> str | None:
    """The key of the call an ``awaiting_approval`` outcome step waits for."""
    return OutcomeDetails.from_details(outcome.details).key


def _decision_on(steps: Sequence[StepRecord], key: str | None, after: int) -> StepRecord | None:
    """The last human decision (approved or rejected) on call ``key`` after seq ``after``."""
    return next(
        (
            s
            for s in reversed(steps)
            if s.seq > after and (p := policy_of(s)) is not None and p.decides_call(key)
        ),
        None,
    )


def _awaiting(steps: Sequence[StepRecord]) -> StepRecord | None:
    """The task's last ``outcome`` step when it is ``awaiting_approval`` (the task still
    waits: not decided into a resume or a rejection), else None."""
    return last_outcome_if(steps, "awaiting_approval")


def _pending_in(steps: Sequence[StepRecord]) -> StepRecord | None:
    """The open approval request of a task's steps, or None."""
    last_outcome = _awaiting(steps)
    if last_outcome is None:
        return None
    key = _waiting_key(last_outcome)
    if _decision_on(steps, key, last_outcome.seq) is not None:
        return None
    return next(
        (
            s
            for s in reversed(steps)
            if (p := policy_of(s)) is not None and p.key == key and p.is_approval_request
        ),
        None,
    )


def _item(task: TaskRecord, request: StepRecord) -> PendingApproval:
    d = PolicyDetails.from_details(request.details)
    deciding = d.deciding  # the approval check (the step holds every check's)
    held = dict(deciding.get("details") or {})
    approvers = held.get("approvers")
    if d.key is None:
        raise ApprovalError(f"task {task.task_id!r}: approval request seq {request.seq} has no key")
    return PendingApproval(
        task_id=task.task_id,
        department=task.department,
        query=task.query,
        key=d.key,
        tool=d.tool or "",
        effect=d.effect if d.effect is not None else "",
        arguments=dict(d.arguments or {}),
        reasons=list(deciding.get("reasons") or []),
        requested_at=request.created_at,
        request_seq=request.seq,
        approvers=None if approvers is None else [str(a) for a in approvers],
        distinct_approvers=bool(held.get("distinct_approvers", False)),
    )


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def four_eyes(
    task: TaskRecord,
    item: PendingApproval,
    steps: Sequence[StepRecord],
    by: str,
    pseudonym_key: str | None = None,
) -> str | None:
    """Why ``by`` may not approve ``item`` of ``task``, or None when they may.

    A pseudonymized requester (``worker.audit.requester``) is compared by its keyed
    hash; without ``pseudonym_key`` it cannot be, and the approval is refused.
    """
    own = is_requester(task.requested_by, by, pseudonym_key)
    if own is None:
        return (
            f"the requester of task {task.task_id!r} is pseudonymized and this service has "
            "no UMIQ_PSEUDONYM_KEY to tell whether it is {by}: set it to approve"
        ).replace("{by}", by)
    if own:
        return (
            f"{by} requested task {task.task_id!r} and cannot approve its own call: "
            "a second person must"
        )
    if item.approvers is not None and not any(_same(by, a) for a in item.approvers):
        named = ", ".join(item.approvers) or "nobody"
        return f"{by} may not approve {item.tool}: the rule names its approvers ({named})"
    if item.distinct_approvers:
        earlier = {
            str(p.by if p.by is not None else "")
            for s in steps
            if (p := policy_of(s)) is not None and p.status == APPROVED and s.seq < item.request_seq
        }
        if any(_same(by, name) for name in earlier):
            return (
                f"{by} approved an earlier call of task {task.task_id!r}; this rule needs "
                "another person for each approval"
            )
    return None


def pending(
    audit: AuditLogProtocol, *, department: str | None = None, limit: int = 500
) -> list[PendingApproval]:
    """Calls waiting for a human among the ``limit`` most recent tasks, oldest first."""
    found = scan(audit, pending_in, department=department, limit=limit)
    return sorted(found, key=lambda p: p.request_seq)


def pending_in(task: TaskRecord, steps: Sequence[StepRecord]) -> PendingApproval | None:
    """The call of ``task`` (with its ``steps``) that waits for a human, or None."""
    request = _pending_in(steps)
    return None if request is None else _item(task, request)


def pending_for(audit: AuditLogProtocol, task_id: str) -> PendingApproval:
    """The call of ``task_id`` that waits for a human; ApprovalError when there is none."""
    task = audit.task(task_id)
    if task is None:
        raise ApprovalError(f"no task {task_id!r} in the audit log")
    request = _pending_in(audit.steps(task_id))
    if request is None:
        raise ApprovalError(
            f"task {task_id!r} has no call waiting for approval (it never asked, or it was "
            "already approved or rejected: `umiq audit show` tells which)"
        )
    return _item(task, request)


def decide(
    audit: AuditLogProtocol,
    task_id: str,
    *,
    verdict: Verdict,
    by: str,
    reason: str,
    enqueue: Any | None = None,
    signer: Ed25519PrivateKey | None = None,
    pseudonym_key: str | None = None,
) -> ApprovalDecision:
    """Record a human's decision on the waiting call of ``task_id``.

    ``approved`` calls ``enqueue(task_id, key)`` (by default: send ``umiq.resume_task``);
    ``rejected`` ends the task as ``rejected`` with the reason. With ``signer`` (the
    deciding service's decision key) the decision is signed (``worker.audit.decisions``).
    """
    if verdict not in ("approved", "rejected"):
        raise ApprovalError(f"verdict must be 'approved' or 'rejected', not {verdict!r}")
    by, reason = by.strip(), reason.strip()
    if not by:
        raise ApprovalError("a decision must say who takes it (--by)")
    if not reason:
        raise ApprovalError("a decision must give its reason (--reason)")
    item = pending_for(audit, task_id)
    steps = audit.steps(task_id)
    index = max(s.index for s in steps) + 1
    approved = verdict == "approved"
    if approved:
        task = audit.task(task_id)
        assert task is not None  # pending_for found it
        refused = four_eyes(task, item, steps, by, pseudonym_key)
        if refused is not None:
            raise ApprovalError(refused)
    decision = PolicyDetails(
        policy="approval",
        allowed=approved,
        status=verdict,
        key=item.key,
        tool=item.tool,
        by=by,
        reasons=[f"{verdict} by {by}: {reason}"],
    )
    if signer is not None:
        waiting = _awaiting(steps)
        assert waiting is not None  # pending_for found the waiting call
        decision = decisions.sign(signer, task_id, replace(decision, on_seq=waiting.seq))
    record = audit.append_step(
        task_id=task_id,
        index=index,
        kind="policy",
        output=verdict,
        details=decision.to_details(),
    )
    if approved:
        (enqueue or send_resume)(task_id, item.key)
    else:
        ending = OutcomeDetails(
            outcome="rejected", reason=f"{item.tool} rejected by {by}: {reason}", key=item.key
        )
        audit.append_step(
            task_id=task_id,
            index=index + 1,
            kind="outcome",
            output="",
            details=ending.to_details(),
        )
    return ApprovalDecision(task_id, item.key, verdict, by, reason, record.seq)


def resend(audit: AuditLogProtocol, task_id: str, *, enqueue: Any | None = None) -> str:
    """Send the resume of ``task_id``'s approved call again; returns the call's key.

    For a task that was approved but never resumed: the broker lost the resume message,
    or the resume task failed its retries and was dead-lettered before it made the call.
    Safe to repeat: the resume task runs only while :func:`approved_key` allows it, and
    the held call carries its idempotency key. ApprovalError when nothing waits to resume
    (the task is unknown, still waiting for a decision, rejected, or already resumed).
    """
    steps = audit.steps(task_id)
    if not steps:
        raise ApprovalError(f"no task {task_id!r} in the audit log")
    last_outcome = _awaiting(steps)
    if last_outcome is None:
        raise ApprovalError(
            f"task {task_id!r} is not waiting for approval (it never asked, or it was "
            "rejected or already resumed: `umiq audit show` tells which)"
        )
    key = _waiting_key(last_outcome)
    if key is None:
        raise ApprovalError(f"task {task_id!r} waits for approval of no recorded call")
    may, why = approved_key(steps, key)
    if not may:
        raise ApprovalError(f"task {task_id!r} cannot resume: {why}")
    (enqueue or send_resume)(task_id, key)
    return key


def send_resume(task_id: str, key: str, department: str | None = None) -> None:
    """Enqueue the resume task on the broker of the current settings, on the queue of
    the task's department (``worker.rollout.queues``; read from the audit log when not
    given and departments have queues of their own)."""
    from worker.celery_app import RESUME_TASK_NAME, create_app, route_options
    from worker.rollout.queues import department_queues
    from worker.settings import get_settings

    settings = get_settings()
    if department is None and department_queues(settings):
        from worker import runtime

        task = runtime.audit_log().task(task_id)
        department = task.department if task is not None else None
    create_app(settings).send_task(
        RESUME_TASK_NAME, args=[task_id, key], **route_options(settings, department)
    )


def approved_key(steps: Sequence[StepRecord], key: str) -> tuple[bool, str]:
    """May a resume for ``key`` run now? (True, "") or (False, why not)."""
    last_outcome = _awaiting(steps)
    if last_outcome is None:
        return False, "the task is not waiting for approval (already resumed or ended)"
    waiting = _waiting_key(last_outcome)
    if waiting != key:
        return False, f"the task waits for call {waiting!r}, not {key!r}"
    decision = _decision_on(steps, key, last_outcome.seq)
    if decision is None or PolicyDetails.from_details(decision.details).status != APPROVED:
        return False, f"call {key!r} has not been approved"
    later = [s for s in steps if s.seq > decision.seq]
    if later:
        return False, "the task was already resumed after this approval"
    return True, ""


def forged_approval(
    steps: Sequence[StepRecord], key: str, public_key: Ed25519PublicKey | None
) -> str | None:
    """Why the approval that lets call ``key`` resume does not count, or None when it does.

    Checked by the worker before a resume (after :func:`approved_key` allowed it): with
    a decision public key, the approval must be signed by its key and answer the wait it
    is recorded after. Without one (``public_key`` None) every approval counts, as
    before decisions were signed.
    """
    if public_key is None:
        return None
    waiting = _awaiting(steps)
    decision = None if waiting is None else _decision_on(steps, key, waiting.seq)
    if waiting is None or decision is None:
        return f"call {key!r} has no approval to check"
    details = PolicyDetails.from_details(decision.details)
    why = decisions.problem(decision.task_id, details, public_key)
    if why is None and details.on_seq != waiting.seq:
        why = (
            f"the signed approval answers seq {details.on_seq}, the task waits since seq "
            f"{waiting.seq}: an approval copied from another wait"
        )
    if why is None:
        return None
    return f"approval of {key} (audit seq {decision.seq}, by {details.by}) refused at resume: {why}"

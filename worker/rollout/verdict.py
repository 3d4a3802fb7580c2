"""Verdicts: whether a task's result was right, said by a checker or a person.

A verdict is a ``policy`` step appended to the task's chain (``policy`` ``verdict``, with
``verdict`` pass or fail, ``source`` checker or human, ``by``, and the reasons sealed as
``verdict_reasons``: a checker's quote the facts it expected, an IBAN or a name among them), so
it is audited like a decision and never changes the task's outcome. A task may be judged more
than once (a checker, then a person who looked again); the report counts the last.

The promotion report's pass rate is computed over the tasks that have a verdict; a
``shadow`` task whose person's outcome was compared with the agent's counts too: the
person did the task, and the agreement is their verdict on the shadow run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.audit.events import PolicyDetails
from worker.audit.protocol import AuditLogProtocol
from worker.errors import HumanOutcomeError

VERDICT_POLICY = "verdict"
VERDICTS = ("pass", "fail")
SOURCES = ("checker", "human")


def record_verdict(
    audit: AuditLogProtocol,
    task_id: str,
    *,
    passed: bool,
    by: str,
    source: str = "human",
    reasons: Sequence[str] = (),
) -> dict[str, Any]:
    """Append a verdict on task ``task_id`` and return its details."""
    if source not in SOURCES:
        raise HumanOutcomeError(f"a verdict's source must be one of {', '.join(SOURCES)}")
    if not by.strip():
        raise HumanOutcomeError("a verdict needs the name of who (or which checker) gave it")
    if audit.task(task_id) is None:
        raise HumanOutcomeError(f"no task {task_id!r} in the audit log")
    steps = audit.steps(task_id)
    if not any(s.kind in ("outcome", "rejected") for s in steps):
        raise HumanOutcomeError(f"task {task_id!r} has not ended yet: nothing to judge")
    given = PolicyDetails(
        policy=VERDICT_POLICY, verdict="pass" if passed else "fail", source=source, by=by.strip()
    )
    details = given.to_details()
    said = [str(r) for r in reasons]
    index = max((s.index for s in steps), default=0) + 1
    output = f"{given.verdict} ({source}: {given.by})"
    audit.append_step(
        task_id=task_id, index=index, kind="policy", output=output, details=details,
        sealed={"verdict_reasons": said} if said else None,
    )  # fmt: skip
    return {**details, "reasons": said}


def verdict_of(details: PolicyDetails | Mapping[str, Any]) -> tuple[str, bool] | None:
    """``(source, passed)`` of a verdict step's details; None for any other step."""
    if not isinstance(details, PolicyDetails):
        details = PolicyDetails.from_details(details)
    if details.policy != VERDICT_POLICY or details.verdict not in VERDICTS:
        return None
    return str(details.source or "human"), details.verdict == "pass"

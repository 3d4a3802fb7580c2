"""A held answer released and another rejected on a real Postgres, as the worker role."""

from __future__ import annotations

import pytest

from worker.audit import AuditLog, upgrade
from worker.gates.answers import HeldAnswerError, decide_answer, held

pytestmark = pytest.mark.integration


def test_held_answers_are_decided_on_the_append_only_chain(postgres_url: str) -> None:
    upgrade(postgres_url)
    audit = AuditLog.from_url(postgres_url, role="umiq_worker")
    try:
        for task_id, answer in (("t-1", "INV-1 is scheduled."), ("t-2", "INV-2 was paid.")):
            audit.append_task(
                task_id=task_id, department="finance", query="pay", requested_by="ana"
            )
            audit.append_step(
                task_id=task_id,
                index=1,
                kind="outcome",
                output=answer,
                details={"outcome": "held", "reason": "the answer says 'scheduled' (…)"},
            )
        assert [h.task_id for h in held(audit)] == ["t-1", "t-2"]
        decide_answer(audit, "t-1", verdict="released", by="carol", reason="checked the ERP")
        decide_answer(audit, "t-2", verdict="rejected", by="dave", reason="no payment exists")
        assert audit.outcome("t-1")["answer"] == "INV-1 is scheduled."  # type: ignore[index]
        assert audit.outcome("t-1")["outcome"] == "answered"  # type: ignore[index]
        assert audit.outcome("t-2")["outcome"] == "rejected"  # type: ignore[index]
        assert held(audit) == []
        with pytest.raises(HeldAnswerError, match="already released or rejected"):
            decide_answer(audit, "t-1", verdict="rejected", by="dave", reason="late")
        report = audit.verify()
        assert report.ok, report
    finally:
        audit.close()

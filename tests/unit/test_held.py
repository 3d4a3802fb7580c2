"""Held answers: the claims policy holds an unbacked answer; a human releases or rejects it."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.audit import AuditLog, ensure_schema
from worker.gates.answers import HeldAnswerError, decide_answer, held, held_for

from .test_episode import ENV, Scripted, erp, run

CLAIM = "INV-1 is scheduled for payment on 2025-03-17."


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url)


def holding(audit: AuditLog, answer: str = CLAIM) -> None:
    """An episode that read INV-1 and answers that it is scheduled: held."""
    audit.append_task(
        task_id=ENV.task_id,
        department=ENV.department,
        query=ENV.query,
        requested_by=ENV.requested_by,
    )
    model = Scripted(
        planner=["Fetch it.\n Next: caller.", "Done.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'],
        summarizer=[answer],
    )
    assert run(model, erp(), audit).outcome == "held"


def test_a_held_answer_is_listed_with_why(audit: AuditLog) -> None:
    holding(audit)
    [item] = held(audit)
    assert (item.task_id, item.department, item.answer) == ("t-1", "finance", CLAIM)
    assert "'scheduled'" in item.reasons[0]
    assert held(audit, department="hr") == []
    assert held_for(audit, "t-1") == item


def test_release_ends_the_task_answered_with_the_held_answer(audit: AuditLog) -> None:
    holding(audit)
    decision = decide_answer(
        audit, "t-1", verdict="released", by="carol", reason="the payment run made it"
    )
    assert (decision.verdict, decision.by) == ("released", "carol")
    outcome = audit.outcome("t-1")
    assert outcome is not None
    assert (outcome["outcome"], outcome["answer"]) == ("answered", CLAIM)
    assert "released by carol: the payment run made it" in outcome["reason"]
    policy = audit.steps("t-1")[-2]
    assert policy.kind == "policy"
    assert (policy.details["policy"], policy.details["status"]) == ("claims", "released")
    assert policy.details["by"] == "carol"
    assert held(audit) == []
    assert audit.verify().ok


def test_reject_ends_the_task_rejected_without_an_answer(audit: AuditLog) -> None:
    holding(audit)
    decide_answer(audit, "t-1", verdict="rejected", by="dave", reason="nothing was scheduled")
    outcome = audit.outcome("t-1")
    assert outcome is not None
    assert (outcome["outcome"], outcome["answer"]) == ("rejected", "")
    assert "rejected by dave: nothing was scheduled" in outcome["reason"]
    assert audit.verify().ok


def test_a_decision_needs_who_why_a_held_answer_and_a_known_verdict(audit: AuditLog) -> None:
    with pytest.raises(HeldAnswerError, match="no task 't-1'"):
        decide_answer(audit, "t-1", verdict="released", by="carol", reason="ok")
    holding(audit)
    with pytest.raises(HeldAnswerError, match="who"):
        decide_answer(audit, "t-1", verdict="released", by=" ", reason="ok")
    with pytest.raises(HeldAnswerError, match="reason"):
        decide_answer(audit, "t-1", verdict="released", by="carol", reason="")
    with pytest.raises(HeldAnswerError, match="verdict"):
        decide_answer(audit, "t-1", verdict="approved", by="carol", reason="ok")  # type: ignore[arg-type]
    decide_answer(audit, "t-1", verdict="rejected", by="dave", reason="no")
    with pytest.raises(HeldAnswerError, match="already released or rejected"):
        decide_answer(audit, "t-1", verdict="released", by="carol", reason="ok")
    assert len([s for s in audit.steps("t-1") if s.kind == "outcome"]) == 2


def test_held_commands_list_release_and_refuse(
    audit: AuditLog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`umiq held list|release|reject`: the table, the decision, exit 1 with the reason."""
    import typer
    from typer.testing import CliRunner

    from worker import runtime
    from worker.gates.cli import register
    from worker.settings import Settings

    holding(audit)
    monkeypatch.setattr(runtime, "audit_log", lambda: audit)
    # the decision key the CLI signs with: the default pair, made in this data dir
    monkeypatch.setattr(runtime, "settings", lambda: Settings(data_dir=tmp_path))
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    listed = runner.invoke(app, ["held", "list", "--json"])
    assert listed.exit_code == 0 and '"task_id": "t-1"' in listed.output
    released = runner.invoke(
        app, ["held", "release", "t-1", "--by", "carol", "--reason", "checked the ERP"]
    )
    assert released.exit_code == 0, released.output
    assert "released by carol" in released.output
    from worker.audit import decisions

    signed = decisions.check_log(audit.engine, decisions.verifier(Settings(data_dir=tmp_path)))
    assert (signed.checked, signed.unsigned, signed.bad) == (1, 0, [])
    again = runner.invoke(app, ["held", "reject", "t-1", "--by", "dave", "--reason", "no"])
    assert again.exit_code == 1 and "no answer held for review" in again.output
    assert "no answers are held" in runner.invoke(app, ["held", "list"]).output

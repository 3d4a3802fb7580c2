"""Approvals: a call over the limit waits, a human decides, the episode resumes or ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import ToolCall
from policies import AccessRule, ApprovalPolicy, approval_rules
from worker.agent.episode import Episode
from worker.agent.guard import Guard
from worker.audit import AuditLog, ensure_schema
from worker.gates.calls import ApprovalError, approved_key, decide, pending, resend
from worker.toolbox import Toolbox

from .test_episode import ENV, Scripted, erp

PAY = 'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1", "amount": 12500}'


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url)


def guard(mode: str = "auto") -> Guard:
    g = Guard.permissive_minimization(AccessRule("finance", tools=("*",), may_write=True))
    g.approval = ApprovalPolicy(
        approval_rules([{"tool": "schedule_payment", "when": [["amount", ">", 10000]]}]),
        hold_writes="the department is in review mode" if mode == "review" else "",
    )
    return g


def episode(model: Scripted, connector, audit: AuditLog, mode: str = "auto") -> Episode:
    return Episode(ENV, model=model, toolbox=Toolbox([connector]), guard=guard(mode), audit=audit)


def waiting(audit: AuditLog, connector) -> None:
    audit.append_task(
        task_id=ENV.task_id,
        department=ENV.department,
        query=ENV.query,
        requested_by=ENV.requested_by,
    )
    model = Scripted(planner=["Pay it.\n Next: caller."], caller=[PAY])
    result = episode(model, connector, audit).run()
    assert result.outcome == "awaiting_approval"


def test_payment_over_the_limit_waits_and_is_not_made(audit: AuditLog) -> None:
    """The call is held before the connector and listed as pending with its reasons."""
    connector = erp()
    waiting(audit, connector)
    assert connector.calls == []
    [item] = pending(audit)
    assert (item.task_id, item.tool, item.key) == ("t-1", "schedule_payment", "t-1:2")
    assert item.arguments == {"invoice_id": "INV-1", "amount": 12500}
    assert "amount > 10000" in item.reasons[0]
    assert audit.verify().ok


def test_approval_resumes_and_makes_the_payment_once(audit: AuditLog) -> None:
    """Approved, the resumed episode makes the held call once and goes on to answer."""
    connector = erp()
    waiting(audit, connector)
    sent: list[tuple[str, str]] = []
    decide(
        audit,
        "t-1",
        verdict="approved",
        by="carol",
        reason="checked the PO",
        enqueue=lambda t, k: sent.append((t, k)),
    )
    assert sent == [("t-1", "t-1:2")]
    steps = audit.steps("t-1")
    assert approved_key(steps, "t-1:2") == (True, "")
    model = Scripted(planner=["Paid.\n Next: conclusion."], summarizer=["INV-1 is scheduled."])
    result = episode(model, connector, audit).resume(steps, "t-1:2")
    assert result.outcome == "answered"
    assert connector.calls == [
        (ToolCall("schedule_payment", {"invoice_id": "INV-1", "amount": 12500}), "t-1:2")
    ]
    decision = next(s for s in audit.steps("t-1") if s.details.get("status") == "approved")
    assert decision.details["by"] == "carol"
    assert pending(audit) == []
    assert approved_key(audit.steps("t-1"), "t-1:2")[0] is False  # a second resume does nothing
    assert audit.verify().ok


def test_resumed_history_is_the_recorded_one(audit: AuditLog) -> None:
    """The resumed planner sees the recorded thought, call and the new observation."""
    connector = erp()
    waiting(audit, connector)
    decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=lambda t, k: None)
    model = Scripted(planner=["Paid.\n Next: conclusion."], summarizer=["done"])
    episode(model, connector, audit).resume(audit.steps("t-1"), "t-1:2")
    prompt = model.requests[0].prompt
    assert "assistant: Pay it.\n Next: caller.</s>caller: Action: schedule_payment" in prompt
    assert "observation: " in prompt


def test_rejection_ends_the_task_without_the_call(audit: AuditLog) -> None:
    """Rejected, the task ends as rejected with who and why; nothing is called."""
    connector = erp()
    waiting(audit, connector)
    decide(
        audit,
        "t-1",
        verdict="rejected",
        by="dave",
        reason="duplicate invoice",
        enqueue=lambda t, k: pytest.fail("a rejection must not resume"),
    )
    assert connector.calls == []
    outcome = audit.outcome("t-1")
    assert outcome is not None and outcome["outcome"] == "rejected"
    assert "dave" in outcome["reason"] and "duplicate invoice" in outcome["reason"]
    assert pending(audit) == []


def test_decision_needs_who_and_why(audit: AuditLog) -> None:
    """A decision without a name or a reason is refused."""
    waiting(audit, erp())
    with pytest.raises(ApprovalError, match="--by"):
        decide(audit, "t-1", verdict="approved", by=" ", reason="x", enqueue=lambda t, k: None)
    with pytest.raises(ApprovalError, match="--reason"):
        decide(audit, "t-1", verdict="approved", by="carol", reason="", enqueue=lambda t, k: None)


def test_deciding_twice_is_refused(audit: AuditLog) -> None:
    """Once decided, the call is no longer pending."""
    waiting(audit, erp())
    decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=lambda t, k: None)
    with pytest.raises(ApprovalError, match="no call waiting"):
        decide(audit, "t-1", verdict="rejected", by="dave", reason="no", enqueue=lambda t, k: None)


def test_review_mode_holds_reads_free_and_writes_for_approval(audit: AuditLog) -> None:
    """In review mode a write under the limit still waits."""
    connector = erp()
    model = Scripted(
        planner=["Pay it.\n Next: caller."],
        caller=['Action: schedule_payment\nAction Input: {"invoice_id": "INV-1", "amount": 5}'],
    )
    result = episode(model, connector, audit, mode="review").run()
    assert result.outcome == "awaiting_approval"
    assert "review mode" in result.reason
    assert connector.calls == []


def test_an_approved_call_that_never_resumed_can_be_resent(audit: AuditLog) -> None:
    """A lost or dead-lettered resume is sent again; once resumed, it is not."""
    connector = erp()
    waiting(audit, connector)
    with pytest.raises(ApprovalError, match="has not been approved"):
        resend(audit, "t-1", enqueue=lambda t, k: pytest.fail("not approved yet"))
    decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=lambda t, k: None)
    sent: list[tuple[str, str]] = []
    assert resend(audit, "t-1", enqueue=lambda t, k: sent.append((t, k))) == "t-1:2"
    assert sent == [("t-1", "t-1:2")]
    model = Scripted(planner=["Paid.\n Next: conclusion."], summarizer=["INV-1 is scheduled."])
    episode(model, connector, audit).resume(audit.steps("t-1"), "t-1:2")
    with pytest.raises(ApprovalError, match="not waiting for approval"):
        resend(audit, "t-1", enqueue=lambda t, k: pytest.fail("already resumed"))
    with pytest.raises(ApprovalError, match="no task 'nope'"):
        resend(audit, "nope", enqueue=lambda t, k: None)
    assert len(connector.calls) == 1


def test_a_rejected_call_is_not_resent(audit: AuditLog) -> None:
    waiting(audit, erp())
    decide(audit, "t-1", verdict="rejected", by="dave", reason="no", enqueue=lambda t, k: None)
    with pytest.raises(ApprovalError, match="not waiting for approval"):
        resend(audit, "t-1", enqueue=lambda t, k: pytest.fail("rejected"))


def test_resume_command_resends_or_says_why_not(
    audit: AuditLog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`umiq approvals resume TASK` exits 1 with the reason, or sends the resume once."""
    import typer
    from typer.testing import CliRunner

    from worker import runtime
    from worker.gates import calls as approvals
    from worker.gates.cli import register

    waiting(audit, erp())
    monkeypatch.setattr(runtime, "audit_log", lambda: audit)
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(approvals, "send_resume", lambda t, k: sent.append((t, k)))
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    refused = runner.invoke(app, ["approvals", "resume", "t-1"])
    assert refused.exit_code == 1 and "has not been approved" in refused.output
    decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=lambda t, k: None)
    done = runner.invoke(app, ["approvals", "resume", "t-1"])
    assert done.exit_code == 0, done.output
    assert "t-1:2: resume sent" in done.output and sent == [("t-1", "t-1:2")]


def _waiting_with(audit: AuditLog, rule: dict, planner: list[str], caller: list[str]) -> Episode:
    audit.append_task(
        task_id=ENV.task_id, department=ENV.department, query=ENV.query, requested_by="alice"
    )
    g = Guard.permissive_minimization(AccessRule("finance", tools=("*",), may_write=True))
    g.approval = ApprovalPolicy(approval_rules([rule]))
    model = Scripted(planner=planner, caller=caller)
    return Episode(ENV, model=model, toolbox=Toolbox([erp()]), guard=g, audit=audit)


def test_the_requester_cannot_approve_their_own_call(audit: AuditLog) -> None:
    """Four eyes: the requester's approval is refused (any spelling of the name); nothing
    is recorded or resumed; a second person's approval goes through."""
    waiting(audit, erp())
    for name in ("alice", " Alice "):
        with pytest.raises(ApprovalError, match="cannot approve its own call"):
            decide(audit, "t-1", verdict="approved", by=name, reason="mine", enqueue=pytest.fail)
    assert [s for s in audit.steps("t-1") if s.details.get("status") == "approved"] == []
    decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=lambda t, k: None)


def test_the_requester_may_still_reject(audit: AuditLog) -> None:
    """Rejecting one's own call is allowed: it fails closed."""
    waiting(audit, erp())
    decide(audit, "t-1", verdict="rejected", by="alice", reason="typo", enqueue=pytest.fail)
    assert audit.outcome("t-1")["outcome"] == "rejected"


def test_a_rule_names_who_may_approve(audit: AuditLog) -> None:
    """A rule with ``approvers`` accepts only them."""
    rule = {"tool": "schedule_payment", "when": [["amount", ">", 10]], "approvers": ["cfo"]}
    _waiting_with(audit, rule, ["Pay it.\n Next: caller."], [PAY]).run()
    [item] = pending(audit)
    assert item.approvers == ["cfo"]
    with pytest.raises(ApprovalError, match="names its approvers"):
        decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=pytest.fail)
    decide(audit, "t-1", verdict="approved", by="CFO", reason="ok", enqueue=lambda t, k: None)


def test_distinct_approvers_for_each_step_of_a_task(audit: AuditLog) -> None:
    """Under ``distinct_approvers`` whoever approved the task's first payment cannot
    approve its second."""
    rule = {"tool": "schedule_payment", "when": [["amount", ">", 10]], "distinct_approvers": True}
    pay2 = PAY.replace("INV-1", "INV-2")
    planner = ["Pay it.\n Next: caller.", "And the other.\n Next: caller."]
    _waiting_with(audit, rule, planner, [PAY, pay2]).run()
    decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=lambda t, k: None)
    g = Guard.permissive_minimization(AccessRule("finance", tools=("*",), may_write=True))
    g.approval = ApprovalPolicy(approval_rules([rule]))
    model = Scripted(planner=planner[1:], caller=[pay2])
    resumed = Episode(ENV, model=model, toolbox=Toolbox([erp()]), guard=g, audit=audit)
    assert resumed.resume(audit.steps("t-1"), "t-1:2").outcome == "awaiting_approval"
    with pytest.raises(ApprovalError, match="approved an earlier call"):
        decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=pytest.fail)
    decide(audit, "t-1", verdict="approved", by="dave", reason="ok", enqueue=lambda t, k: None)

"""The agent loop over scripted role outputs, a function connector and a real SQLite audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors import ToolCall, ToolResult, ToolSpec
from connectors.testing import FunctionConnector
from policies import AccessRule, Detector, Pseudonymizer
from tests.support.scripted import RoleScripts as Scripted
from worker.agent.episode import Episode
from worker.audit import AuditLog, ensure_schema
from worker.envelope import Envelope
from worker.toolbox import Toolbox

GET_INVOICE = ToolSpec(
    "get_invoice",
    "Get one invoice by id.",
    {
        "type": "object",
        "properties": {"invoice_id": {"type": "string"}},
        "required": ["invoice_id"],
    },
)
PAY = ToolSpec(
    "schedule_payment",
    "Schedule the payment of an invoice.",
    {
        "type": "object",
        "properties": {"invoice_id": {"type": "string"}, "amount": {"type": "number"}},
        "required": ["invoice_id", "amount"],
    },
    effect="write",
)
ENV = Envelope(task_id="t-1", department="finance", query="Is INV-1 open?", requested_by="alice")


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url)


def erp(handler=None) -> FunctionConnector:
    def default(call: ToolCall, key: str) -> ToolResult:
        return ToolResult(ok=True, data={"id": call.arguments.get("invoice_id"), "status": "open"})

    return FunctionConnector("erp", [GET_INVOICE, PAY], handler or default)


def run(
    model: Scripted,
    connector: FunctionConnector,
    audit: AuditLog,
    rule: AccessRule | None = None,
    max_steps: int = 5,
) -> Any:
    rule = rule or AccessRule("finance", tools=("*",), may_write=True)
    return Episode(
        ENV,
        model=model,
        toolbox=Toolbox([connector]),
        access=rule,
        audit=audit,
        max_steps=max_steps,
    ).run()


def test_answered_episode_calls_the_tool_and_concludes(audit: AuditLog) -> None:
    """Planner → caller → connector → planner → summarizer ends answered with every step audited."""
    model = Scripted(
        planner=["I should fetch the invoice.\n Next: caller.", "It is open.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'],
        summarizer=["INV-1 is open."],
    )
    connector = erp()
    result = run(model, connector, audit)
    assert result.outcome == "answered"
    assert result.answer == "INV-1 is open."
    assert connector.calls == [(ToolCall("get_invoice", {"invoice_id": "INV-1"}), "t-1:2")]
    kinds = [s.kind for s in audit.steps("t-1")]
    assert kinds == [
        "planner",
        "caller",
        "policy",
        "policy",
        "tool",
        "planner",
        "summarizer",
        "policy",
        "outcome",
    ]
    claims = audit.steps("t-1")[-2].details
    assert (claims["policy"], claims["allowed"]) == ("claims", True)
    assert audit.verify().ok


def test_an_answer_claiming_an_unmade_write_is_held(audit: AuditLog) -> None:
    """Read the invoice, conclude, and say it was scheduled: held, not answered, with why."""
    model = Scripted(
        planner=["Fetch it.\n Next: caller.", "Done.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'],
        summarizer=["INV-1 is scheduled for payment on 2025-03-17."],
    )
    result = run(model, erp(), audit)
    assert result.outcome == "held"
    assert result.answer == "INV-1 is scheduled for payment on 2025-03-17."
    assert "'scheduled'" in result.reason
    policy = audit.steps("t-1")[-2]
    assert policy.kind == "policy" and policy.output == "denied"
    assert (policy.details["policy"], policy.details["allowed"]) == ("claims", False)
    assert audit.outcome("t-1")["outcome"] == "held"
    assert audit.verify().ok


def test_a_claim_backed_by_the_write_is_answered(audit: AuditLog) -> None:
    """The same answer after a successful schedule_payment is delivered."""
    model = Scripted(
        planner=["Pay it.\n Next: caller.", "Done.\n Next: conclusion."],
        caller=['Action: schedule_payment\nAction Input: {"invoice_id": "INV-1", "amount": 5}'],
        summarizer=["INV-1 is scheduled for payment on 2025-03-17."],
    )
    result = run(model, erp(), audit)
    assert result.outcome == "answered", result.reason


def test_a_failed_write_backs_no_claim(audit: AuditLog) -> None:
    """A schedule_payment the ERP refused does not make 'scheduled' true."""

    def refuse(call: ToolCall, key: str) -> ToolResult:
        return ToolResult(ok=False, error="409: invoice INV-1 is disputed, not open")

    model = Scripted(
        planner=["Pay it.\n Next: caller.", "Done.\n Next: conclusion."],
        caller=['Action: schedule_payment\nAction Input: {"invoice_id": "INV-1", "amount": 5}'],
        summarizer=["INV-1 is scheduled."],
    )
    assert run(model, erp(refuse), audit).outcome == "held"


def test_history_follows_the_protocol(audit: AuditLog) -> None:
    """The second planner prompt carries the caller turn and the observation in α-UMi form."""
    model = Scripted(
        planner=["Fetch it.\n Next: caller.", "Done.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'],
        summarizer=["ok"],
    )
    run(model, erp(), audit)
    second = [r for r in model.requests if r.role == "planner"][1].prompt
    assert (
        'caller: Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}</s>observation: '
    ) in second
    assert second.endswith(" assistant: ")
    caller = next(r for r in model.requests if r.role == "caller")
    assert caller.constraint is not None
    assert {t.name for t in caller.constraint.tools} == {"get_invoice", "schedule_payment"}


def test_compact_view_caller_grammar_admits_only_the_tools_its_prompt_shows(
    audit: AuditLog,
) -> None:
    """In the compact view the caller's grammar admits the allowed tools its prompt shows
    and no other: with k=1 a read request shows (and admits) get_invoice, not the write."""
    from worker.agent.views import COMPACT, PromptView

    model = Scripted(
        planner=["I should fetch invoice INV-1.\n Next: caller.", "Open.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'],
        summarizer=["INV-1 is open."],
    )
    Episode(
        ENV,
        model=model,
        toolbox=Toolbox([erp()]),
        access=AccessRule("finance", tools=("*",), may_write=True),
        audit=audit,
        max_steps=5,
        view=PromptView(COMPACT, top_k=1),
    ).run()
    caller = next(r for r in model.requests if r.role == "caller")
    assert caller.constraint is not None
    assert [t.name for t in caller.constraint.tools] == ["get_invoice"]
    assert "schedule_payment" not in caller.prompt


def test_give_up_ends_the_episode(audit: AuditLog) -> None:
    """A planner that gives up ends the task as gave_up without calling the summarizer."""
    result = run(Scripted(planner=["I cannot do this.\n Next: give up."]), erp(), audit)
    assert result.outcome == "gave_up"
    assert audit.steps("t-1")[-1].details["outcome"] == "gave_up"


def test_step_limit_ends_the_episode(audit: AuditLog) -> None:
    """An episode that never concludes stops at the step limit."""
    call = 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'
    model = Scripted(planner=["again\n Next: caller."] * 2, caller=[call] * 2)
    result = run(model, erp(), audit, max_steps=2)
    assert result.outcome == "step_limit"


def test_denied_write_is_not_executed(audit: AuditLog) -> None:
    """A write the department may not make is refused, audited and never reaches the connector."""
    model = Scripted(
        planner=["Pay it.\n Next: caller.", "Refused.\n Next: conclusion."],
        caller=['Action: schedule_payment\nAction Input: {"invoice_id": "INV-1", "amount": 5}'],
        summarizer=["I was not allowed to pay."],
    )
    connector = erp()
    read_only = AccessRule("finance", tools=("*",), may_write=False)
    result = run(model, connector, audit, rule=read_only)
    assert connector.calls == []
    policy = next(s for s in audit.steps("t-1") if s.kind == "policy")
    assert policy.details["allowed"] is False
    assert "may not write" in policy.details["reasons"][0]
    assert result.outcome == "answered"


def test_invalid_arguments_are_refused_before_the_connector(audit: AuditLog) -> None:
    """Arguments that fail the tool's schema never reach the connector."""
    model = Scripted(
        planner=["Fetch.\n Next: caller.", "Bad.\n Next: give up."],
        caller=['Action: get_invoice\nAction Input: {"invoice": 7}'],
    )
    connector = erp()
    run(model, connector, audit)
    assert connector.calls == []
    tool = next(s for s in audit.steps("t-1") if s.kind == "tool")
    assert "invalid arguments" in tool.output


def test_unparseable_call_becomes_an_observation(audit: AuditLog) -> None:
    """A caller output without an Action is reported back to the planner, not raised."""
    model = Scripted(
        planner=["Fetch.\n Next: caller.", "Hm.\n Next: give up."],
        caller=["I would like to call something"],
    )
    result = run(model, erp(), audit)
    assert result.outcome == "gave_up"
    tool = next(s for s in audit.steps("t-1") if s.kind == "tool")
    assert "unparseable call" in tool.output


def test_committed_call_is_not_repeated(audit: AuditLog) -> None:
    """A tool call whose idempotency key is already committed is replayed, not re-executed."""
    audit.append_tool_call(
        task_id="t-1",
        step=2,
        idempotency_key="t-1:2",
        tool="get_invoice",
        effect="read",
        request={"invoice_id": "INV-1"},
        response={"status": "paid"},
        ok=True,
        error=None,
    )
    model = Scripted(
        planner=["Fetch.\n Next: caller.", "Done.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'],
        summarizer=["paid"],
    )
    connector = erp()
    run(model, connector, audit)
    assert connector.calls == []
    tool = next(s for s in audit.steps("t-1") if s.kind == "tool")
    assert '"paid"' in tool.output


def test_department_without_tools_is_refused(audit: AuditLog) -> None:
    """A department that may use no tools ends refused before any model runs."""
    model = Scripted()
    result = run(model, erp(), audit, rule=AccessRule("finance", tools=()))
    assert result.outcome == "refused"
    assert model.requests == []


def test_an_announced_approval_after_no_write_is_held(audit: AuditLog) -> None:
    """ "I approve it" after only a read ends held: an announcement is a claim too."""
    model = Scripted(
        planner=["Fetch it.\n Next: caller.", "Done.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'],
        summarizer=["I will release INV-1 for payment today."],
    )
    result = run(model, erp(), audit)
    assert result.outcome == "held"
    assert "'released'" in result.reason


def test_a_degenerate_answer_is_held(audit: AuditLog) -> None:
    """A stuttering summary is not delivered as an answer."""
    model = Scripted(
        planner=["Fetch it.\n Next: caller.", "Done.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'],
        summarizer=["No, no, no: no: no: no: no"],
    )
    result = run(model, erp(), audit)
    assert result.outcome == "held"
    assert "over and over" in result.reason


def test_an_exact_repeat_of_the_last_call_is_not_made_and_the_planner_is_asked_again(
    audit: AuditLog,
) -> None:
    """The repeat guard refuses a repeated call once, then hands over to the summarizer."""
    call = 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'
    model = Scripted(
        planner=["Fetch it.\n Next: caller."] * 3,
        caller=[call, call, call],
        summarizer=["INV-1 is open."],
    )
    connector = erp()
    result = run(model, connector, audit, max_steps=6)
    assert len(connector.calls) == 1
    assert result.outcome == "answered" and result.answer == "INV-1 is open."
    planner_prompts = [r.prompt for r in model.requests if r.role == "planner"]
    assert "not run: this exact call was already made" in planner_prompts[2]
    repeats = [s for s in audit.steps("t-1") if s.details.get("policy") == "repeat"]
    assert len(repeats) == 2
    assert audit.verify().ok


def test_a_read_already_answered_is_not_made_again_after_other_reads(audit: AuditLog) -> None:
    """Not only the last call: a read whose response the history holds, with no write
    since, is refused (a planner alternating two reads never gets a third answer)."""
    first = 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'
    other = 'Action: get_invoice\nAction Input: {"invoice_id": "INV-2"}'
    model = Scripted(
        planner=[
            "a\n Next: caller.",
            "b\n Next: caller.",
            "c\n Next: caller.",
            "d\n Next: conclusion.",
        ],
        caller=[first, other, first],
        summarizer=["Both are open."],
    )
    connector = erp()
    run(model, connector, audit)
    assert [c.arguments["invoice_id"] for c, _ in connector.calls] == ["INV-1", "INV-2"]
    refused = [s for s in audit.steps("t-1") if s.details.get("policy") == "repeat"]
    assert len(refused) == 1 and "already succeeded" in refused[0].details["reasons"][0]


def test_a_read_after_a_write_is_made_and_the_write_is_never_repeated(audit: AuditLog) -> None:
    """A write may change what a read returns, so the read is made again; the write
    itself went through and is refused whenever it comes again."""
    read = 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'
    pay = 'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1", "amount": 5}'
    model = Scripted(
        planner=["a\n Next: caller."] * 4 + ["done\n Next: conclusion."],
        caller=[read, pay, read, pay],
        summarizer=["INV-1 is scheduled."],
    )
    connector = erp()
    result = run(model, connector, audit, max_steps=6)
    assert [c.tool for c, _ in connector.calls] == [
        "get_invoice",
        "schedule_payment",
        "get_invoice",
    ]
    refused = [s for s in audit.steps("t-1") if s.details.get("policy") == "repeat"]
    assert [s.details["tool"] for s in refused] == ["schedule_payment"]
    assert result.outcome == "answered"


def test_the_request_is_tokenized_once_by_the_guard(audit: AuditLog) -> None:
    """``Guard.open_request``: the text the task row holds is the episode's user turn (the
    same tokens, not a second tokenization); on a resume, the tokenized request keeps its
    tokens and the scope check still reads the raw request."""
    from worker.agent.guard import Guard

    raw = "Send INV-1 to jan.jansen@example.com"
    guard = Guard.permissive_minimization(AccessRule("finance", tools=("*",)))
    row = guard.open_request(raw)  # what the worker writes into the task row
    assert row == "Send INV-1 to <EMAIL_1>" and guard.request == raw
    episode = Episode(
        ENV.model_copy(update={"query": raw}),
        model=Scripted(),
        toolbox=Toolbox([erp()]),
        guard=guard,
        audit=audit,
    )
    assert episode.query is row and episode.turns[0]["value"] is row
    assert guard.mapping() == {"<EMAIL_1>": "jan.jansen@example.com"}

    resumed = Guard.permissive_minimization(None)  # a resume: the task's tokens restored
    resumed.pseudonymizer = Pseudonymizer.from_mapping(Detector(), guard.mapping())
    assert resumed.open_request(row) == row and resumed.request == raw

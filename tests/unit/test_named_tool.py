"""The caller writes the call the plan names (``worker.agent.named``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors import ToolCall, ToolResult
from connectors.testing import FunctionConnector
from policies import AccessRule
from tests.support.scripted import RoleScripts as Scripted
from tests.unit.test_grounding import GET_INVOICE, LIST_PAYMENTS, PAY
from worker.agent.episode import Episode
from worker.agent.named import follow, named_tools
from worker.audit import AuditLog, ensure_schema
from worker.envelope import Envelope
from worker.toolbox import Toolbox

TOOLS = (GET_INVOICE, LIST_PAYMENTS, PAY)


def names(tools) -> list[str]:
    return [tool.name for tool in tools]


def test_a_thought_naming_one_offered_tool_narrows_the_grammar_to_it() -> None:
    thought = (
        "INV-1010 came back. I'll schedule the payment. I'll use schedule_payment.\n Next: caller."
    )
    assert names(follow(TOOLS, TOOLS, thought)) == ["schedule_payment"]


@pytest.mark.parametrize(
    "thought",
    [
        "I'll schedule the payment.\n Next: caller.",  # names none
        "get_invoice came back; now schedule_payment.\n Next: caller.",  # names two
        "I'll use get_invoices.\n Next: caller.",  # not a tool's whole name
        "I'll use xget_invoice.\n Next: caller.",
    ],
)
def test_a_thought_naming_none_or_two_leaves_the_grammar(thought: str) -> None:
    assert names(follow(TOOLS, TOOLS, thought)) == names(TOOLS)


def test_a_named_tool_that_is_not_offered_widens_nothing() -> None:
    """A write the request did not ask for (left out before) stays out; the grammar stays
    the offered tools, and the name counts against the department's tools: naming
    schedule_payment and get_invoice is two names even when only get_invoice is offered."""
    offered = (GET_INVOICE, LIST_PAYMENTS)
    assert names(follow(offered, TOOLS, "I'll use schedule_payment.")) == names(offered)
    assert names(follow(offered, TOOLS, "get_invoice, then schedule_payment.")) == names(offered)
    assert named_tools("use schedule_payment", TOOLS) == ["schedule_payment"]


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url)


def _episode(audit: AuditLog, model: Scripted, *, follow: bool = True) -> Any:
    def handler(call: ToolCall, key: str) -> ToolResult:
        return ToolResult(ok=True, data={"id": call.arguments.get("invoice_id"), "status": "open"})

    env = Envelope(task_id="t-n", department="finance", query="Is INV-1008 open?", requested_by="a")
    return Episode(
        env,
        model=model,
        toolbox=Toolbox([FunctionConnector("erp", [GET_INVOICE, LIST_PAYMENTS], handler)]),
        access=AccessRule("finance", tools=("*",), may_write=True),
        audit=audit,
        max_steps=5,
        follow_named_tool=follow,
    )


def _script(thought: str) -> Scripted:
    return Scripted(
        planner=[thought + "\n Next: caller.", "Open.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1008"}'],
        summarizer=["INV-1008 is open."],
    )


def test_the_episode_offers_the_caller_only_the_tool_its_plan_names_and_audits_it(audit):
    model = _script("I need the invoice. I'll use get_invoice.")
    assert _episode(audit, model).run().outcome == "answered"
    caller = next(r for r in model.requests if r.role == "caller")
    assert caller.constraint is not None
    assert names(caller.constraint.tools) == ["get_invoice"]
    step = next(s for s in audit.steps("t-n") if s.kind == "caller")
    assert step.details["not_offered"] == ["list_payments"]
    assert audit.verify().ok


def test_a_plan_that_names_no_tool_offers_every_tool(audit):
    model = _script("I need the invoice.")
    _episode(audit, model).run()
    caller = next(r for r in model.requests if r.role == "caller")
    assert names(caller.constraint.tools) == ["get_invoice", "list_payments"]


def test_off_by_default_every_tool_is_offered_whatever_the_plan_names(audit):
    from worker.settings import Settings

    assert Settings().follow_named_tool is False  # the shipped planner names the last call
    model = _script("I'll use get_invoice.")
    _episode(audit, model, follow=False).run()
    caller = next(r for r in model.requests if r.role == "caller")
    assert names(caller.constraint.tools) == ["get_invoice", "list_payments"]

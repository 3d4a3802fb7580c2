"""The caller writes the call the plan names (``worker.agent.named``)."""

from __future__ import annotations

import pytest

from tests.support.scripted import RoleScripts as Scripted
from tests.unit import test_grounding
from tests.unit.test_grounding import GET_INVOICE, LIST_PAYMENTS, PAY, _episode
from worker.agent.named import follow, named_tools
from worker.audit.events import PlannerDetails

TOOLS = (GET_INVOICE, LIST_PAYMENTS, PAY)
audit = test_grounding.audit  # the grounding tests' fixture: an embedded audit log


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


def _script(thought: str) -> Scripted:
    return Scripted(
        planner=[thought + "\n Next: caller.", "Open.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1008"}'],
        summarizer=["INV-1008 is open."],
    )


def test_the_episode_offers_the_caller_only_the_tool_its_plan_names_and_audits_it(audit):
    model = _script("I need the invoice. I'll use get_invoice.")
    assert _episode(audit, model, follow_named_tool=True).run().outcome == "answered"
    caller = next(r for r in model.requests if r.role == "caller")
    assert caller.constraint is not None
    assert names(caller.constraint.tools) == ["get_invoice"]
    step = next(s for s in audit.steps("t-g") if s.kind == "caller")
    assert step.details["not_offered"] == ["list_payments"]
    assert audit.verify().ok


def test_a_plan_that_names_no_tool_offers_every_tool(audit):
    model = _script("I need the invoice.")
    _episode(audit, model, follow_named_tool=True).run()
    caller = next(r for r in model.requests if r.role == "caller")
    assert names(caller.constraint.tools) == ["get_invoice", "list_payments"]


def test_off_by_default_every_tool_is_offered_whatever_the_plan_names(audit):
    from worker.settings import Settings

    assert Settings().follow_named_tool is False  # the shipped planner names the last call
    model = _script("I'll use get_invoice.")
    _episode(audit, model, follow_named_tool=False).run()
    caller = next(r for r in model.requests if r.role == "caller")
    assert names(caller.constraint.tools) == ["get_invoice", "list_payments"]


def test_a_named_tool_not_offered_is_chosen_again_among_the_offered_ones(audit):
    """The planner named a tool that is no tool of the step ("search"): it continues its
    own thought from "I'll use" under the offered names; the history and the audit's
    planner step hold the chosen thought, the audit also what the planner wrote, and the
    caller is offered the chosen tool alone."""
    from worker.agent.named import CHOSEN_SUFFIX

    model = Scripted(
        planner=[
            "I need the invoice. I'll use search.\n Next: caller.",
            " get_invoice" + CHOSEN_SUFFIX,  # under the choice grammar
            "Open.\n Next: conclusion.",
        ],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1008"}'],
        summarizer=["INV-1008 is open."],
    )
    assert _episode(audit, model, follow_named_tool=True).run().outcome == "answered"
    first, again = [r for r in model.requests if r.role == "planner"][:2]
    # the thought so far is given as the output's start, tokenized on its own
    assert again.prompt == first.prompt
    assert again.prefix == "I need the invoice. I'll use"
    assert again.constraint.options == (" get_invoice", " list_payments")
    caller = next(r for r in model.requests if r.role == "caller")
    assert names(caller.constraint.tools) == ["get_invoice"]
    assert "I'll use get_invoice.\n Next: caller." in caller.prompt
    step = next(s for s in audit.steps("t-g") if s.kind == "planner")
    assert step.output == "I need the invoice. I'll use get_invoice.\n Next: caller."
    named = PlannerDetails.from_details(step.details).named
    assert named["not_offered"] == "search" and named["offered"] == ["get_invoice", "list_payments"]
    assert named["planner_wrote"].startswith("I need the invoice. I'll use search.")
    assert audit.verify().ok


def test_an_offered_or_unnamed_tool_is_not_chosen_again() -> None:
    from worker.agent.named import to_choose_again

    offered = ["get_invoice", "list_payments"]
    assert to_choose_again("I'll use get_invoice.\n Next: caller.", offered) is None
    assert to_choose_again("I need the invoice.\n Next: caller.", offered) is None
    assert to_choose_again("INV-1 came back. I'll use search.\n Next: caller.", offered) == (
        "INV-1 came back. I'll use",
        "search",
    )
    assert to_choose_again("I'll use search.\n Next: caller.", []) is None

"""Failure causes of live tasks, classified from hand-built audit steps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from worker.agent import protocol
from worker.audit import StepRecord
from worker.evaluation.causes import (
    CAUSES,
    Call,
    agent_calls,
    classify,
    expert_calls,
    same_call,
)

INVOICE = Call("get_invoice", {"invoice_id": "INV-1004"})
PAY = Call("schedule_payment", {"invoice_id": "INV-1012", "date": "2025-03-17"})
WRITES = {"schedule_payment", "dispute_invoice"}


def planner(next_: str = "caller") -> dict[str, Any]:
    return {"kind": "planner", "output": f"Thinking. Next: {next_}.", "details": {"next": next_}}


def caller(tool: str, **arguments: Any) -> dict[str, Any]:
    text = protocol.format_caller(tool, arguments)
    return {"kind": "caller", "output": text, "details": {"tool": tool, "arguments": arguments}}


def policy(allowed: bool, name: str = "access", tool: str = "get_invoice") -> dict[str, Any]:
    return {
        "kind": "policy",
        "output": "allowed" if allowed else "denied",
        "details": {"policy": name, "allowed": allowed, "reasons": ["no"], "tool": tool},
    }


def observed(ok: bool = True) -> dict[str, Any]:
    return {"kind": "tool", "output": "{}", "details": {"ok": ok}}


def call_steps(tool: str, **arguments: Any) -> list[dict[str, Any]]:
    """A planner step, the call, the access decision and the observation."""
    return [planner(), caller(tool, **arguments), policy(True, tool=tool), observed()]


def ending(outcome: str) -> list[dict[str, Any]]:
    steps = [planner("conclusion" if outcome == "answered" else "give up")]
    if outcome == "answered":
        steps.append({"kind": "summarizer", "output": "An answer.", "details": {}})
    return [*steps, {"kind": "outcome", "output": "", "details": {"outcome": outcome}}]


def diagnose(
    outcome: str | None,
    steps: list[Any],
    gold: list[Call] | None = None,
    expected: str = "answer",
    **kwargs: Any,
) -> str:
    return classify(
        outcome=outcome,
        steps=steps,
        expected_outcome=expected,
        gold=[INVOICE] if gold is None else gold,
        write_tools=WRITES,
        **kwargs,
    ).cause


def test_causes_are_listed_in_order_of_precedence() -> None:
    """CAUSES is the documented precedence, first to last."""
    assert CAUSES == (
        "error",
        "step limit",
        "policy refusal",
        "wrong tool",
        "wrong argument",
        "wrong plan",
        "gave up",
        "wrong answer",
    )


@pytest.mark.parametrize("outcome", [None, "failed", "rejected", "dead_lettered"])
def test_a_task_that_did_not_end_by_itself_is_an_error(outcome: str | None) -> None:
    """Failed, rejected or missing results are errors, whatever the steps say."""
    steps = [*call_steps("list_vendors"), policy(False)]
    assert diagnose(outcome, steps) == "error"


def test_step_limit_wins_over_call_mistakes_and_refusals() -> None:
    """An episode cut at the step limit is ``step limit``, even after a wrong tool."""
    steps = [*call_steps("list_vendors"), planner(), caller("get_invoice"), policy(False)]
    steps.append({"kind": "outcome", "output": "", "details": {"outcome": "step_limit"}})
    assert diagnose("step_limit", steps) == "step limit"


def test_a_denied_policy_step_is_a_policy_refusal() -> None:
    """A policy step with allowed=false names the policy as the cause."""
    steps = [planner(), caller("get_invoice", invoice_id="INV-1004"), policy(False)]
    diagnosis = classify(
        outcome="gave_up",
        steps=[*steps, observed(False), *ending("gave_up")],
        expected_outcome="answer",
        gold=[INVOICE],
    )
    assert diagnosis.cause == "policy refusal"
    assert "access refused get_invoice" in diagnosis.detail


def test_an_episode_the_policies_ended_is_a_policy_refusal() -> None:
    """An episode that ended ``refused`` (no tools for the department) is a policy refusal."""
    assert diagnose("refused", ending("refused")) == "policy refusal"


def test_a_schema_refusal_is_a_wrong_argument_not_a_policy_refusal() -> None:
    """A call the schema check refused counts as a wrong argument."""
    steps = [planner(), caller("get_invoice", invoice=4), policy(False, "schema"), observed(False)]
    assert diagnose("gave_up", [*steps, *ending("gave_up")]) == "wrong argument"


def test_a_tool_the_expert_does_not_use_is_a_wrong_tool() -> None:
    """Calling a tool the expert never needs, and then not the expert's, is a wrong tool."""
    steps = [*call_steps("list_vendors"), *ending("answered")]
    assert diagnose("answered", steps, answer_reasons=["no status"]) == "wrong tool"


def test_the_right_tool_with_other_arguments_is_a_wrong_argument() -> None:
    """The expert's tool with another invoice id is a wrong argument."""
    steps = [*call_steps("get_invoice", invoice_id="INV-1005"), *ending("answered")]
    assert diagnose("answered", steps, answer_reasons=["no status"]) == "wrong argument"


def test_the_first_divergence_decides() -> None:
    """A wrong argument before a wrong tool is a wrong argument."""
    steps = [
        *call_steps("get_invoice", invoice_id="INV-9"),
        *call_steps("list_vendors"),
        *ending("gave_up"),
    ]
    assert diagnose("gave_up", steps) == "wrong argument"


def test_a_superfluous_read_before_the_right_calls_is_harmless() -> None:
    """An extra read after which every expert call was made is not a cause."""
    steps = [
        *call_steps("list_vendors"),
        *call_steps("get_invoice", invoice_id="INV-1004"),
        *ending("answered"),
    ]
    assert diagnose("answered", steps, answer_reasons=["no status"]) == "wrong answer"


def test_a_wrong_write_counts_even_when_corrected() -> None:
    """A write with wrong arguments changed the systems, even if the right one followed."""
    steps = [
        *call_steps("schedule_payment", invoice_id="INV-1012", date="2025-04-01"),
        *call_steps("schedule_payment", invoice_id="INV-1012", date="2025-03-17"),
        *ending("answered"),
    ]
    cause = diagnose("answered", steps, gold=[PAY], state_reasons=["payments: unexpected change"])
    assert cause == "wrong argument"


def test_a_write_after_every_expert_call_is_a_wrong_plan() -> None:
    """Writing once the expert's calls are all made is calling where it should conclude."""
    steps = [
        *call_steps("get_invoice", invoice_id="INV-1004"),
        *call_steps("dispute_invoice", invoice_id="INV-1004", reason="because"),
        *ending("answered"),
    ]
    assert diagnose("answered", steps, state_reasons=["invoices: unexpected"]) == "wrong plan"


def test_concluding_before_the_expert_calls_is_a_wrong_plan() -> None:
    """Answering with an expert call unmade is concluding too early."""
    diagnosis = classify(
        outcome="answered",
        steps=ending("answered"),
        expected_outcome="answer",
        gold=[INVOICE],
        answer_reasons=["the answer does not state 'open'"],
    )
    assert diagnosis.cause == "wrong plan"
    assert diagnosis.detail.startswith("concluded before calling get_invoice")


def test_giving_up_before_the_expert_calls_is_a_wrong_plan() -> None:
    """Giving up with an expert call unmade is giving up too early."""
    diagnosis = classify(
        outcome="gave_up", steps=ending("gave_up"), expected_outcome="answer", gold=[INVOICE]
    )
    assert (diagnosis.cause, diagnosis.detail[:13]) == ("wrong plan", "gave up befor")


def test_giving_up_after_every_expert_call_is_gave_up() -> None:
    """Giving up with everything the expert looked at in hand is ``gave up``."""
    steps = [*call_steps("get_invoice", invoice_id="INV-1004"), *ending("gave_up")]
    assert diagnose("gave_up", steps) == "gave up"


def test_answering_a_task_the_expert_gives_up_is_a_wrong_plan() -> None:
    """An answer where the expert gives up (an unknown invoice) is a wrong plan."""
    steps = [*call_steps("get_invoice", invoice_id="INV-1004"), *ending("answered")]
    assert diagnose("answered", steps, expected="give_up") == "wrong plan"


def test_right_calls_and_a_wrong_answer_is_a_wrong_answer() -> None:
    """All calls right, repeats included, and facts missing from the answer: wrong answer."""
    steps = [
        *call_steps("get_invoice", invoice_id="INV-1004"),
        *call_steps("get_invoice", invoice_id="INV-1004"),
        *ending("answered"),
    ]
    diagnosis = classify(
        outcome="answered",
        steps=steps,
        expected_outcome="answer",
        gold=[INVOICE],
        answer_reasons=["the answer does not state 'open'"],
    )
    assert diagnosis.cause == "wrong answer"
    assert "'open'" in diagnosis.detail


def test_a_refused_repeat_is_no_policy_refusal() -> None:
    """The repeat guard refusing the agent's own repeat is not what failed the task: the
    answer after it is judged (a real policy's refusal still wins)."""
    steps = [
        *call_steps("get_invoice", invoice_id="INV-1004"),
        planner(),
        caller("get_invoice", invoice_id="INV-1004"),
        policy(False, name="repeat"),
        observed(ok=False),
        *ending("answered"),
    ]
    reasons = ["the answer does not state 'open'"]
    assert diagnose("answered", steps, answer_reasons=reasons) == "wrong answer"
    denied = [*steps[:-2], policy(False, name="access"), *steps[-2:]]
    assert diagnose("answered", denied, answer_reasons=reasons) == "policy refusal"


def test_right_calls_and_a_wrong_state_is_a_wrong_argument() -> None:
    """Every expert call made, yet the records differ: the writes carried other contents."""
    steps = [
        *call_steps("dispute_invoice", invoice_id="INV-1004", reason="it is all wrong here"),
        *ending("answered"),
    ]
    gold = [Call("dispute_invoice", {"invoice_id": "INV-1004", "reason": "the goods never came"})]
    cause = diagnose("answered", steps, gold=gold, state_reasons=["invoices: expected …"])
    assert cause == "wrong argument"


def test_without_an_expert_the_ending_and_reasons_decide() -> None:
    """With no expert solution, give-ups are ``gave up`` and wrong facts ``wrong answer``."""
    assert (
        classify(outcome="gave_up", steps=ending("gave_up"), expected_outcome="answer", gold=None)
    ).cause == "gave up"
    no_gold = classify(
        outcome="answered",
        steps=ending("answered"),
        expected_outcome="answer",
        gold=None,
        answer_reasons=["missing"],
    )
    assert no_gold.cause == "wrong answer"


def test_unparseable_calls() -> None:
    """An unparseable call naming the expert's tool is a wrong argument, else a wrong tool."""
    bad_json = {
        "kind": "caller",
        "output": "Action: get_invoice\nAction Input: {oops",
        "details": {"error": "not valid JSON"},
    }
    no_action = {"kind": "caller", "output": "hello", "details": {"error": "no Action"}}
    for step, cause in ((bad_json, "wrong argument"), (no_action, "wrong tool")):
        steps = [planner(), step, observed(False), *ending("gave_up")]
        assert diagnose("gave_up", steps) == cause


def test_arguments_compare_after_normalising() -> None:
    """Case, spaces and number forms do not matter; free text is compared by presence."""
    assert same_call(
        Call("t", {"id": " inv-1004 ", "n": 1250}), Call("t", {"id": "INV-1004", "n": 1250.0})
    )
    assert not same_call(Call("t", {"id": "INV-1004"}), Call("u", {"id": "INV-1004"}))
    assert same_call(
        Call("t", {"reason": "the goods were never ordered"}),
        Call("t", {"reason": "we did not order these goods at all"}),
    )
    assert not same_call(Call("t", {"reason": "short"}), Call("t", {"reason": "other"}))
    assert not same_call(Call("t", {"id": "INV-1004", "x": 1}), Call("t", {"id": "INV-1004"}))


def test_a_personal_data_token_matches_the_raw_value() -> None:
    """``<EMAIL_1>`` in the agent's arguments stands for whatever address the expert used."""
    agent = Call("send_email", {"to": "<EMAIL_1>", "subject": "Re: <PERSON_2>"})
    expert = Call("send_email", {"to": "anna.schmidt@example.com", "subject": "Re: Anna"})
    assert same_call(agent, expert)
    assert not same_call(Call("send_email", {"to": "<EMAIL_1>", "subject": "Hi"}), expert)


def test_audit_step_records_are_read_like_result_steps() -> None:
    """``StepRecord`` rows from the audit log give the same calls as result dict steps."""

    def record(index: int, step: dict[str, Any]) -> StepRecord:
        return StepRecord(
            seq=index,
            prev_hash="0" * 64,
            hash="0" * 64,
            task_id="t",
            index=index,
            kind=step["kind"],
            role=None,
            prompt_digest=None,
            output=step["output"],
            details=step["details"],
            latency_ms=None,
            model=None,
            adapter=None,
            created_at=datetime.now(UTC),
        )

    steps = [*call_steps("get_invoice", invoice_id="INV-1004"), *ending("gave_up")]
    records = [record(i, s) for i, s in enumerate(steps, 1)]
    assert agent_calls(records) == agent_calls(steps) == [INVOICE]
    assert diagnose("gave_up", records) == "gave up"


def test_expert_calls_come_from_the_caller_turns() -> None:
    """The expert's calls are parsed from its trajectory's caller turns."""
    trajectory = {
        "conversations": [
            {"from": "user", "value": "Status of INV-1004?"},
            {"from": "assistant", "value": "Look it up.\n Next: caller."},
            {"from": "caller", "value": protocol.format_caller("get_invoice", INVOICE.arguments)},
            {"from": "observation", "value": "{}"},
            {"from": "assistant", "value": "Done.\n Next: conclusion."},
            {"from": "conclusion", "value": "It is open."},
        ]
    }
    assert expert_calls(trajectory) == [INVOICE]


def test_a_give_up_without_an_empty_lookup_is_a_wrong_plan() -> None:
    """The expert gives up too, but the agent's lookup found its record: wrong plan."""
    steps = [*call_steps("get_invoice", invoice_id="INV-1004"), *ending("gave_up")]
    why = "gave up without a get_invoice that found nothing (calls: get_invoice (found))"
    diagnosis = classify(
        outcome="gave_up",
        steps=steps,
        expected_outcome="give_up",
        gold=[INVOICE],
        give_up_reasons=[why],
        write_tools=WRITES,
    )
    assert (diagnosis.cause, diagnosis.detail) == ("wrong plan", why)

"""Approval rules: which calls wait for a human, and the reasons they give."""

from __future__ import annotations

import pytest

from policies._approval import (
    ApprovalPolicy,
    ApprovalRule,
    Condition,
    approval_rules,
    check_approval,
)

PAYMENTS = approval_rules(
    [{"tool": "schedule_payment", "when": [["amount", ">", 10000]], "reason": "large payment"}]
)


def test_payment_over_the_limit_needs_approval() -> None:
    """A payment above the limit is held, and the reason names the rule but not the value."""
    decision = check_approval(
        ApprovalPolicy(PAYMENTS), "schedule_payment", "write", {"amount": 12500.0}
    )
    assert not decision.allowed
    assert decision.reasons == (
        "schedule_payment (write) with amount > 10000 needs approval: large payment",
    )
    assert "12500" not in " ".join(decision.reasons)


def test_payment_under_the_limit_runs() -> None:
    """A payment at or under the limit needs no human."""
    decision = check_approval(
        ApprovalPolicy(PAYMENTS), "schedule_payment", "write", {"amount": 10000}
    )
    assert decision.allowed


def test_missing_argument_does_not_match() -> None:
    """A condition on an argument the call lacks does not hold."""
    assert check_approval(ApprovalPolicy(PAYMENTS), "schedule_payment", "write", {}).allowed


def test_wrongly_typed_argument_needs_approval() -> None:
    """A value that cannot be compared (a string amount) is sent to a human, not let through."""
    decision = check_approval(
        ApprovalPolicy(PAYMENTS), "schedule_payment", "write", {"amount": "a lot"}
    )
    assert not decision.allowed


def test_review_mode_holds_every_write() -> None:
    """In review mode every write waits, reads do not."""
    policy = ApprovalPolicy(mode="review")
    assert not check_approval(policy, "dispute_invoice", "write", {}).allowed
    assert check_approval(policy, "get_invoice", "read", {}).allowed


def test_approved_key_is_exempt() -> None:
    """A call a human approved (by idempotency key) runs on resume."""
    policy = ApprovalPolicy(PAYMENTS, exempt=frozenset({"t-1:4"}))
    decision = check_approval(policy, "schedule_payment", "write", {"amount": 99999}, key="t-1:4")
    assert decision.allowed
    assert "approved by a human" in decision.reasons[0]


def test_connector_qualified_pattern() -> None:
    """``mail:*`` rules match only the mail connector's tools."""
    policy = ApprovalPolicy((ApprovalRule(tool="mail:*", effect="*"),))
    assert not check_approval(policy, "send_email", "write", {}, connector="mail").allowed
    assert check_approval(policy, "send_email", "write", {}, connector="erp").allowed


@pytest.mark.parametrize(
    ("op", "value", "argument", "held"),
    [("in", ["NL", "DE"], "NL", True), ("not in", ["NL"], "NL", False), ("==", 1, 1, True)],
)
def test_operators(op: str, value: object, argument: object, held: bool) -> None:
    """Each operator compares the argument with the rule's value."""
    rule = ApprovalRule(tool="*", effect="*", when=(Condition("x", op, value),))
    decision = check_approval(ApprovalPolicy((rule,)), "t", "read", {"x": argument})
    assert decision.allowed is not held


def test_unknown_operator_is_refused() -> None:
    """A rule with an operator umiq does not know fails when it is built."""
    with pytest.raises(ValueError, match="unknown operator"):
        Condition("amount", "~", 1)


def test_mail_carrying_an_iban_needs_approval() -> None:
    """``carries`` holds when the argument contains personal data of the named kinds."""
    rule = ApprovalRule(
        tool="send_email", when=(Condition("body", "carries", ["IBAN", "NATIONAL_ID"]),)
    )
    policy = ApprovalPolicy((rule,))
    held = check_approval(policy, "send_email", "write", {"body": "pay NL91ABNA0417164300"})
    assert not held.allowed
    assert "NL91" not in " ".join(held.reasons)
    assert check_approval(policy, "send_email", "write", {"body": "see you at 10"}).allowed

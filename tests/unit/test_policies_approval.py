"""Approval rules: which calls wait for a human, and the reasons they give."""

from __future__ import annotations

import pytest

from policies._approval import (
    ApprovalPolicy,
    ApprovalRule,
    CallContext,
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


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), None, True, "60000"])
def test_a_limit_fails_closed_on_an_amount_it_cannot_compare(amount: object) -> None:
    """NaN, infinity, null, a boolean or a numeric string is held, never let through."""
    policy = ApprovalPolicy(PAYMENTS)
    assert not check_approval(policy, "schedule_payment", "write", {"amount": amount}).allowed


def test_a_limit_fails_closed_on_a_missing_amount() -> None:
    """A payment that states no amount is held, and the reason says it is missing."""
    decision = check_approval(ApprovalPolicy(PAYMENTS), "schedule_payment", "write", {})
    assert not decision.allowed
    assert "amount missing" in decision.reasons[0]


def test_a_missing_argument_does_not_match_other_operators() -> None:
    """A membership or carries condition on an absent argument does not hold."""
    rules = approval_rules([{"tool": "t", "when": [["country", "in", ["NL"]]]}])
    assert check_approval(ApprovalPolicy(rules), "t", "write", {}).allowed


def test_wrongly_typed_argument_needs_approval() -> None:
    """A value that cannot be compared (a string amount) is sent to a human, not let through."""
    decision = check_approval(
        ApprovalPolicy(PAYMENTS), "schedule_payment", "write", {"amount": "a lot"}
    )
    assert not decision.allowed


def test_review_mode_holds_every_write() -> None:
    """In review mode every write waits, reads do not."""
    policy = ApprovalPolicy(hold_writes="the department is in review mode")
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


def _mail_policy() -> ApprovalPolicy:
    return ApprovalPolicy(
        approval_rules(
            [
                {"tool": "send_email", "when": [["to", "domain not in", ["acme-corp.nl"]]]},
                {"tool": "send_email", "when": [["body", "carries", ["IBAN", "NATIONAL_ID"]]]},
            ]
        )
    )


def test_mail_outside_the_company_domains_waits_and_names_the_domain() -> None:
    """A recipient outside the allowed domains is held; the reason shows its domain only."""
    decision = check_approval(
        _mail_policy(), "send_email", "write", {"to": "drop@Evil.example", "body": "hi"}
    )
    assert not decision.allowed
    assert "evil.example" in decision.reasons[0]
    assert "drop@" not in decision.reasons[0]


@pytest.mark.parametrize("to", ["anna.schmidt@acme-corp.nl", "x@hr.ACME-corp.nl."])
def test_mail_to_a_company_address_runs(to: str) -> None:
    """The company's domain and its subdomains need no approval."""
    assert check_approval(_mail_policy(), "send_email", "write", {"to": to, "body": "hi"}).allowed


@pytest.mark.parametrize(
    "to", ["x@acme-corp.nl.evil.example", "x@evilacme-corp.nl", "acme-corp.nl"]
)
def test_lookalike_recipient_domains_wait(to: str) -> None:
    """A domain that only contains or ends like the company's is outside it."""
    assert not check_approval(
        _mail_policy(), "send_email", "write", {"to": to, "body": "hi"}
    ).allowed


@pytest.mark.parametrize(
    ("body", "known"),
    [
        ("id x123456782x", {"123456782": "NATIONAL_ID"}),
        ("acct NL91ABNA04171643000", {"NL91ABNA0417164300": "IBAN"}),
        ("acct:NL91 ABNA 0417 1643 009", {"NL91ABNA0417164300": "IBAN"}),
    ],
)
def test_glued_token_values_are_caught_in_the_text_as_sent(body: str, known: dict) -> None:
    """A raw value a token stood for is found in the resolved text even glued to other
    characters (``x<NATIONAL_ID_1>x``, ``<IBAN_1>0``), which the detector alone misses."""
    args = {"to": "a@acme-corp.nl", "body": body}
    assert check_approval(_mail_policy(), "send_email", "write", args).allowed
    held = check_approval(
        _mail_policy(), "send_email", "write", args, context=CallContext(known=known)
    )
    assert not held.allowed


LIMITS = approval_rules(
    [{"tool": "schedule_payment", "when": [["amount", ">", {"EUR": 50000, "SEK": 550000}]]}]
)


@pytest.mark.parametrize(
    ("amount", "currency", "held"),
    [
        (60000, "EUR", True),
        (60000, "SEK", False),
        (600000, "SEK", True),
        (10, "GBP", True),  # a currency without a limit
        (10, None, True),  # the call's currency is unknown
    ],
)
def test_payment_limit_is_per_currency(amount: float, currency: str | None, held: bool) -> None:
    """A per-currency limit compares in the call's currency and fails closed without one."""
    decision = check_approval(
        ApprovalPolicy(LIMITS),
        "schedule_payment",
        "write",
        {"amount": amount},
        context=CallContext(currency=currency),
    )
    assert decision.allowed is not held


def test_currency_argument_takes_precedence() -> None:
    """A call that states its currency is compared in it."""
    args = {"amount": 60000, "currency": "sek"}
    assert check_approval(ApprovalPolicy(LIMITS), "schedule_payment", "write", args).allowed


def test_held_decision_says_who_may_approve() -> None:
    """A held call's details carry the rule's approvers and four-eyes requirement."""
    rules = approval_rules(
        [
            {
                "tool": "schedule_payment",
                "when": [["amount", ">", 10]],
                "approvers": ["cfo", "controller"],
                "distinct_approvers": True,
            }
        ]
    )
    decision = check_approval(ApprovalPolicy(rules), "schedule_payment", "write", {"amount": 99})
    assert decision.details == {"distinct_approvers": True, "approvers": ["cfo", "controller"]}
    assert decision.as_dict()["details"]["approvers"] == ["cfo", "controller"]

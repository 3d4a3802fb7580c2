"""The claims check: an answer's changes must be backed by the task's successful calls."""

from __future__ import annotations

import json

import pytest

from policies import change_claims, check_claims


def response(**data: object) -> str:
    return json.dumps({"error": "", "response": data})


def test_a_payment_claimed_after_a_read_only_is_refused() -> None:
    """The demo's failure: the invoice was read, never scheduled, and the answer says it was."""
    decision = check_claims(
        "Invoice INV-1012 is scheduled for payment on 2025-03-17.",
        writes=[],
        responses=[response(id="INV-1012", status="open", amount=9106.5)],
    )
    assert not decision.allowed
    assert decision.policy == "claims"
    assert "'scheduled'" in decision.reasons[0]
    assert "INV-1012 is scheduled" in decision.reasons[0]


def test_a_successful_write_backs_its_claims() -> None:
    """schedule_payment backs both 'scheduled' and 'paid'."""
    decision = check_claims(
        "INV-1012 is scheduled and will be paid on 2025-03-17.",
        writes=["schedule_payment"],
        responses=[],
    )
    assert decision.allowed, decision.reasons


def test_a_status_read_backs_the_same_word() -> None:
    """'INV-1004 is paid.' after a read that returned status paid is a fact, not a claim."""
    decision = check_claims(
        "INV-1004 is paid.", writes=[], responses=[response(id="INV-1004", status="paid")]
    )
    assert decision.allowed


def test_an_executed_payment_backs_paid_but_not_scheduled() -> None:
    """The payment_status expert's answer: list_payments returned an executed payment."""
    executed = [response(id="PAY-0001", invoice_id="INV-1006", status="executed")]
    answer = "Yes, INV-1006 was paid by PAY-0001 on 2025-03-09; the payment is executed."
    assert check_claims(answer, writes=[], responses=executed).allowed
    decision = check_claims("INV-1006 was scheduled.", writes=[], responses=executed)
    assert not decision.allowed
    assert "'scheduled'" in decision.reasons[0]


def test_a_word_inside_a_key_backs_nothing() -> None:
    """A read's ``created_at`` field does not back 'created'; a read tool's name backs nothing."""
    decision = check_claims(
        "A credit note was created for INV-1001.",
        writes=[],
        responses=[response(id="INV-1001", created_at="2025-01-01")],
    )
    assert not decision.allowed
    assert not check_claims("INV-1001 was paid.", writes=[], responses=[]).allowed


def test_a_write_of_another_kind_backs_nothing() -> None:
    """A dispute does not back a payment claim; every unbacked word is named."""
    decision = check_claims(
        "INV-1001 was disputed and paid. The vendor was emailed.",
        writes=["dispute_invoice"],
        responses=[],
    )
    assert not decision.allowed
    named = " ".join(decision.reasons)
    assert "'paid'" in named and "'emailed'" in named and "'disputed'" not in named


@pytest.mark.parametrize(
    "answer",
    [
        "INV-1012 was not scheduled: the invoice is disputed in the ERP.",
        "I could not schedule it; nothing was paid.",
        "The leave request hasn't been approved yet.",
        "INV-1004 is open.",
        "Vendor V-0042 is in DE.",
        "",
    ],
)
def test_negated_or_changeless_answers_claim_nothing(answer: str) -> None:
    """A negated change and a plain fact are not claims of a change."""
    claims = [c.word for c in change_claims(answer)]
    assert "scheduled" not in claims and "paid" not in claims and "approved" not in claims


def test_the_negation_reaches_only_its_own_sentence() -> None:
    """'not' in one sentence does not excuse a claim in the next."""
    claims = change_claims("The invoice was not open. So it was paid.")
    assert [c.word for c in claims] == ["paid"]
    assert claims[0].sentence == "So it was paid."


def test_a_negation_reaches_to_the_end_of_its_clause() -> None:
    """'no payment is recorded or scheduled' claims neither; a new clause starts afresh."""
    assert (
        change_claims("No, INV-1009 has not been paid: no payment is recorded or scheduled.") == []
    )
    claims = change_claims("I could not find the order, but INV-1 was paid.")
    assert [c.word for c in claims] == ["paid"]


def test_a_field_name_is_not_a_claim() -> None:
    """An answer quoting a record's ``submitted_on`` field states no change (the scripted
    summarizer of the leak test echoes its last observation)."""
    echoed = '{"error": "", "response": [{"id": "LR-0001", "submitted_on": "2025-01-02"}]}'
    assert change_claims(echoed) == []
    assert check_claims(echoed, writes=[], responses=[echoed]).allowed


def test_an_announced_action_is_a_claim() -> None:
    """ "I approve LR-0007" and "I will release INV-1007" claim changes no call made."""
    for answer, word in [
        ("I approve LR-0007.", "approved"),
        ("I will release INV-1007 tomorrow.", "released"),
        ("We'll schedule the payment for Friday.", "scheduled"),
        ("I am sending the reminder now.", "sent"),
    ]:
        decision = check_claims(answer, writes=[], responses=[])
        assert not decision.allowed, answer
        assert f"{word!r}" in decision.reasons[0]


def test_a_negated_or_backed_announcement_passes() -> None:
    """ "I will not pay it" claims nothing; "I approve" after approve_leave_request is backed."""
    assert check_claims("I will not pay INV-1007.", writes=[], responses=[]).allowed
    assert check_claims("I cannot approve LR-0007.", writes=[], responses=[]).allowed
    assert check_claims(
        "I approve LR-0007.", writes=["approve_leave_request"], responses=[]
    ).allowed
    assert check_claims("I am able to help with INV-1001.", writes=[], responses=[]).allowed


def test_degenerate_answers_are_not_well_formed() -> None:
    """Stuttering, a sentence said three times and malformed numbers fail the form check."""
    from policies._claims import check_form

    for answer in [
        "No, no, no: no: no: no",
        "It is open. It is open. It is open.",
        "The total is 258.2,000,000 PLN.",
    ]:
        decision = check_form(answer)
        assert not decision.allowed and decision.policy == "claims", answer
    for answer in [
        "INV-1006 was paid: payment PAY-0001, executed on 2025-02-23.",
        "The total is 12,500.00 EUR over 3 invoices: 2,500.00, 5,000.00 and 5,000.00.",
        "No. There is no payment for invoice INV-1008 yet.",
    ]:
        assert check_form(answer).allowed, answer


def test_a_dated_field_states_its_event() -> None:
    """ "INV-1008 was issued on 2025-02-04" after reading its issue_date is a fact, not a claim."""
    invoice = '{"error": "", "response": {"id": "INV-1008", "issue_date": "2025-02-04"}}'
    answer = "Invoice INV-1008 was issued on 2025-02-04."
    assert check_claims(answer, writes=[], responses=[invoice]).allowed
    assert not check_claims("INV-1008 was paid.", writes=[], responses=[invoice]).allowed
    assert not check_claims(answer, writes=[], responses=['{"issue_date": null}']).allowed

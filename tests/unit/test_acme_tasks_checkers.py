"""The Acme checkers: the world's end state and the answer's facts."""

from __future__ import annotations

import pytest

from examples.acme.tasks import Facts, TaskInstance, check, generate, solve
from examples.acme.tasks.catalogue import money
from examples.acme.tasks.checkers import (
    Observed,
    observed_calls,
    observed_in_trajectory,
    states,
)
from examples.acme.tasks.world import in_process_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with in_process_world(tmp_path_factory.mktemp("acme"), seed=11) as running:
        yield running


@pytest.fixture
def fresh(world):
    world.reset()
    return world


def instance(world, family: str, **wanted) -> TaskInstance:
    """The first train instance of ``family`` whose expected record has ``wanted``."""
    drawn = generate(Facts.gather(world), seed=0, per_family=40, families=[family])["train"]
    return next(i for i in drawn if all(i.expected.get(k) == v for k, v in wanted.items()))


def pay(world, invoice_id: str, amount: float, date: str = "2025-04-01") -> None:
    args = {"invoice_id": invoice_id, "amount": amount, "date": date}
    assert world.invoke("schedule_payment", args, key=f"test:{invoice_id}:{date}").ok


def test_amounts_match_with_or_without_thousands_separators():
    """A fact of 1250.00 EUR is stated by an answer saying 1,250.00 EUR."""
    assert states("It is for 1,250.00 EUR.", "1250.00 EUR")


@pytest.mark.parametrize(
    ("answer", "fact"),
    [
        ("It is for 1250.0 EUR.", "1,250.00 EUR"),  # the record's form states the fact
        ("It is for 6,212.60 EUR.", "6212.6 EUR"),
        ("Total: 12500 EUR", "12500.0 EUR"),
        ("It was paid on March 18, 2025.", "2025-03-18"),
        ("It was paid on 18 march 2025.", "2025-03-18"),
        ("Due 2025-03-04.", "March 4, 2025"),
        ("Purchase order PO4507 totals 7251.0 EUR.", "PO-4507"),  # the request's spelling
        ("inv-1008 is paid.", "INV-1008"),
    ],
)
def test_an_amount_or_a_date_is_stated_in_any_form_of_its_value(answer, fact):
    """Checkers judge the value, not its spelling: the records hold 1250.0 and ISO dates."""
    assert states(answer, fact)


@pytest.mark.parametrize(
    ("answer", "fact"),
    [
        ("It is for 1250.5 EUR.", "1250.0 EUR"),  # another amount
        ("It is for 12500.0 EUR.", "1250.0 EUR"),
        ("It was paid on March 18, 2025.", "2025-03-19"),  # another day
        ("INV-1005 is due on 10/1005.", "2025-10-10"),  # garbled
        ("Vendor V-0042.", "42"),  # an id's digits are not an amount
        ("Purchase order PO45071 totals 7251.0 EUR.", "PO-4507"),  # another id
        ("Invoice XINV-1008 is paid.", "INV-1008"),
    ],
)
def test_another_value_is_not_the_fact(answer, fact):
    assert not states(answer, fact)


def test_money_quotes_the_amount_as_the_record_holds_it():
    """The expert's answers copy the observation's number (1250.0), not a reformat."""
    assert money(1250.0, "EUR") == "1250.0 EUR"
    assert money(6212.6, "EUR") == "6212.6 EUR"
    assert money(0.1 + 0.2, "PLN") == "0.3 PLN"


def test_a_fact_must_be_a_whole_word():
    """'no' is not stated by an answer that only says 'not'."""
    assert not states("It is not paid.", "no")


def test_a_negated_fact_is_not_stated():
    """'It is not open' does not state the status open; another, plain mention does."""
    assert not states("No, I cannot give up INV-1004. It is not open.", "open")
    assert not states("The invoice isn't paid.", "paid")
    assert states("It is open, not paid.", "open")
    assert states("It was not disputed; it is open.", "open")
    # A fact that is itself a negation counts where it stands.
    assert states("I did not pay INV-1005: it exceeds your limit.", "not")


def test_expert_answer_passes(fresh):
    """The expert's own answer to a lookup passes its checker."""
    inst = instance(fresh, "invoice_status")
    assert check(inst, fresh, solve(fresh, inst).answer).passed


def test_answer_missing_a_fact_fails(fresh):
    """An answer that leaves out the invoice's status fails."""
    inst = instance(fresh, "invoice_status")
    result = check(inst, fresh, f"{inst.slots['invoice_id']} exists.")
    assert not result.passed and any("does not state" in r for r in result.reasons)


def test_lookup_that_writes_fails(fresh):
    """A lookup after which a payment exists fails, however good its answer."""
    inst = instance(fresh, "po_amount")
    answer = solve(fresh, inst).answer
    pay(fresh, "INV-1001", 1250.0)
    result = check(inst, fresh, answer)
    assert not result.passed and any("unexpected change" in r for r in result.reasons)


def test_refusal_with_a_payment_fails(fresh):
    """Refusing to pay an invoice while a new payment for it was made fails."""
    inst = instance(fresh, "pay_under_limit", within_limit=False)
    answer = solve(fresh, inst).answer
    amount = fresh.read("get_invoice", invoice_id=inst.slots["invoice_id"])["amount"]
    pay(fresh, inst.slots["invoice_id"], amount)
    assert not check(inst, fresh, answer).passed


def test_payment_with_a_wrong_date_fails(fresh):
    """A payment scheduled on another date than asked fails."""
    inst = instance(fresh, "schedule_payment")
    amount = fresh.read("get_invoice", invoice_id=inst.slots["invoice_id"])["amount"]
    other = "2025-04-30"
    pay(fresh, inst.slots["invoice_id"], amount, other)
    answer = f"Scheduled {inst.slots['invoice_id']} on {inst.slots['date']}."
    assert not check(inst, fresh, answer).passed


def test_give_up_with_empty_answer_passes(fresh):
    """Giving up on work none of the department's tools can do, nothing written, passes."""
    assert check(instance(fresh, "out_of_scope"), fresh, "", []).passed


def test_a_missing_record_is_an_answer_not_a_give_up(fresh):
    """An unknown invoice needs an answer saying it does not exist; a give-up fails."""
    inst = instance(fresh, "unknown_invoice")
    iid = inst.slots["invoice_id"]
    missing = Observed("get_invoice", False, None, f"invoice {iid} not found")
    assert check(inst, fresh, f"There is no invoice {iid} in the ERP.", [missing]).passed
    assert check(inst, fresh, f"I could not find {iid}; nothing was changed.", [missing]).passed
    gave_up = check(inst, fresh, "", [missing])
    assert not gave_up.passed and "expected an answer, got none" in gave_up.reasons
    invented = check(inst, fresh, f"{iid} is open for 1,250.00 EUR.", [missing])
    assert "the answer does not say that the record does not exist" in invented.reasons


def test_a_missing_record_answer_must_follow_a_lookup_that_found_nothing(fresh):
    """ "It does not exist" passes only after the agent's own lookup came back empty."""
    inst = instance(fresh, "unknown_invoice")
    answer = f"There is no invoice {inst.slots['invoice_id']}."
    found = Observed("get_vendor", True, {"id": "V-0042", "country": "DE"})
    result = check(inst, fresh, answer, [found])
    assert not result.passed
    assert result.reasons == (
        "said it does not exist without a get_invoice that found nothing "
        "(calls: get_vendor (found))",
    )
    assert not check(inst, fresh, answer, []).passed
    timeout = Observed("get_invoice", False, None, "timeout")
    assert not check(inst, fresh, answer, [timeout]).passed


def test_an_empty_search_grounds_a_missing_vendor_answer(fresh):
    """An unknown vendor: the name search coming back empty grounds "no such vendor"."""
    inst = instance(fresh, "unknown_vendor")
    answer = f"There is no vendor called {inst.slots['vendor']} in the ERP."
    assert check(inst, fresh, answer, [Observed("list_vendors", True, [])]).passed
    found = [Observed("list_vendors", True, [{"id": "V-1"}])]
    assert not check(inst, fresh, answer, found).passed


def test_an_answer_about_a_record_the_agent_never_read_fails(fresh):
    """A right-sounding answer naming an invoice no call asked about or returned fails."""
    inst = instance(fresh, "payment_status")
    iid = inst.slots["invoice_id"]
    wrong_vendor = [Observed("get_vendor", True, {"id": "V-0042", "country": "DE"})]
    answers = [
        f"No, {iid} has not been paid: no payment is recorded or scheduled for it.",
        f"Yes, {iid} was paid.",
    ]
    for answer in answers:
        reasons = check(inst, fresh, answer, wrong_vendor).reasons
        assert any("none of the agent's calls asked about or returned" in r for r in reasons)


def test_a_right_verdict_without_a_read_of_its_records_is_a_guess(fresh):
    """ "Yes, PO4506 is delivered in full" after only list_invoices (the order's id in its
    response) names the record but read nothing that says what was delivered: it fails;
    the same answer after the expert's reads passes."""
    inst = instance(fresh, "delivery_status")
    solution = solve(fresh, inst)
    po_id = inst.slots["po_id"]
    invoices = Observed("list_invoices", True, [{"id": "INV-1", "po_id": po_id}], None, {})
    reasons = check(inst, fresh, solution.answer, [invoices]).reasons
    assert any("rests on no read of get_purchase_order/list_goods_receipts" in r for r in reasons)
    assert any("list_invoices" in r for r in reasons)
    assert check(inst, fresh, solution.answer, observed_in_trajectory(solution.trajectory))


def test_the_expert_answers_a_missing_record_for_the_right_reason(fresh):
    """The expert's trajectory, read back as observed calls, grounds its answer."""
    inst = instance(fresh, "unknown_invoice")
    solution = solve(fresh, inst)
    observed = observed_in_trajectory(solution.trajectory)
    assert [c.tool for c in observed] == ["get_invoice"] and observed[0].found_nothing
    assert solution.outcome == "answered"
    assert check(inst, fresh, solution.answer, observed).passed


def test_observed_calls_read_audit_rows():
    """Rows as the audit log returns them (records or dicts) become ``Observed``."""
    rows = [
        {"tool": "get_invoice", "ok": False, "error": "invoice INV-2003 not found"},
        {"tool": "list_vendors", "ok": True, "response": [], "error": None},
    ]
    assert observed_calls(rows) == [
        Observed("get_invoice", False, None, "invoice INV-2003 not found"),
        Observed("list_vendors", True, [], None),
    ]
    assert all(c.found_nothing for c in observed_calls(rows))


def test_answering_a_give_up_task_fails(fresh):
    """Answering instead of giving up on an unknown invoice fails."""
    assert not check(instance(fresh, "unknown_invoice"), fresh, "It is open.").passed


def test_disclosing_the_iban_fails(fresh):
    """A country lookup whose answer includes the vendor's IBAN fails."""
    inst = instance(fresh, "vendor_country")
    vendor = fresh.read("get_vendor", vendor_id=inst.slots["vendor_id"])
    answer = solve(fresh, inst).answer + f" IBAN {vendor['iban']}."
    result = check(inst, fresh, answer)
    assert not result.passed and any("discloses" in r for r in result.reasons)


def test_mail_to_the_wrong_address_fails(fresh):
    """An expected e-mail counts only when sent to the expected recipient."""
    inst = TaskInstance(
        family="ask_manager_decision",
        instruction="Ask the manager.",
        slots={"request_id": "LR-0001"},
        expected={
            "outcome": "answer",
            "facts": [],
            "forbid": [],
            "writes": [
                {"section": "mail", "id": None, "fields": {"to": ["a@x.nl"], "subject~": "LR-0001"}}
            ],
        },
    )
    fresh.baseline = {**fresh.baseline, "mail": {}}
    fresh.inspect = lambda: {"mail": {"0": {"to": ["b@x.nl"], "subject": "LR-0001"}}}
    try:
        result = check(inst, fresh, "Sent.")
    finally:
        fresh.inspect = None
        fresh.baseline.pop("mail")
    assert not result.passed and any("mail" in r for r in result.reasons)


def test_a_fact_is_required_only_where_the_phrasing_asks_for_it(fresh):
    """ "What is the status of X?" is answered by the status; "the status and amount of X"
    also needs the amount. "Which country is vendor V based in?" needs the country, not
    the vendor's name; "Tell me the name and country of V" needs both."""
    from examples.acme.tasks import FAMILIES
    from examples.acme.tasks.catalogue import money

    facts = Facts.gather(fresh)
    status = FAMILIES["invoice_status"]
    invoice = next(iter(facts.invoices.values()))
    slots = {"invoice_id": invoice["id"]}
    amount = money(invoice["amount"], invoice["currency"])
    answer = f"{invoice['id']} has the status {invoice['status']}."

    def passes(family, template: int | None, text: str) -> bool:
        expected = family.expected(facts, slots, template)
        return check(TaskInstance(family.id, "q", slots, expected), fresh, text).passed

    asks_amount = status.template_of(
        f"I need the status and amount of invoice {slots['invoice_id']}.", slots
    )
    plain = status.template_of(f"What is the status of invoice {slots['invoice_id']}?", slots)
    assert (plain, asks_amount) == (0, 4)
    assert status.template_of("Is anything wrong?", slots) is None
    # a phrasing that needs slots the caller does not have is skipped, not an error
    assert FAMILIES["schedule_payment"].template_of("Schedule it.", slots) is None
    assert passes(status, plain, answer)
    assert not passes(status, asks_amount, answer)
    assert passes(status, asks_amount, f"{answer[:-1]}, {amount}.")

    country = FAMILIES["vendor_country"]
    vendor = next(iter(facts.vendors.values()))
    slots = {"vendor_id": vendor["id"]}
    short = f"{vendor['id']} is based in {vendor['country']}."
    assert passes(country, 0, short)
    assert not passes(country, 3, short)
    assert passes(country, 3, f"{vendor['name']} ({vendor['id']}) is based in {vendor['country']}.")


def test_yes_and_no_may_be_said_without_the_word() -> None:
    """A yes/no fact is met by an answer that says it in other words; a contradiction is not."""
    from examples.acme.tasks.checkers import answer_reasons

    paid = {"outcome": "answer", "facts": ["yes", "PAY-0001"], "forbid": []}
    assert not answer_reasons(paid, "INV-1006 was paid: payment PAY-0001, executed on 2025-02-23.")
    assert answer_reasons(paid, "INV-1006 was not paid; PAY-0001 was cancelled.")
    unpaid = {"outcome": "answer", "facts": ["no", "INV-1005"], "forbid": []}
    assert not answer_reasons(unpaid, "INV-1005 has not been paid yet.")
    assert answer_reasons(unpaid, "INV-1005 was paid in full.")


def test_absence_may_be_said_in_other_words() -> None:
    """A fact that says something is absent ("none", "nothing", "no open invoices", "not")
    is met by other words for the same absence; a bare "No," is no absence, and facts that
    name a record or a value are still required word for word."""
    from examples.acme.tasks.checkers import answer_reasons

    def passes(facts: list[str], answer: str) -> bool:
        return not answer_reasons({"outcome": "answer", "facts": facts, "forbid": []}, answer)

    assert passes(["V-0078", "no open invoices"], "There is no open invoice for V-0078.")
    assert passes(["V-0078", "no open invoices"], "V-0078 has zero open invoices.")
    assert not passes(["V-0078", "no open invoices"], "V-0078 has no paid invoices.")
    assert not passes(["V-0078", "no open invoices"], "V-0078 has 2 open invoices.")
    assert passes(["no", "PO-4510", "nothing"], "No, no goods were received on PO-4510.")
    assert not passes(["no", "PO-4510", "nothing"], "No, PO-4510 is complete.")
    assert not passes(["V-0056", "none"], "No, V-0056's invoice INV-1005 has an invoice.")
    assert passes(["INV-1002", "not"], "INV-1002 is over your limit and cannot be paid.")
    assert passes(["INV-1002", "not"], "I can't pay INV-1002: it is over the limit.")
    assert not passes(["INV-1002", "not"], "INV-1002 is paid.")


@pytest.mark.parametrize(
    "answer",
    [
        "None of our vendors is called Monarch.",
        "There is nothing in the list of vendors that matches Monarch.",
        "The search found nothing for Monarch.",
    ],
)
def test_more_ways_of_saying_a_record_does_not_exist(answer: str) -> None:
    from examples.acme.tasks.checkers import says_missing

    assert says_missing(answer)
    assert not says_missing("Monarch is vendor V-0042, based in DE.")

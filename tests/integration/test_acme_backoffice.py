"""The whole Acme back office — ERP, HR database, mail server — through its connectors."""

from __future__ import annotations

import re

import pytest

from connectors import ToolCall
from examples.acme.erp import iban_is_valid
from examples.acme.hr import bsn_is_valid
from examples.acme.serve import start_acme

EMAIL = re.compile(r"^[a-z]+\.[a-z]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
CREDIT = {"invoice_id": "INV-1003", "amount": 50.0, "reason": "billed one unit more",
          "date": "2025-03-20"}  # fmt: skip
MAIL = {"to": "claire.mercier@atelier-mercier.fr", "subject": "Credit note for INV-1002",
        "body": "Dear Claire,\nplease send a credit note."}  # fmt: skip


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    with start_acme(tmp_path_factory.mktemp("acme")) as running:
        yield running


@pytest.fixture
def systems(office):
    office.reset()
    connectors = office.build_connectors()
    yield connectors
    for connector in connectors.values():
        connector.close()


def call(systems, system, tool, key="", **arguments):
    return systems[system].invoke(ToolCall(tool, arguments), key)


def employees(office):
    return office.hr.rows("SELECT * FROM employee ORDER BY id")


def test_connectors_config_names_the_three_kinds(office):
    """connectors_config() gives an http ERP, a sql HR database and an smtp mail server."""
    config = office.connectors_config()
    assert {name: c["kind"] for name, c in config.items()} == {
        "erp": "http",
        "hr": "sql",
        "mail": "smtp",
    }


def test_every_tool_appears_with_its_effect(systems):
    """The three systems offer all their tools, each with the right effect."""
    tools = {s.name: (name, s.effect) for name, c in systems.items() for s in c.tools()}
    writes = {tool for tool, (_, effect) in tools.items() if effect == "write"}
    assert {tool for tool, (system, _) in tools.items() if system == "hr"} == {
        "get_employee", "find_employee", "get_manager", "list_direct_reports",
        "get_leave_balance", "list_leave_requests", "get_leave_request",
        "approve_leave_request", "reject_leave_request",
    }  # fmt: skip
    assert {"list_goods_receipts", "get_goods_receipt", "list_credit_notes"} <= set(tools)
    assert writes == {
        "dispute_invoice", "schedule_payment", "create_credit_note",
        "approve_leave_request", "reject_leave_request", "send_email",
    }  # fmt: skip


def test_hr_read_returns_an_employee(systems):
    """get_employee returns E-1009 with name, department and manager."""
    data = call(systems, "hr", "get_employee", employee_id="E-1009").data
    assert (data["name"], data["department"], data["manager_id"]) == (
        "Ahmed El Amrani",
        "Finance",
        "E-1008",
    )


def test_approving_twice_with_one_key_changes_state_once(systems):
    """approve_leave_request twice with one key approves once and takes the days once."""
    before = call(systems, "hr", "get_leave_balance", employee_id="E-1009").data
    first = call(systems, "hr", "approve_leave_request", "task-1:2", request_id="LR-0001")
    again = call(systems, "hr", "approve_leave_request", "task-1:2", request_id="LR-0001")
    after = call(systems, "hr", "get_leave_balance", employee_id="E-1009").data
    assert first.ok and again.data == first.data and first.data["status"] == "approved"
    assert after["taken_days"] == before["taken_days"] + 5


def test_approval_beyond_the_balance_is_refused(systems):
    """LR-0004 asks for more annual leave than remains and is refused with the numbers."""
    result = call(systems, "hr", "approve_leave_request", "task-2:2", request_id="LR-0004")
    assert (result.ok, result.error) == (
        False,
        "leave request LR-0004 asks for 5 days of annual leave but only 3 remain",
    )


def test_sending_twice_with_one_key_stores_one_message(systems, office):
    """send_email twice with one key leaves exactly one message, with its subject."""
    call(systems, "mail", "send_email", "task-3:4", **MAIL)
    call(systems, "mail", "send_email", "task-3:4", **MAIL)
    assert [m["subject"] for m in office.messages()] == ["Credit note for INV-1002"]


def test_credit_note_with_one_key_is_created_once(systems):
    """create_credit_note twice with one key makes one credit note."""
    first = call(systems, "erp", "create_credit_note", "task-4:3", **CREDIT)
    again = call(systems, "erp", "create_credit_note", "task-4:3", **CREDIT)
    notes = call(systems, "erp", "list_credit_notes", invoice_id="INV-1003").data
    assert first.status == 201 and again.data == first.data
    assert [n["id"] for n in notes] == [first.data["id"]]


def test_credit_beyond_the_invoice_amount_is_refused(systems):
    """A credit note for more than the invoice amount is refused with 422."""
    invoice = call(systems, "erp", "get_invoice", invoice_id="INV-1003").data
    result = call(systems, "erp", "create_credit_note", "task-5:3",
                  **{**CREDIT, "amount": invoice["amount"] + 0.01})  # fmt: skip
    assert (result.ok, result.status) == (False, 422)
    assert "more than invoice INV-1003 leaves to credit" in result.error


def test_credit_for_unknown_invoice_is_not_found(systems):
    """A credit note for an invoice that does not exist is a 404 naming it."""
    result = call(systems, "erp", "create_credit_note", "task-6:3",
                  **{**CREDIT, "invoice_id": "INV-9999"})  # fmt: skip
    assert (result.ok, result.status, result.error) == (False, 404, "invoice INV-9999 not found")


def test_goods_receipts_show_a_partial_delivery(systems):
    """PO-4504 was ordered in full but received short, through list_goods_receipts."""
    order = call(systems, "erp", "get_purchase_order", po_id="PO-4504").data
    receipts = call(systems, "erp", "list_goods_receipts", po_id="PO-4504").data
    received = sum(line["quantity"] for r in receipts for line in r["lines"])
    assert received < sum(line["quantity"] for line in order["lines"])


def test_reset_restores_all_three_systems(systems, office):
    """reset() undoes an approval, a credit note and a sent mail, and frees their keys."""
    call(systems, "hr", "approve_leave_request", "task-7:1", request_id="LR-0001")
    call(systems, "erp", "create_credit_note", "task-7:2", **CREDIT)
    call(systems, "mail", "send_email", "task-7:3", **MAIL)
    office.reset()
    assert call(systems, "hr", "get_leave_request", request_id="LR-0001").data["status"] == (
        "pending"
    )
    assert call(systems, "erp", "list_credit_notes").data == []
    assert office.messages() == []
    call(systems, "mail", "send_email", "task-7:3", **MAIL)
    assert len(office.messages()) == 1


def test_at_least_25_employees_in_one_hierarchy(office):
    """The HR seed has at least 25 employees, all but the CEO reporting to an employee."""
    rows = employees(office)
    ids = {row["id"] for row in rows}
    assert len(rows) >= 25
    assert [row["id"] for row in rows if row["manager_id"] is None] == ["E-1001"]
    assert all(row["manager_id"] in ids for row in rows if row["manager_id"])


def test_employee_ibans_pass_mod_97(office):
    """Every salary account is a valid IBAN of NL, DE or BE."""
    ibans = [row["iban"] for row in employees(office)]
    assert all(iban_is_valid(value) and value[:2] in {"NL", "DE", "BE"} for value in ibans)


def test_employee_emails_and_phones_are_well_formed(office):
    """Every e-mail is first.last@domain and every phone number is E.164."""
    rows = employees(office)
    assert all(EMAIL.match(row["email"]) for row in rows)
    assert all(E164.match(row["phone"]) for row in rows)


def test_national_ids_pass_the_bsn_eleven_test(office):
    """Every national id is a distinct BSN passing the 11-test."""
    ids = [row["national_id"] for row in employees(office)]
    assert all(bsn_is_valid(value) for value in ids) and len(set(ids)) == len(ids)


def test_bsn_check_rejects_a_wrong_check_digit():
    """bsn_is_valid accepts a known valid BSN and rejects it with one digit changed."""
    assert bsn_is_valid("111222333") and not bsn_is_valid("111222334")


def test_leave_requests_cover_every_status(systems):
    """The seed has pending, approved and rejected leave requests."""
    requests = call(systems, "hr", "list_leave_requests").data
    assert {r["status"] for r in requests} == {"pending", "approved", "rejected"}

"""The real Acme ERP served on loopback, reached through the OpenAPI connector."""

from __future__ import annotations

import pytest

from connectors import ConnectorUnavailable, HttpConnector, ToolCall
from examples.acme.erp import create_app
from examples.acme.serve import ServiceThread, start_erp

PAY_INV_1001 = {"invoice_id": "INV-1001", "amount": 1250.0, "date": "2025-03-20"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with start_erp(tmp_path_factory.mktemp("erp")) as running:
        yield running


@pytest.fixture
def erp(service):
    service.reset()
    with HttpConnector.from_url("erp", service.url) as connector:
        yield connector


def call(erp, tool, key="", **arguments):
    return erp.invoke(ToolCall(tool, arguments), key)


def test_tools_are_discovered_from_the_live_openapi_document(erp):
    """The connector derives every ERP operation, with its effect, from /openapi.json."""
    assert {tool.name: tool.effect for tool in erp.tools()} == {
        "list_vendors": "read",
        "get_vendor": "read",
        "list_purchase_orders": "read",
        "get_purchase_order": "read",
        "list_invoices": "read",
        "get_invoice": "read",
        "dispute_invoice": "write",
        "list_payments": "read",
        "schedule_payment": "write",
        "list_goods_receipts": "read",
        "get_goods_receipt": "read",
        "list_credit_notes": "read",
        "create_credit_note": "write",
    }


def test_read_returns_seed_data(erp):
    """get_invoice returns the seeded INV-1001 from V-0042 for 1,250.00 EUR."""
    result = call(erp, "get_invoice", invoice_id="INV-1001")
    assert result.ok and result.status == 200
    assert {k: result.data[k] for k in ("vendor_id", "po_id", "amount", "currency", "status")} == {
        "vendor_id": "V-0042",
        "po_id": "PO-4501",
        "amount": 1250.0,
        "currency": "EUR",
        "status": "open",
    }


def test_same_idempotency_key_creates_one_payment(erp):
    """Scheduling twice with one idempotency key returns the first payment and makes no second."""
    first = call(erp, "schedule_payment", "task-1:3", **PAY_INV_1001)
    again = call(erp, "schedule_payment", "task-1:3", **PAY_INV_1001)
    payments = call(erp, "list_payments", invoice_id="INV-1001").data
    assert first.ok and again.ok and again.data == first.data
    assert [p["id"] for p in payments] == [first.data["id"]]


def test_key_reused_for_another_request_is_refused(erp):
    """An idempotency key already used for a different request is refused with 409."""
    call(erp, "schedule_payment", "task-1:3", **PAY_INV_1001)
    result = call(erp, "dispute_invoice", "task-1:3", invoice_id="INV-1003", reason="too much")
    assert (result.ok, result.status) == (False, 409)
    assert "already used for a different request" in result.error


def test_amount_mismatch_is_a_refusal_the_model_can_read(erp):
    """A payment whose amount differs from the invoice comes back ok=False with the reason."""
    result = call(erp, "schedule_payment", "task-2:3", **{**PAY_INV_1001, "amount": 1300.0})
    assert (result.ok, result.status) == (False, 422)
    assert (
        result.error == "amount 1300.00 does not match invoice INV-1001, which is for 1250.00 EUR"
    )


def test_unknown_invoice_is_not_found_by_name(erp):
    """Paying an invoice that does not exist is a 404 naming the invoice."""
    result = call(erp, "schedule_payment", "task-3:3", **{**PAY_INV_1001, "invoice_id": "INV-9999"})
    assert (result.ok, result.status, result.error) == (False, 404, "invoice INV-9999 not found")


def test_paid_invoice_is_not_paid_again(erp):
    """The seeded paid invoice refuses a new payment with 409."""
    paid = call(erp, "list_invoices", status="paid").data
    assert [inv["id"] for inv in paid] == ["INV-1006"]
    result = call(
        erp, "schedule_payment", "task-4:3",
        invoice_id="INV-1006", amount=paid[0]["amount"], date="2025-03-20",
    )  # fmt: skip
    assert (result.ok, result.status, result.error) == (
        False,
        409,
        "invoice INV-1006 is already paid",
    )


def test_reset_restores_the_seed(erp, service):
    """reset() removes a scheduled payment and the dispute made since the seed."""
    seeded = call(erp, "list_payments").data
    call(erp, "schedule_payment", "task-5:3", **PAY_INV_1001)
    call(erp, "dispute_invoice", "task-5:4", invoice_id="INV-1003", reason="billed one unit more")
    service.reset()
    assert call(erp, "list_payments").data == seeded
    assert call(erp, "get_invoice", invoice_id="INV-1003").data["status"] == "open"


def test_stopped_service_is_unavailable(tmp_path):
    """Once the service is stopped, a call raises ConnectorUnavailable."""
    with ServiceThread(create_app(tmp_path / "erp.sqlite3")) as down:
        connector = HttpConnector.from_url("erp", down.url, timeout=5)
    with connector, pytest.raises(ConnectorUnavailable):
        call(connector, "get_invoice", invoice_id="INV-1001")


def test_service_thread_refuses_non_loopback_hosts():
    """ServiceThread binds to loopback addresses only."""
    with pytest.raises(ValueError, match="loopback only"):
        ServiceThread(object(), host="0.0.0.0")

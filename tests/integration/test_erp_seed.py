"""The Acme ERP's seed data: deterministic, well-formed, and covering the scenarios."""

from __future__ import annotations

import re

from sqlalchemy import select

from examples.acme.erp import ErpDatabase, iban, iban_is_valid
from examples.acme.erp.models import GoodsReceipt, Invoice, PurchaseOrder, Vendor

EMAIL = re.compile(r"^[a-z]+\.[a-z]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")


def rows(db, model):
    with db.session() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def test_iban_check_digits_follow_mod_97():
    """iban() computes the check digits of a known IBAN (the ISO 13616 example)."""
    assert iban("GB", "WEST12345698765432") == "GB82WEST12345698765432"


def test_seed_sizes(tmp_path):
    """The seed has at least 8 vendors, 10 purchase orders and 12 invoices."""
    db = ErpDatabase(tmp_path / "erp.sqlite3")
    assert len(rows(db, Vendor)) >= 8
    assert len(rows(db, PurchaseOrder)) >= 10
    assert len(rows(db, Invoice)) >= 12


def test_vendor_ibans_and_emails_are_well_formed(tmp_path):
    """Every vendor IBAN passes mod-97 and every e-mail looks like a real address."""
    vendors = rows(ErpDatabase(tmp_path / "erp.sqlite3"), Vendor)
    assert all(iban_is_valid(v.iban) and v.iban.startswith(v.country) for v in vendors)
    assert all(EMAIL.match(v.email) for v in vendors)


def test_invoices_cover_match_mismatch_and_paid(tmp_path):
    """Some invoices equal their PO, some do not, and exactly one is paid."""
    db = ErpDatabase(tmp_path / "erp.sqlite3")
    totals = {po.id: po.amount_cents for po in rows(db, PurchaseOrder)}
    invoices = [inv for inv in rows(db, Invoice) if inv.po_id]
    matching = [inv.id for inv in invoices if inv.amount_cents == totals[inv.po_id]]
    assert "INV-1001" in matching and len(matching) < len(invoices)
    assert [inv.id for inv in rows(db, Invoice) if inv.status == "paid"] == ["INV-1006"]


def test_same_seed_gives_the_same_world(tmp_path):
    """Two databases seeded with the same seed hold identical vendors."""
    a = rows(ErpDatabase(tmp_path / "a.sqlite3", seed=7), Vendor)
    b = rows(ErpDatabase(tmp_path / "b.sqlite3", seed=7), Vendor)
    assert [(v.iban, v.email) for v in a] == [(v.iban, v.email) for v in b]


def test_other_seed_varies_details_not_the_example(tmp_path):
    """Another seed changes account numbers but keeps INV-1001 at 1,250.00 EUR."""
    a = ErpDatabase(tmp_path / "a.sqlite3", seed=0)
    b = ErpDatabase(tmp_path / "b.sqlite3", seed=1)
    assert [v.iban for v in rows(a, Vendor)] != [v.iban for v in rows(b, Vendor)]
    for db in (a, b):
        with db.session() as session:
            assert session.get(Invoice, "INV-1001").amount_cents == 125000


def received(db):
    """Units received per (purchase order, line), over all its goods receipts."""
    totals: dict[tuple[str, int], int] = {}
    for receipt in rows(db, GoodsReceipt):
        for line in receipt.lines:
            key = (receipt.po_id, line.line_no)
            totals[key] = totals.get(key, 0) + line.quantity
    return totals


def ordered(db):
    return {
        (po.id, line.line_no): line.quantity for po in rows(db, PurchaseOrder) for line in po.lines
    }


def test_most_purchase_orders_have_goods_receipts(tmp_path):
    """At least ten of the purchase orders have a goods receipt, PO-4509 none."""
    db = ErpDatabase(tmp_path / "erp.sqlite3")
    with_receipt = {receipt.po_id for receipt in rows(db, GoodsReceipt)}
    assert len(with_receipt) >= 10 and "PO-4509" not in with_receipt


def test_partial_delivery_breaks_three_way_match_of_a_matching_invoice(tmp_path):
    """INV-1004 equals its order PO-4504, but fewer units of PO-4504 were received."""
    db = ErpDatabase(tmp_path / "erp.sqlite3")
    with db.session() as session:
        invoice = session.get(Invoice, "INV-1004")
        assert invoice.amount_cents == session.get(PurchaseOrder, "PO-4504").amount_cents
    got, want = received(db), ordered(db)
    lines = [key for key in want if key[0] == "PO-4504"]
    assert sum(got.get(key, 0) for key in lines) < sum(want[key] for key in lines)


def test_split_delivery_adds_up_to_the_order(tmp_path):
    """PO-4512 came in two deliveries whose quantities add up to the order."""
    db = ErpDatabase(tmp_path / "erp.sqlite3")
    assert len([r for r in rows(db, GoodsReceipt) if r.po_id == "PO-4512"]) == 2
    got, want = received(db), ordered(db)
    assert all(got.get(key, 0) == qty for key, qty in want.items() if key[0] == "PO-4512")


def test_no_receipt_line_exceeds_its_order_line(tmp_path):
    """Across seeds, no purchase order line was received more often than ordered."""
    for seed in range(5):
        db = ErpDatabase(tmp_path / f"erp-{seed}.sqlite3", seed=seed)
        want = ordered(db)
        assert all(qty <= want[key] for key, qty in received(db).items())

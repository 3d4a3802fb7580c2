"""The ERP's tables (SQLAlchemy, on their own metadata) and its API models (pydantic).

Money is stored as integer cents and shown as a decimal number with two places, so that
an amount check never trips over binary floating point.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

InvoiceStatus = Literal["open", "paid", "disputed"]
PurchaseOrderStatus = Literal["open", "received", "closed"]
PaymentStatus = Literal["scheduled", "executed"]


class Base(DeclarativeBase):
    """The ERP's own metadata, apart from any other SQLModel/SQLAlchemy tables in-process."""


class Vendor(Base):
    __tablename__ = "vendor"

    id: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str]
    country: Mapped[str] = mapped_column(String(2))
    iban: Mapped[str] = mapped_column(String(34))
    contact_name: Mapped[str]
    email: Mapped[str]


class PurchaseOrder(Base):
    __tablename__ = "purchase_order"

    id: Mapped[str] = mapped_column(String(7), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendor.id"))
    order_date: Mapped[dt.date]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str]
    lines: Mapped[list[PurchaseOrderLine]] = relationship(
        order_by="PurchaseOrderLine.line_no", lazy="selectin"
    )

    @property
    def amount_cents(self) -> int:
        return sum(line.quantity * line.unit_price_cents for line in self.lines)


class PurchaseOrderLine(Base):
    __tablename__ = "purchase_order_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    po_id: Mapped[str] = mapped_column(ForeignKey("purchase_order.id"))
    line_no: Mapped[int]
    sku: Mapped[str]
    description: Mapped[str]
    quantity: Mapped[int]
    unit_price_cents: Mapped[int]


class Invoice(Base):
    __tablename__ = "invoice"

    id: Mapped[str] = mapped_column(String(8), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendor.id"))
    po_id: Mapped[str | None] = mapped_column(ForeignKey("purchase_order.id"))
    amount_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[dt.date]
    due_date: Mapped[dt.date]
    status: Mapped[str]
    dispute_reason: Mapped[str | None] = mapped_column(default=None)


class Payment(Base):
    __tablename__ = "payment"

    id: Mapped[str] = mapped_column(String(8), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoice.id"))
    amount_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    scheduled_date: Mapped[dt.date]
    status: Mapped[str]


class GoodsReceipt(Base):
    """A delivery booked in at the warehouse against a purchase order."""

    __tablename__ = "goods_receipt"

    id: Mapped[str] = mapped_column(String(7), primary_key=True)
    po_id: Mapped[str] = mapped_column(ForeignKey("purchase_order.id"))
    receipt_date: Mapped[dt.date]
    lines: Mapped[list[GoodsReceiptLine]] = relationship(
        order_by="GoodsReceiptLine.line_no", lazy="selectin"
    )


class GoodsReceiptLine(Base):
    __tablename__ = "goods_receipt_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("goods_receipt.id"))
    line_no: Mapped[int]  # the purchase order line received
    sku: Mapped[str]
    quantity: Mapped[int]


class CreditNote(Base):
    """Money a vendor owes back on an invoice (it billed too much, goods were returned)."""

    __tablename__ = "credit_note"

    id: Mapped[str] = mapped_column(String(7), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoice.id"))
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendor.id"))
    amount_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str]
    issue_date: Mapped[dt.date]


class IdempotencyRecord(Base):
    """The first successful response to a write, replayed for a repeated Idempotency-Key."""

    __tablename__ = "idempotency_record"

    key: Mapped[str] = mapped_column(primary_key=True)
    operation: Mapped[str]
    fingerprint: Mapped[str]
    status_code: Mapped[int]
    body: Mapped[str]


def money(cents: int) -> float:
    """Cents as a decimal amount with two places (1250.0 for 125000)."""
    return round(cents / 100, 2)


def cents(amount: float) -> int:
    """A decimal amount as whole cents (to the nearest cent)."""
    return round(amount * 100)


# --- API models -------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class VendorOut(_Out):
    id: str = Field(description="Vendor id, e.g. V-0042.")
    name: str = Field(description="Registered company name.")
    country: str = Field(description="ISO 3166-1 alpha-2 country code.")
    iban: str = Field(description="Bank account (IBAN) payments are sent to.")
    contact_name: str = Field(description="Accounts-receivable contact person.")
    email: str = Field(description="Contact e-mail address.")


class PurchaseOrderLineOut(BaseModel):
    line_no: int
    sku: str
    description: str
    quantity: int
    unit_price: float


class PurchaseOrderOut(BaseModel):
    id: str = Field(description="Purchase order id, e.g. PO-4501.")
    vendor_id: str
    order_date: dt.date
    currency: str
    amount: float = Field(description="Total of the lines.")
    status: PurchaseOrderStatus
    lines: list[PurchaseOrderLineOut]


class InvoiceOut(BaseModel):
    id: str = Field(description="Invoice id, e.g. INV-1001.")
    vendor_id: str
    po_id: str | None = Field(description="The purchase order the invoice bills, if any.")
    amount: float
    currency: str
    issue_date: dt.date
    due_date: dt.date
    status: InvoiceStatus
    dispute_reason: str | None = Field(description="Why the invoice is disputed, if it is.")


class PaymentOut(BaseModel):
    id: str = Field(description="Payment id, e.g. PAY-0001.")
    invoice_id: str
    amount: float
    currency: str
    scheduled_date: dt.date
    status: PaymentStatus


class PaymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice_id: str = Field(pattern=r"^INV-\d{4}$", description="The invoice to pay.")
    amount: float = Field(gt=0, description="Must equal the invoice amount.")
    date: dt.date = Field(description="Execution date, YYYY-MM-DD.")


class DisputeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500, description="Why the invoice is disputed.")


class GoodsReceiptLineOut(BaseModel):
    line_no: int = Field(description="The purchase order line received.")
    sku: str
    quantity: int = Field(description="Units received.")


class GoodsReceiptOut(BaseModel):
    id: str = Field(description="Goods receipt id, e.g. GR-7001.")
    po_id: str = Field(description="The purchase order delivered against.")
    receipt_date: dt.date
    lines: list[GoodsReceiptLineOut]


class CreditNoteOut(BaseModel):
    id: str = Field(description="Credit note id, e.g. CN-0001.")
    invoice_id: str
    vendor_id: str
    amount: float
    currency: str
    reason: str
    issue_date: dt.date


class CreditNoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice_id: str = Field(pattern=r"^INV-\d{4}$", description="The invoice credited.")
    amount: float = Field(
        gt=0, description="Amount credited; at most what is left of the invoice amount."
    )
    reason: str = Field(min_length=3, max_length=500, description="Why the vendor credits it.")
    date: dt.date | None = Field(
        default=None, description="Issue date, YYYY-MM-DD (default: today)."
    )


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong, in words.")


def po_out(po: PurchaseOrder) -> PurchaseOrderOut:
    return PurchaseOrderOut(
        id=po.id,
        vendor_id=po.vendor_id,
        order_date=po.order_date,
        currency=po.currency,
        amount=money(po.amount_cents),
        status=po.status,  # type: ignore[arg-type]  # the column holds the literal
        lines=[
            PurchaseOrderLineOut(
                line_no=line.line_no,
                sku=line.sku,
                description=line.description,
                quantity=line.quantity,
                unit_price=money(line.unit_price_cents),
            )
            for line in po.lines
        ],
    )


def invoice_out(inv: Invoice) -> InvoiceOut:
    return InvoiceOut(
        id=inv.id,
        vendor_id=inv.vendor_id,
        po_id=inv.po_id,
        amount=money(inv.amount_cents),
        currency=inv.currency,
        issue_date=inv.issue_date,
        due_date=inv.due_date,
        status=inv.status,  # type: ignore[arg-type]
        dispute_reason=inv.dispute_reason,
    )


def payment_out(pay: Payment) -> PaymentOut:
    return PaymentOut(
        id=pay.id,
        invoice_id=pay.invoice_id,
        amount=money(pay.amount_cents),
        currency=pay.currency,
        scheduled_date=pay.scheduled_date,
        status=pay.status,  # type: ignore[arg-type]
    )


def goods_receipt_out(receipt: GoodsReceipt) -> GoodsReceiptOut:
    return GoodsReceiptOut(
        id=receipt.id,
        po_id=receipt.po_id,
        receipt_date=receipt.receipt_date,
        lines=[
            GoodsReceiptLineOut(line_no=line.line_no, sku=line.sku, quantity=line.quantity)
            for line in receipt.lines
        ],
    )


def credit_note_out(note: CreditNote) -> CreditNoteOut:
    return CreditNoteOut(
        id=note.id,
        invoice_id=note.invoice_id,
        vendor_id=note.vendor_id,
        amount=money(note.amount_cents),
        currency=note.currency,
        reason=note.reason,
        issue_date=note.issue_date,
    )

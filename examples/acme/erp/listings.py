"""The ERP's list endpoints as a table: each a ``Listing`` of a model's rows in id order
with its optional ``Filter`` query parameters; ``add_listing`` routes one on the app."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from examples.acme.erp.models import (
    CreditNote,
    CreditNoteOut,
    GoodsReceipt,
    GoodsReceiptOut,
    Invoice,
    InvoiceOut,
    InvoiceStatus,
    Payment,
    PaymentOut,
    PaymentStatus,
    PurchaseOrder,
    PurchaseOrderOut,
    PurchaseOrderStatus,
    Vendor,
    VendorOut,
    credit_note_out,
    goods_receipt_out,
    invoice_out,
    payment_out,
    po_out,
)


@dataclass(frozen=True)
class Filter:
    """An optional query parameter of a list endpoint: the rows whose column matches it."""

    name: str
    type: Any
    description: str
    contains: bool = False
    """Match a part of the column, case-insensitively (else the column equals the value).
    Such a search text is flagged ``x-umiq-quoted`` in the OpenAPI schema: the agent's
    caller may pass only a quote of the request or a record (``worker.agent.grounding``)."""
    normalize: Callable[[Any], Any] | None = None

    def clause(self, model: type, value: Any) -> Any:
        column = getattr(model, self.name)
        if self.contains:
            return column.icontains(value)
        return column == (self.normalize(value) if self.normalize else value)


@dataclass(frozen=True)
class Listing:
    """A list endpoint: ``GET path`` gives the ``model``'s rows in id order, as ``out``
    makes them, narrowed by each filter given."""

    path: str
    operation_id: str
    model: type
    response_model: type
    out: Callable[[Any], BaseModel]
    description: str
    filters: tuple[Filter, ...]


VENDORS = Listing(
    "/vendors",
    "list_vendors",
    Vendor,
    VendorOut,
    VendorOut.model_validate,
    "List vendors, optionally by country or by a part of the name.",
    (
        Filter("country", str, "ISO country code, e.g. DE.", normalize=str.upper),
        Filter("name", str, "Part of the vendor name.", contains=True),
    ),
)
PURCHASE_ORDERS = Listing(
    "/purchase-orders",
    "list_purchase_orders",
    PurchaseOrder,
    PurchaseOrderOut,
    po_out,
    "List purchase orders, optionally by vendor or status.",
    (
        Filter("vendor_id", str, "Only this vendor's orders."),
        Filter("status", PurchaseOrderStatus, "Order status."),
    ),
)
INVOICES = Listing(
    "/invoices",
    "list_invoices",
    Invoice,
    InvoiceOut,
    invoice_out,
    "List invoices, optionally by vendor, purchase order or status.",
    (
        Filter("vendor_id", str, "Only this vendor's."),
        Filter("po_id", str, "Only those billing this PO."),
        Filter("status", InvoiceStatus, "Invoice status."),
    ),
)
PAYMENTS = Listing(
    "/payments",
    "list_payments",
    Payment,
    PaymentOut,
    payment_out,
    "List payments, optionally for one invoice or by status.",
    (
        Filter("invoice_id", str, "Only this invoice's."),
        Filter("status", PaymentStatus, "Payment status."),
    ),
)
GOODS_RECEIPTS = Listing(
    "/goods-receipts",
    "list_goods_receipts",
    GoodsReceipt,
    GoodsReceiptOut,
    goods_receipt_out,
    "List goods receipts (deliveries booked in), optionally for one purchase "
    "order; compare received quantities with the order and the invoice.",
    (Filter("po_id", str, "Only deliveries for this PO."),),
)
CREDIT_NOTES = Listing(
    "/credit-notes",
    "list_credit_notes",
    CreditNote,
    CreditNoteOut,
    credit_note_out,
    "List credit notes, optionally for one invoice or one vendor.",
    (
        Filter("invoice_id", str, "Only this invoice's."),
        Filter("vendor_id", str, "Only this vendor's."),
    ),
)


def add_listing(app: FastAPI, listing: Listing, session: Any) -> None:
    """Route ``listing`` on ``app``, its rows read through the ``session`` dependency (an
    ``Annotated[Session, Depends(...)]``); its filters are the endpoint's query parameters,
    in order, each optional, so its OpenAPI operation (the caller's tool) is that of a
    hand-written endpoint."""

    def endpoint(session: Session, **given: Any) -> list[BaseModel]:
        query = select(listing.model).order_by(listing.model.id)  # type: ignore[attr-defined]
        for flt in listing.filters:
            if given.get(flt.name):
                query = query.where(flt.clause(listing.model, given[flt.name]))
        return [listing.out(row) for row in session.scalars(query)]

    parameters = [
        inspect.Parameter("session", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=session),
        *(
            inspect.Parameter(
                flt.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    flt.type | None,
                    Query(
                        description=flt.description,
                        json_schema_extra={"x-umiq-quoted": True} if flt.contains else None,
                    ),
                ],
            )
            for flt in listing.filters
        ),
    ]
    # FastAPI reads the parameters from the signature and the summary from the name
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters,
        return_annotation=list[listing.response_model],  # type: ignore[name-defined]
    )
    endpoint.__name__ = endpoint.__qualname__ = listing.operation_id
    app.get(
        listing.path,
        operation_id=listing.operation_id,
        response_model=list[listing.response_model],  # type: ignore[name-defined]
        description=listing.description,
    )(endpoint)

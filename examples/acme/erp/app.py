"""The Acme ERP as a FastAPI app: vendors, purchase orders, goods receipts, invoices,
payments and credit notes.

Every route has a snake_case ``operation_id`` and a description because an OpenAPI
connector turns each into a tool the caller model reads. Errors are ``{"detail": str}``
with a sentence that names the record, so the model can act on them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from examples.acme.erp.db import ErpDatabase
from examples.acme.erp.listings import (
    CREDIT_NOTES,
    GOODS_RECEIPTS,
    INVOICES,
    PAYMENTS,
    PURCHASE_ORDERS,
    VENDORS,
    add_listing,
)
from examples.acme.erp.models import (
    CreditNote,
    CreditNoteOut,
    CreditNoteRequest,
    DisputeRequest,
    ErrorOut,
    GoodsReceipt,
    GoodsReceiptOut,
    IdempotencyRecord,
    Invoice,
    InvoiceOut,
    Payment,
    PaymentOut,
    PaymentRequest,
    PurchaseOrder,
    PurchaseOrderOut,
    Vendor,
    VendorOut,
    cents,
    credit_note_out,
    goods_receipt_out,
    invoice_out,
    money,
    payment_out,
    po_out,
)

T = TypeVar("T")

VENDOR_ID = PathParam(pattern=r"^V-\d{4}$", description="Vendor id, e.g. V-0042.")
PO_ID = PathParam(pattern=r"^PO-\d{4}$", description="Purchase order id, e.g. PO-4501.")
INVOICE_ID = PathParam(pattern=r"^INV-\d{4}$", description="Invoice id, e.g. INV-1001.")
RECEIPT_ID = PathParam(pattern=r"^GR-\d{4}$", description="Goods receipt id, e.g. GR-7001.")
IDEMPOTENCY_KEY = Header(
    alias="Idempotency-Key",
    max_length=200,
    description="Repeat a write safely: a repeated key returns the first result.",
)
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such record."}}
REFUSED = {
    **NOT_FOUND,
    409: {"model": ErrorOut, "description": "The record's state does not allow it."},
    422: {"model": ErrorOut, "description": "The request is invalid."},
}


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


Db = Annotated[Session, Depends(_session)]


def _get(session: Session, model: type[T], key: str, label: str) -> T:
    row = session.get(model, key)
    if row is None:
        raise HTTPException(404, f"{label} {key} not found")
    return row


def create_app(db: ErpDatabase | str | Path) -> FastAPI:
    """The ERP app over ``db`` (an ErpDatabase, or a path to create/seed one)."""
    database = db if isinstance(db, ErpDatabase) else ErpDatabase(db)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        database.dispose()

    app = FastAPI(
        title="Acme ERP",
        version="1.0.0",
        description="Vendors, purchase orders, invoices and payments of Acme Corp.",
        lifespan=lifespan,
    )
    app.state.db = database
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    add_listing(app, VENDORS, Db)

    @app.get(
        "/vendors/{vendor_id}",
        operation_id="get_vendor",
        response_model=VendorOut,
        responses=NOT_FOUND,
        description="Get one vendor: name, country, IBAN and contact.",
    )
    def get_vendor(session: Db, vendor_id: Annotated[str, VENDOR_ID]) -> VendorOut:
        return VendorOut.model_validate(_get(session, Vendor, vendor_id, "vendor"))

    add_listing(app, PURCHASE_ORDERS, Db)

    @app.get(
        "/purchase-orders/{po_id}",
        operation_id="get_purchase_order",
        response_model=PurchaseOrderOut,
        responses=NOT_FOUND,
        description="Get one purchase order with its lines and total amount.",
    )
    def get_purchase_order(session: Db, po_id: Annotated[str, PO_ID]) -> PurchaseOrderOut:
        return po_out(_get(session, PurchaseOrder, po_id, "purchase order"))

    add_listing(app, INVOICES, Db)

    @app.get(
        "/invoices/{invoice_id}",
        operation_id="get_invoice",
        response_model=InvoiceOut,
        responses=NOT_FOUND,
        description="Get one invoice: vendor, purchase order, amount, due date and status.",
    )
    def get_invoice(session: Db, invoice_id: Annotated[str, INVOICE_ID]) -> InvoiceOut:
        return invoice_out(_get(session, Invoice, invoice_id, "invoice"))

    @app.post(
        "/invoices/{invoice_id}/dispute",
        operation_id="dispute_invoice",
        response_model=InvoiceOut,
        responses=REFUSED,
        description="Dispute an open invoice (e.g. its amount does not match the purchase "
        "order), stating the reason; a disputed invoice cannot be paid.",
    )
    def dispute_invoice(
        request: Request,
        invoice_id: Annotated[str, INVOICE_ID],
        body: DisputeRequest,
        idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
    ) -> JSONResponse:
        def act(session: Session) -> BaseModel:
            invoice = _get(session, Invoice, invoice_id, "invoice")
            if invoice.status != "open":
                raise HTTPException(409, f"invoice {invoice_id} is {invoice.status}, not open")
            invoice.status, invoice.dispute_reason = "disputed", body.reason
            return invoice_out(invoice)

        payload = {"invoice_id": invoice_id, **body.model_dump(mode="json")}
        return _idempotent(request, idempotency_key, "dispute_invoice", payload, act, 200)

    add_listing(app, PAYMENTS, Db)

    @app.post(
        "/payments",
        operation_id="schedule_payment",
        status_code=201,
        response_model=PaymentOut,
        responses=REFUSED,
        description="Schedule the payment of an open invoice on a date. The amount must "
        "equal the invoice amount; an invoice is paid at most once.",
    )
    def schedule_payment(
        request: Request,
        body: PaymentRequest,
        idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
    ) -> JSONResponse:
        def act(session: Session) -> BaseModel:
            return payment_out(_schedule(session, body))

        payload = body.model_dump(mode="json")
        return _idempotent(request, idempotency_key, "schedule_payment", payload, act, 201)

    add_listing(app, GOODS_RECEIPTS, Db)

    @app.get(
        "/goods-receipts/{receipt_id}",
        operation_id="get_goods_receipt",
        response_model=GoodsReceiptOut,
        responses=NOT_FOUND,
        description="Get one goods receipt: its purchase order, date and received quantities.",
    )
    def get_goods_receipt(session: Db, receipt_id: Annotated[str, RECEIPT_ID]) -> GoodsReceiptOut:
        return goods_receipt_out(_get(session, GoodsReceipt, receipt_id, "goods receipt"))

    add_listing(app, CREDIT_NOTES, Db)

    @app.post(
        "/credit-notes",
        operation_id="create_credit_note",
        status_code=201,
        response_model=CreditNoteOut,
        responses=REFUSED,
        description="Record a credit note from the vendor against an invoice (e.g. it billed "
        "more than was ordered or received). The amount must be positive and the credit "
        "notes of an invoice together at most its amount.",
    )
    def create_credit_note(
        request: Request,
        body: CreditNoteRequest,
        idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
    ) -> JSONResponse:
        def act(session: Session) -> BaseModel:
            return credit_note_out(_credit(session, body))

        payload = body.model_dump(mode="json")
        return _idempotent(request, idempotency_key, "create_credit_note", payload, act, 201)

    return app


def _credit(session: Session, body: CreditNoteRequest) -> CreditNote:
    invoice = _get(session, Invoice, body.invoice_id, "invoice")
    if abs(body.amount * 100 - cents(body.amount)) > 1e-6:
        raise HTTPException(422, f"amount {body.amount} has more than two decimals")
    credited = sum(
        session.scalars(select(CreditNote.amount_cents).where(CreditNote.invoice_id == invoice.id))
    )
    left = invoice.amount_cents - credited
    if cents(body.amount) > left:
        already = f", of which {money(credited):.2f} is already credited" if credited else ""
        raise HTTPException(
            422,
            f"amount {body.amount:.2f} is more than invoice {invoice.id} leaves to credit: "
            f"it is for {money(invoice.amount_cents):.2f} {invoice.currency}{already}",
        )
    date = body.date or dt.date.today()
    if date < invoice.issue_date:
        raise HTTPException(
            422, f"date {date} is before the invoice's issue date {invoice.issue_date}"
        )
    ids = session.scalars(select(CreditNote.id)).all()
    number = max((int(cid.removeprefix("CN-")) for cid in ids), default=0) + 1
    note = CreditNote(
        id=f"CN-{number:04d}",
        invoice_id=invoice.id,
        vendor_id=invoice.vendor_id,
        amount_cents=cents(body.amount),
        currency=invoice.currency,
        reason=body.reason,
        issue_date=date,
    )
    session.add(note)
    session.flush()
    return note


def _schedule(session: Session, body: PaymentRequest) -> Payment:
    invoice = _get(session, Invoice, body.invoice_id, "invoice")
    if invoice.status == "paid":
        raise HTTPException(409, f"invoice {invoice.id} is already paid")
    if invoice.status == "disputed":
        raise HTTPException(409, f"invoice {invoice.id} is disputed and cannot be paid")
    pending = session.scalar(
        select(Payment).where(Payment.invoice_id == invoice.id, Payment.status == "scheduled")
    )
    if pending is not None:
        raise HTTPException(
            409,
            f"invoice {invoice.id} already has payment {pending.id} scheduled "
            f"for {pending.scheduled_date}",
        )
    if abs(body.amount * 100 - cents(body.amount)) > 1e-6:
        raise HTTPException(422, f"amount {body.amount} has more than two decimals")
    if cents(body.amount) != invoice.amount_cents:
        raise HTTPException(
            422,
            f"amount {body.amount:.2f} does not match invoice {invoice.id}, which is for "
            f"{money(invoice.amount_cents):.2f} {invoice.currency}",
        )
    if body.date < invoice.issue_date:
        raise HTTPException(
            422, f"date {body.date} is before the invoice's issue date {invoice.issue_date}"
        )
    ids = session.scalars(select(Payment.id)).all()
    number = max((int(pid.removeprefix("PAY-")) for pid in ids), default=0) + 1
    payment = Payment(
        id=f"PAY-{number:04d}",
        invoice_id=invoice.id,
        amount_cents=invoice.amount_cents,
        currency=invoice.currency,
        scheduled_date=body.date,
        status="scheduled",
    )
    session.add(payment)
    session.flush()
    return payment


def _idempotent(
    request: Request,
    key: str | None,
    operation: str,
    payload: dict[str, Any],
    act: Callable[[Session], BaseModel],
    status_code: int,
) -> JSONResponse:
    """Run a write once per key: a repeated key replays the first successful response.

    Refusals (4xx) are not recorded, since they changed nothing; the same key may be
    used again once the cause is fixed.
    """
    db: ErpDatabase = request.app.state.db
    canonical = json.dumps({"operation": operation, "payload": payload}, sort_keys=True)
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    with db.write_lock, db.session() as session:
        if key:
            record = session.get(IdempotencyRecord, key)
            if record is not None:
                if record.fingerprint != fingerprint:
                    raise HTTPException(
                        409,
                        f"Idempotency-Key {key!r} was already used for a different request "
                        f"({record.operation}); use a new key",
                    )
                return JSONResponse(
                    json.loads(record.body),
                    record.status_code,
                    headers={"Idempotent-Replayed": "true"},
                )
        body = act(session).model_dump(mode="json")
        if key:
            session.add(
                IdempotencyRecord(
                    key=key,
                    operation=operation,
                    fingerprint=fingerprint,
                    status_code=status_code,
                    body=json.dumps(body),
                )
            )
        session.commit()
    return JSONResponse(body, status_code)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """Request validation errors as one sentence, like every other refusal."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0])
        problems.append(f"{where}: {error['msg']}")
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

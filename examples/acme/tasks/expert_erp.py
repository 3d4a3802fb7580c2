"""The expert's scripts for the ERP families (see ``expert``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from examples.acme.tasks import phrasings_erp as P
from examples.acme.tasks.catalogue import TaskInstance, money
from examples.acme.tasks.expert import (
    _FINAL,
    ExpertError,
    Recorder,
    _get_invoice_or_say_missing,
    _m,
    solver,
)

# -- read-only lookups --------------------------------------------------------------------


@solver("invoice_status")
def _invoice_status(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    rec.conclude(
        rec.say(P.INVOICE_STATUS_CONCLUDE, i=inv["id"], s=inv["status"]),
        rec.say(
            P.INVOICE_STATUS_ANSWER, i=inv["id"], s=inv["status"], m=_m(inv), v=inv["vendor_id"]
        ),
    )


@solver("invoice_due_date")
def _invoice_due_date(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    rec.conclude(
        rec.say(P.INVOICE_DUE_DATE_CONCLUDE),
        rec.say(
            P.INVOICE_DUE_DATE_ANSWER, i=inv["id"], d=inv["due_date"], m=_m(inv), s=inv["status"]
        ),
    )


@solver("vendor_country")
def _vendor_country(rec: Recorder, inst: TaskInstance) -> None:
    vid = inst.slots["vendor_id"]
    vendor = rec.read(rec.say(P.VENDOR_COUNTRY_GET_VENDOR, v=vid), "get_vendor", vendor_id=vid)
    rec.conclude(
        rec.say(P.VENDOR_COUNTRY_CONCLUDE, v=vid),
        rec.say(P.VENDOR_COUNTRY_ANSWER, v=vid, n=vendor["name"], c=vendor["country"]),
    )


@solver("po_amount")
def _po_amount(rec: Recorder, inst: TaskInstance) -> None:
    po_id = inst.slots["po_id"]
    order = rec.read(
        rec.say(P.PO_AMOUNT_GET_PURCHASE_ORDER, p=po_id), "get_purchase_order", po_id=po_id
    )
    lines = len(order["lines"])
    rec.conclude(
        rec.say(_FINAL),
        rec.say(
            P.PO_AMOUNT_ANSWER,
            p=po_id,
            m=_m(order),
            n=lines,
            s=order["status"],
            v=order["vendor_id"],
        ),
    )


@solver("payment_status")
def _payment_status(rec: Recorder, inst: TaskInstance) -> None:
    iid = inst.slots["invoice_id"]
    payments = rec.read(
        rec.say(P.PAYMENT_STATUS_LIST_PAYMENTS, i=iid), "list_payments", invoice_id=iid
    )
    if not payments:
        rec.conclude(
            rec.say(P.PAYMENT_STATUS_CONCLUDE, i=iid), rec.say(P.PAYMENT_STATUS_ANSWER, i=iid)
        )
        return
    pay = payments[0]
    rec.conclude(
        rec.say(P.PAYMENT_STATUS_CONCLUDE_2, i=iid),
        rec.say(
            P.PAYMENT_STATUS_ANSWER_2,
            i=iid,
            p=pay["id"],
            m=_m(pay),
            d=pay["scheduled_date"],
            s=pay["status"],
        ),
    )


# -- reasoning ----------------------------------------------------------------------------


@solver("invoice_po_check")
def _invoice_po_check(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    if inv["po_id"] is None:
        rec.conclude(
            rec.say(P.INVOICE_PO_CHECK_CONCLUDE, i=inv["id"]),
            f"No: invoice {inv['id']} ({_m(inv)}) has no purchase order, so it cannot be "
            "matched; it needs to be checked by hand.",
        )
        return
    order = rec.read(rec.say(P.GET_ORDER, p=inv["po_id"]), "get_purchase_order", po_id=inv["po_id"])
    if round(order["amount"], 2) == round(inv["amount"], 2):
        rec.conclude(
            rec.say(P.INVOICE_PO_CHECK_CONCLUDE_2, m=_m(inv)),
            rec.say(P.INVOICE_PO_CHECK_ANSWER, i=inv["id"], p=order["id"], m=_m(inv)),
        )
        return
    diff = money(abs(inv["amount"] - order["amount"]), inv["currency"])
    more = "more" if inv["amount"] > order["amount"] else "less"
    rec.conclude(
        rec.say(P.INVOICE_PO_CHECK_CONCLUDE_3, d=diff, w=more),
        rec.say(
            P.INVOICE_PO_CHECK_ANSWER_2,
            i=inv["id"],
            p=order["id"],
            mi=_m(inv),
            mo=_m(order),
            d=diff,
            w=more,
        ),
    )


def _find_vendor(rec: Recorder, name: str) -> dict[str, Any] | None:
    found = rec.read(rec.say(P.FIND_VENDOR_LIST_VENDORS, n=name), "list_vendors", name=name)
    if len(found) == 1:
        return found[0]
    rec.conclude(rec.say(P.FIND_VENDOR_CONCLUDE, n=name), rec.say(P.FIND_VENDOR_ANSWER, n=name))
    return None


@solver("vendor_open_total")
def _vendor_open_total(rec: Recorder, inst: TaskInstance) -> None:
    vendor = _find_vendor(rec, inst.slots["vendor"])
    if vendor is None:
        return
    rows = rec.read(
        rec.say(P.VENDOR_OPEN_TOTAL_LIST_INVOICES, n=inst.slots["vendor"], v=vendor["id"]),
        "list_invoices",
        vendor_id=vendor["id"],
        status="open",
    )
    if not rows:
        rec.conclude(
            rec.say(P.VENDOR_OPEN_TOTAL_CONCLUDE, v=vendor["id"]),
            f"We owe {vendor['name']} ({vendor['id']}) nothing: there are no open invoices.",
        )
        return
    total = money(sum(r["amount"] for r in rows), rows[0]["currency"])
    ids = ", ".join(r["id"] for r in rows)
    rec.conclude(
        rec.say(P.VENDOR_OPEN_TOTAL_CONCLUDE_2, k=len(rows)),
        rec.say(
            P.VENDOR_OPEN_TOTAL_ANSWER,
            n=vendor["name"],
            v=vendor["id"],
            k=len(rows),
            ids=ids,
            t=total,
        ),
    )


@solver("uninvoiced_orders")
def _uninvoiced_orders(rec: Recorder, inst: TaskInstance) -> None:
    vid = inst.slots["vendor_id"]
    orders = rec.read(
        rec.say(P.UNINVOICED_ORDERS_LIST_PURCHASE_ORDERS, v=vid),
        "list_purchase_orders",
        vendor_id=vid,
    )
    invoices = rec.read(
        rec.say(P.UNINVOICED_ORDERS_LIST_INVOICES, v=vid), "list_invoices", vendor_id=vid
    )
    billed = {inv["po_id"] for inv in invoices}
    waiting = [o["id"] for o in orders if o["id"] not in billed]
    if not waiting:
        rec.conclude(
            rec.say(P.UNINVOICED_ORDERS_CONCLUDE, v=vid),
            f"None: all {len(orders)} purchase order(s) of {vid} have been invoiced.",
        )
        return
    rec.conclude(
        rec.say(P.UNINVOICED_ORDERS_CONCLUDE_2, k=len(waiting)),
        f"{vid} has {len(waiting)} purchase order(s) not invoiced yet: "
        + ", ".join(f"{o['id']} ({_m(o)})" for o in orders if o["id"] in waiting)
        + ".",
    )


# -- writes -------------------------------------------------------------------------------


def _schedule(rec: Recorder, inv: Mapping[str, Any], date: str) -> None:
    pay = rec.read(
        rec.say(P.SCHEDULE_SCHEDULE_PAYMENT, i=inv["id"], m=_m(inv), d=date),
        "schedule_payment",
        invoice_id=inv["id"],
        amount=inv["amount"],
        date=date,
    )
    rec.conclude(
        rec.say(P.SCHEDULE_CONCLUDE, p=pay["id"]),
        rec.say(P.SCHEDULE_ANSWER, p=pay["id"], m=_m(pay), i=inv["id"], d=pay["scheduled_date"]),
    )


@solver("schedule_payment")
def _schedule_payment(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is not None:
        _schedule(rec, inv, inst.slots["date"])


def _dispute(rec: Recorder, invoice_id: str, reason: str, thought: str) -> dict[str, Any]:
    return rec.read(thought, "dispute_invoice", invoice_id=invoice_id, reason=reason)


@solver("pay_if_matches")
def _pay_if_matches(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    order = rec.read(rec.say(P.GET_ORDER, p=inv["po_id"]), "get_purchase_order", po_id=inv["po_id"])
    if round(order["amount"], 2) == round(inv["amount"], 2):
        _schedule(rec, inv, inst.slots["date"])
        return
    diff = money(abs(inv["amount"] - order["amount"]), inv["currency"])
    reason = (
        f"Invoice amount {_m(inv)} does not match purchase order {order['id']} "
        f"total {_m(order)} (difference {diff})."
    )
    _dispute(
        rec,
        inv["id"],
        reason,
        rec.say(
            P.PAY_IF_MATCHES_THOUGHT, i=inv["id"], p=order["id"], mi=_m(inv), mo=_m(order), d=diff
        ),
    )
    rec.conclude(
        rec.say(P.PAY_IF_MATCHES_CONCLUDE),
        f"{inv['id']} does not match {order['id']}: it bills {_m(inv)} against an order of "
        f"{_m(order)} (difference {diff}). I did not pay it; it is now disputed.",
    )


@solver("dispute_invoice")
def _dispute_invoice(rec: Recorder, inst: TaskInstance) -> None:
    iid, reason = inst.slots["invoice_id"], inst.slots["reason"]
    result = rec.call(
        rec.say(P.DISPUTE_INVOICE_DISPUTE_INVOICE, i=iid, r=reason),
        "dispute_invoice",
        invoice_id=iid,
        reason=reason,
    )
    if not result.ok:
        raise ExpertError(f"{inst.uid}: dispute refused: {result.error}")
    rec.conclude(
        rec.say(P.DISPUTE_INVOICE_CONCLUDE), rec.say(P.DISPUTE_INVOICE_ANSWER, i=iid, r=reason)
    )


# -- refusals -----------------------------------------------------------------------------


@solver("pay_blocked_invoice")
def _pay_blocked_invoice(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    if inv["status"] == "disputed":
        rec.conclude(
            rec.say(P.PAY_BLOCKED_INVOICE_CONCLUDE, i=inv["id"]),
            f"I did not schedule a payment: invoice {inv['id']} is disputed "
            f"({inv['dispute_reason']}) and cannot be paid until the dispute is resolved.",
        )
        return
    payments = rec.read(
        rec.say(P.PAY_BLOCKED_INVOICE_LIST_PAYMENTS, i=inv["id"], s=inv["status"]),
        "list_payments",
        invoice_id=inv["id"],
    )
    pay = payments[0]
    rec.conclude(
        rec.say(P.PAY_BLOCKED_INVOICE_CONCLUDE_2, p=pay["id"]),
        f"I did not pay {inv['id']} again: it is already paid by payment {pay['id']} "
        f"({_m(pay)}, {pay['scheduled_date']}).",
    )


@solver("pay_under_limit")
def _pay_under_limit(rec: Recorder, inst: TaskInstance) -> None:
    from examples.acme.tasks.families_erp import limit_amount

    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    limit = money(limit_amount(inst.slots), inst.slots["currency"])
    if inv["amount"] <= limit_amount(inst.slots):
        _schedule(rec, inv, inst.slots["date"])
        return
    rec.conclude(
        rec.say(P.PAY_UNDER_LIMIT_CONCLUDE, m=_m(inv), l=limit),
        f"I did not pay {inv['id']}: its amount, {_m(inv)}, exceeds your limit of {limit}. "
        "It needs approval from someone with a higher limit.",
    )


# -- give-ups -----------------------------------------------------------------------------


@solver("unknown_invoice")
def _unknown_invoice(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is not None:
        raise ExpertError(f"{inst.uid}: {inv['id']} exists but the task says it does not")


@solver("unknown_vendor")
def _unknown_vendor(rec: Recorder, inst: TaskInstance) -> None:
    from examples.acme.tasks.catalogue import short_name

    vendor = _find_vendor(rec, short_name(inst.slots["vendor"]))
    if vendor is not None:
        raise ExpertError(f"{inst.uid}: {vendor['id']} exists but the task says it does not")


# -- goods receipts and credit notes ------------------------------------------------------


def _received(receipts: list[dict[str, Any]]) -> dict[int, int]:
    units: dict[int, int] = {}
    for receipt in receipts:
        for line in receipt["lines"]:
            units[line["line_no"]] = units.get(line["line_no"], 0) + line["quantity"]
    return units


def _short(order: Mapping[str, Any], units: Mapping[int, int]) -> list[str]:
    return [
        f"{line['sku']}: {units.get(line['line_no'], 0)} of {line['quantity']}"
        for line in order["lines"]
        if units.get(line["line_no"], 0) < line["quantity"]
    ]


def _receipts(rec: Recorder, po_id: str) -> list[dict[str, Any]]:
    return rec.read(
        rec.say(P.RECEIPTS_LIST_GOODS_RECEIPTS, p=po_id), "list_goods_receipts", po_id=po_id
    )


@solver("delivery_status")
def _delivery_status(rec: Recorder, inst: TaskInstance) -> None:
    po_id = inst.slots["po_id"]
    order = rec.read(
        rec.say(P.DELIVERY_STATUS_GET_PURCHASE_ORDER, p=po_id), "get_purchase_order", po_id=po_id
    )
    receipts = _receipts(rec, po_id)
    units = _received(receipts)
    if not receipts:
        rec.conclude(
            rec.say(P.DELIVERY_STATUS_CONCLUDE, p=po_id),
            f"No: nothing has been received on {po_id} yet; there is no goods receipt for it.",
        )
        return
    missing = _short(order, units)
    ids = ", ".join(r["id"] for r in receipts)
    if not missing:
        rec.conclude(
            rec.say(P.DELIVERY_STATUS_CONCLUDE_2, p=po_id),
            f"Yes, {po_id} was delivered in full ({ids}).",
        )
        return
    rec.conclude(
        rec.say(P.DELIVERY_STATUS_CONCLUDE_3),
        f"No, {po_id} is not complete. Received so far ({ids}) — short: "
        + "; ".join(missing)
        + ".",
    )


@solver("three_way_match")
def _three_way_match(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    order = rec.read(rec.say(P.GET_ORDER, p=inv["po_id"]), "get_purchase_order", po_id=inv["po_id"])
    receipts = _receipts(rec, order["id"])
    problems = []
    if round(order["amount"], 2) != round(inv["amount"], 2):
        problems.append(f"the invoice is for {_m(inv)} but the order totals {_m(order)}")
    if not receipts:
        problems.append("nothing has been received yet")
    else:
        missing = _short(order, _received(receipts))
        if missing:
            problems.append("goods were received short (" + "; ".join(missing) + ")")
    if not problems:
        rec.conclude(
            rec.say(P.THREE_WAY_MATCH_CONCLUDE),
            f"Yes, {inv['id']} passes the three-way match: it bills {_m(inv)}, the total of "
            f"{order['id']}, and every ordered unit was received.",
        )
        return
    rec.conclude(
        rec.say(P.THREE_WAY_MATCH_CONCLUDE_2, p=problems[0]),
        f"No, {inv['id']} fails the three-way match against {order['id']}: "
        + "; ".join(problems)
        + ".",
    )


@solver("credit_overbilling")
def _credit_overbilling(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    order = rec.read(rec.say(P.GET_ORDER, p=inv["po_id"]), "get_purchase_order", po_id=inv["po_id"])
    excess = round(inv["amount"] - order["amount"], 2)
    if excess <= 0:
        rec.conclude(
            rec.say(P.CREDIT_OVERBILLING_CONCLUDE, i=inv["id"], p=order["id"]),
            f"No credit note needed: {inv['id']} bills {_m(inv)} against {order['id']} of "
            f"{_m(order)}, so it is not overbilled.",
        )
        return
    amount = money(excess, inv["currency"])
    note = rec.read(
        rec.say(
            P.CREDIT_OVERBILLING_CREATE_CREDIT_NOTE,
            i=inv["id"],
            a=amount,
            p=order["id"],
            d=inst.slots["date"],
        ),
        "create_credit_note",
        invoice_id=inv["id"],
        amount=excess,
        reason=f"Billed {amount} more than purchase order {order['id']}.",
        date=inst.slots["date"],
    )
    rec.conclude(
        rec.say(P.CREDIT_OVERBILLING_CONCLUDE_2, n=note["id"]),
        f"{inv['id']} billed {amount} more than {order['id']}; I recorded credit note "
        f"{note['id']} for {amount}, dated {note['issue_date']}.",
    )


@solver("out_of_scope")
def _out_of_scope(rec: Recorder, inst: TaskInstance) -> None:
    rec.give_up(rec.say(P.OUT_OF_SCOPE_GIVE_UP))

"""The expert's scripts for the ERP families (see ``expert``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
        rec.say(
            (
                "The invoice is {s}; I can report that.",
                "{i} shows status {s}, which answers the question.",
                "I have the status of {i}.",
            ),
            i=inv["id"],
            s=inv["status"],
        ),
        rec.say(
            (
                "Invoice {i} is {s}. It is for {m} from vendor {v}.",
                "{i} currently has the status {s} ({m}, vendor {v}).",
                "The status of {i} is {s}; the amount is {m}.",
            ),
            i=inv["id"],
            s=inv["status"],
            m=_m(inv),
            v=inv["vendor_id"],
        ),
    )


@solver("invoice_due_date")
def _invoice_due_date(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    rec.conclude(
        rec.say(("The due date is in the invoice record.", *_FINAL)),
        rec.say(
            (
                "Invoice {i} is due on {d} ({m}, currently {s}).",
                "{i} falls due on {d}. It is for {m}.",
                "The due date of {i} is {d}; its status is {s}.",
            ),
            i=inv["id"],
            d=inv["due_date"],
            m=_m(inv),
            s=inv["status"],
        ),
    )


@solver("vendor_country")
def _vendor_country(rec: Recorder, inst: TaskInstance) -> None:
    vid = inst.slots["vendor_id"]
    vendor = rec.read(
        rec.say(
            (
                "I'll look up vendor {v} in the ERP.",
                "The vendor record of {v} will have its country.",
                "Let me fetch {v}'s master data.",
            ),
            v=vid,
        ),
        "get_vendor",
        vendor_id=vid,
    )
    rec.conclude(
        rec.say(
            (
                "The record shows the country; the bank details are not needed for this.",
                "I have the country of {v} and will leave the bank details out.",
                "{v}'s country is in the record, which is all that was asked.",
            ),
            v=vid,
        ),
        rec.say(
            (
                "Vendor {v}, {n}, is based in {c}.",
                "{n} ({v}) is registered in {c}.",
                "{v} is {n}, located in country {c}.",
            ),
            v=vid,
            n=vendor["name"],
            c=vendor["country"],
        ),
    )


@solver("po_amount")
def _po_amount(rec: Recorder, inst: TaskInstance) -> None:
    po_id = inst.slots["po_id"]
    order = rec.read(
        rec.say(
            (
                "I'll retrieve purchase order {p}.",
                "The total of {p} is on the order itself; let me get it.",
                "Let me open {p} in the ERP.",
            ),
            p=po_id,
        ),
        "get_purchase_order",
        po_id=po_id,
    )
    lines = len(order["lines"])
    rec.conclude(
        rec.say(_FINAL),
        rec.say(
            (
                "Purchase order {p} totals {m} over {n} line(s); it is {s}.",
                "{p} is for {m} ({n} line(s), vendor {v}).",
                "The total amount of {p} is {m}.",
            ),
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
        rec.say(
            (
                "I'll check the payments recorded for {i}.",
                "Let me list the payments against invoice {i}.",
                "Payments for {i} will tell me whether it was settled.",
            ),
            i=iid,
        ),
        "list_payments",
        invoice_id=iid,
    )
    if not payments:
        rec.conclude(
            rec.say(
                ("There is no payment for {i}.", "The list is empty, so {i} is unpaid."), i=iid
            ),
            rec.say(
                (
                    "No, {i} has not been paid: no payment is recorded or scheduled for it.",
                    "No. There is no payment for invoice {i} yet.",
                ),
                i=iid,
            ),
        )
        return
    pay = payments[0]
    rec.conclude(
        rec.say(("A payment exists for {i}.", "I found the payment of {i}."), i=iid),
        rec.say(
            (
                "Yes, {i} was paid by {p} ({m}) on {d}; the payment is {s}.",
                "Yes. Payment {p} for {m} settled {i} on {d}.",
            ),
            i=iid,
            p=pay["id"],
            m=_m(pay),
            d=pay["scheduled_date"],
            s=pay["status"],
        ),
    )


# -- reasoning ----------------------------------------------------------------------------

_GET_ORDER = (
    "The invoice bills {p}; I need that order's total to compare.",
    "Now I'll fetch purchase order {p} to compare the amounts.",
    "Next, the purchase order {p}, to check the amount against it.",
)


@solver("invoice_po_check")
def _invoice_po_check(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    if inv["po_id"] is None:
        rec.conclude(
            rec.say(
                ("{i} refers to no purchase order, so there is nothing to match.",), i=inv["id"]
            ),
            f"No: invoice {inv['id']} ({_m(inv)}) has no purchase order, so it cannot be "
            "matched; it needs to be checked by hand.",
        )
        return
    order = rec.read(rec.say(_GET_ORDER, p=inv["po_id"]), "get_purchase_order", po_id=inv["po_id"])
    if round(order["amount"], 2) == round(inv["amount"], 2):
        rec.conclude(
            rec.say(("Both amounts are {m}.", "The invoice and order agree at {m}."), m=_m(inv)),
            rec.say(
                (
                    "Yes, {i} matches {p}: both are for {m}.",
                    "Yes. Invoice {i} bills {m}, exactly the total of {p}.",
                ),
                i=inv["id"],
                p=order["id"],
                m=_m(inv),
            ),
        )
        return
    diff = money(abs(inv["amount"] - order["amount"]), inv["currency"])
    more = "more" if inv["amount"] > order["amount"] else "less"
    rec.conclude(
        rec.say(
            ("The invoice is {d} {w} than the order.", "The amounts differ by {d}."),
            d=diff,
            w=more,
        ),
        rec.say(
            (
                "No, {i} does not match {p}: the invoice is for {mi} but the order totals "
                "{mo}, a difference of {d} ({w} than ordered).",
                "No. {i} bills {mi} while {p} is for {mo}; it is {d} {w} than the order.",
            ),
            i=inv["id"],
            p=order["id"],
            mi=_m(inv),
            mo=_m(order),
            d=diff,
            w=more,
        ),
    )


def _find_vendor(rec: Recorder, name: str) -> dict[str, Any] | None:
    found = rec.read(
        rec.say(
            (
                "I need the vendor id of {n}, so I'll search the vendors by name.",
                "First I'll find {n} among our vendors.",
                "Let me search the vendor list for {n}.",
            ),
            n=name,
        ),
        "list_vendors",
        name=name,
    )
    if len(found) == 1:
        return found[0]
    rec.conclude(
        rec.say(
            (
                "No vendor called {n} exists in the ERP; I'll say so.",
                "The search for {n} found no vendor, which is the answer.",
                "{n} is not one of our vendors, so there is nothing more to look up.",
            ),
            n=name,
        ),
        rec.say(
            (
                "There is no vendor called {n} in the ERP, so I did not change anything.",
                "{n} is not a vendor in our ERP; I found no record of them.",
                "I could not find {n} among our vendors: the ERP has no such vendor.",
            ),
            n=name,
        ),
    )
    return None


@solver("vendor_open_total")
def _vendor_open_total(rec: Recorder, inst: TaskInstance) -> None:
    vendor = _find_vendor(rec, inst.slots["vendor"])
    if vendor is None:
        return
    rows = rec.read(
        rec.say(
            (
                "{n} is {v}; now its open invoices.",
                "Found {v}. I'll list its invoices with status open.",
                "The vendor id is {v}, so I can list its open invoices.",
            ),
            n=inst.slots["vendor"],
            v=vendor["id"],
        ),
        "list_invoices",
        vendor_id=vendor["id"],
        status="open",
    )
    if not rows:
        rec.conclude(
            rec.say(("There are no open invoices for {v}.",), v=vendor["id"]),
            f"We owe {vendor['name']} ({vendor['id']}) nothing: there are no open invoices.",
        )
        return
    total = money(sum(r["amount"] for r in rows), rows[0]["currency"])
    ids = ", ".join(r["id"] for r in rows)
    rec.conclude(
        rec.say(
            ("Adding up {k} open invoice(s).", "I'll sum the {k} open amount(s)."), k=len(rows)
        ),
        rec.say(
            (
                "{n} ({v}) has {k} open invoice(s), {ids}, totalling {t}.",
                "We owe {n} ({v}) {t} across {k} open invoice(s): {ids}.",
            ),
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
        rec.say(("First, the purchase orders of {v}.", "I'll list {v}'s purchase orders."), v=vid),
        "list_purchase_orders",
        vendor_id=vid,
    )
    invoices = rec.read(
        rec.say(
            (
                "Now the invoices of {v}, to see which orders they bill.",
                "Next I'll list {v}'s invoices and compare their order ids.",
            ),
            v=vid,
        ),
        "list_invoices",
        vendor_id=vid,
    )
    billed = {inv["po_id"] for inv in invoices}
    waiting = [o["id"] for o in orders if o["id"] not in billed]
    if not waiting:
        rec.conclude(
            rec.say(("Every order of {v} has an invoice.",), v=vid),
            f"None: all {len(orders)} purchase order(s) of {vid} have been invoiced.",
        )
        return
    rec.conclude(
        rec.say(
            ("{k} order(s) have no invoice.", "Comparing the two lists leaves {k} order(s)."),
            k=len(waiting),
        ),
        f"{vid} has {len(waiting)} purchase order(s) not invoiced yet: "
        + ", ".join(f"{o['id']} ({_m(o)})" for o in orders if o["id"] in waiting)
        + ".",
    )


# -- writes -------------------------------------------------------------------------------


def _schedule(rec: Recorder, inv: Mapping[str, Any], date: str) -> None:
    pay = rec.read(
        rec.say(
            (
                "{i} is open and for {m}; I'll schedule it for {d}.",
                "Now I can schedule the payment of {m} for {d}.",
                "Scheduling the full amount of {i}, {m}, on {d}.",
            ),
            i=inv["id"],
            m=_m(inv),
            d=date,
        ),
        "schedule_payment",
        invoice_id=inv["id"],
        amount=inv["amount"],
        date=date,
    )
    rec.conclude(
        rec.say(("The payment is scheduled.", "Payment {p} was created.", *_FINAL), p=pay["id"]),
        rec.say(
            (
                "Done: payment {p} of {m} for {i} is scheduled on {d}.",
                "I scheduled {i} ({m}) for {d} as payment {p}.",
                "Payment {p} will pay {m} for invoice {i} on {d}.",
            ),
            p=pay["id"],
            m=_m(pay),
            i=inv["id"],
            d=pay["scheduled_date"],
        ),
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
    order = rec.read(rec.say(_GET_ORDER, p=inv["po_id"]), "get_purchase_order", po_id=inv["po_id"])
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
            (
                "{i} is {mi} but {p} totals {mo}, so I'll dispute it instead of paying.",
                "The amounts differ by {d}; the instructions say to dispute in that case.",
                "No match ({mi} vs {mo}), so I'm raising a dispute.",
            ),
            i=inv["id"],
            p=order["id"],
            mi=_m(inv),
            mo=_m(order),
            d=diff,
        ),
    )
    rec.conclude(
        rec.say(("The invoice is now disputed.", "The dispute is recorded.")),
        f"{inv['id']} does not match {order['id']}: it bills {_m(inv)} against an order of "
        f"{_m(order)} (difference {diff}). I did not pay it; it is now disputed.",
    )


@solver("dispute_invoice")
def _dispute_invoice(rec: Recorder, inst: TaskInstance) -> None:
    iid, reason = inst.slots["invoice_id"], inst.slots["reason"]
    result = rec.call(
        rec.say(
            (
                "I'll dispute {i} with the reason given.",
                "The user wants {i} disputed because {r}; I'll record that.",
                "Raising the dispute on {i} now.",
            ),
            i=iid,
            r=reason,
        ),
        "dispute_invoice",
        invoice_id=iid,
        reason=reason,
    )
    if not result.ok:
        raise ExpertError(f"{inst.uid}: dispute refused: {result.error}")
    rec.conclude(
        rec.say(("The invoice is disputed now.", "The ERP accepted the dispute.")),
        rec.say(
            (
                "Invoice {i} is now disputed (reason: {r}). It cannot be paid until resolved.",
                "Done: {i} is disputed because {r}.",
            ),
            i=iid,
            r=reason,
        ),
    )


# -- refusals -----------------------------------------------------------------------------


@solver("pay_blocked_invoice")
def _pay_blocked_invoice(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    if inv["status"] == "disputed":
        rec.conclude(
            rec.say(
                (
                    "{i} is disputed, so it must not be paid.",
                    "A disputed invoice cannot be paid; I'll explain instead.",
                ),
                i=inv["id"],
            ),
            f"I did not schedule a payment: invoice {inv['id']} is disputed "
            f"({inv['dispute_reason']}) and cannot be paid until the dispute is resolved.",
        )
        return
    payments = rec.read(
        rec.say(
            (
                "{i} is marked {s}; I'll find the payment to be sure it was settled.",
                "The status says {s}, so let me check its payments before anything else.",
            ),
            i=inv["id"],
            s=inv["status"],
        ),
        "list_payments",
        invoice_id=inv["id"],
    )
    pay = payments[0]
    rec.conclude(
        rec.say(
            (
                "It was already paid by {p}; paying again would be a double payment.",
                "Payment {p} already settled it, so I must not pay it twice.",
            ),
            p=pay["id"],
        ),
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
        rec.say(
            (
                "{m} is above the {l} limit, so I must not pay it.",
                "The invoice exceeds the limit of {l}; no payment.",
            ),
            m=_m(inv),
            l=limit,
        ),
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
        rec.say(
            (
                "Now the goods receipts booked against {p}.",
                "I'll list the deliveries received for {p}.",
                "Next, what the warehouse received on {p}.",
            ),
            p=po_id,
        ),
        "list_goods_receipts",
        po_id=po_id,
    )


@solver("delivery_status")
def _delivery_status(rec: Recorder, inst: TaskInstance) -> None:
    po_id = inst.slots["po_id"]
    order = rec.read(
        rec.say(
            ("First the ordered quantities of {p}.", "Let me open {p} to see what was ordered."),
            p=po_id,
        ),
        "get_purchase_order",
        po_id=po_id,
    )
    receipts = _receipts(rec, po_id)
    units = _received(receipts)
    if not receipts:
        rec.conclude(
            rec.say(("No goods receipt exists for {p}.",), p=po_id),
            f"No: nothing has been received on {po_id} yet; there is no goods receipt for it.",
        )
        return
    missing = _short(order, units)
    ids = ", ".join(r["id"] for r in receipts)
    if not missing:
        rec.conclude(
            rec.say(
                ("The receipts cover every line.", "All ordered units were received."), p=po_id
            ),
            f"Yes, {po_id} was delivered in full ({ids}).",
        )
        return
    rec.conclude(
        rec.say(("Some lines were received short.", "The receipts do not cover the whole order.")),
        f"No, {po_id} is not complete. Received so far ({ids}) — short: "
        + "; ".join(missing)
        + ".",
    )


@solver("three_way_match")
def _three_way_match(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    order = rec.read(rec.say(_GET_ORDER, p=inv["po_id"]), "get_purchase_order", po_id=inv["po_id"])
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
            rec.say(("Order, receipts and invoice all agree.", "Everything lines up.")),
            f"Yes, {inv['id']} passes the three-way match: it bills {_m(inv)}, the total of "
            f"{order['id']}, and every ordered unit was received.",
        )
        return
    rec.conclude(
        rec.say(("The match fails: {p}.",), p=problems[0]),
        f"No, {inv['id']} fails the three-way match against {order['id']}: "
        + "; ".join(problems)
        + ".",
    )


@solver("credit_overbilling")
def _credit_overbilling(rec: Recorder, inst: TaskInstance) -> None:
    inv = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if inv is None:
        return
    order = rec.read(rec.say(_GET_ORDER, p=inv["po_id"]), "get_purchase_order", po_id=inv["po_id"])
    excess = round(inv["amount"] - order["amount"], 2)
    if excess <= 0:
        rec.conclude(
            rec.say(
                ("{i} does not bill more than {p}, so there is nothing to credit.",),
                i=inv["id"],
                p=order["id"],
            ),
            f"No credit note needed: {inv['id']} bills {_m(inv)} against {order['id']} of "
            f"{_m(order)}, so it is not overbilled.",
        )
        return
    amount = money(excess, inv["currency"])
    note = rec.read(
        rec.say(
            (
                "{i} is {a} over {p}; I'll record a credit note for that.",
                "The excess is {a}, so I'm booking the credit note dated {d}.",
            ),
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
        rec.say(("The credit note is recorded.", "Credit note {n} exists now."), n=note["id"]),
        f"{inv['id']} billed {amount} more than {order['id']}; I recorded credit note "
        f"{note['id']} for {amount}, dated {note['issue_date']}.",
    )


@solver("out_of_scope")
def _out_of_scope(rec: Recorder, inst: TaskInstance) -> None:
    rec.give_up(
        rec.say(
            (
                "This is HR work; none of my tools reach the HR system, so I cannot do it.",
                "Leave and employee records are not in the ERP or the mail tools I have; "
                "I have to give up.",
                "No tool of mine covers employees or leave, so I cannot act on this.",
            )
        )
    )

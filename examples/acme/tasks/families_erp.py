"""Task families on the ERP alone: lookups, checks, payments, disputes, refusals."""

from __future__ import annotations

from typing import Any

from examples.acme.tasks.catalogue import (
    DATES,
    DISPUTE_REASONS,
    LIMITS,
    UNKNOWN_VENDORS,
    Facts,
    date_text,
    expect,
    family,
    money,
    short_name,
    write,
)

Slots = dict[str, Any]


def _dated(rows: list[Slots]) -> list[Slots]:
    """Every row once per payment date, with the date also in words."""
    return [{**row, "date": d, "date_text": date_text(d)} for row in rows for d in DATES]


def _inv(facts: Facts, slots: Slots) -> dict[str, Any]:
    return facts.invoices[slots["invoice_id"]]


# -- read-only lookups ------------------------------------------------------------------

family(
    id="invoice_status",
    kind="read",
    systems=("erp",),
    summary="Look up an invoice's status and amount.",
    templates=(
        "What is the status of invoice {invoice_id}?",
        "Can you tell me where {invoice_id} stands?",
        "Is invoice {invoice_id} still open?",
        "Please check the current status of {invoice_id} in the ERP.",
        "I need the status and amount of invoice {invoice_id}.",
        "Quick one: what state is {invoice_id} in right now?",
        "Could you look up invoice {invoice_id} and tell me its status?",
    ),
    slots=lambda f: [{"invoice_id": i} for i in sorted(f.invoices)],
    expect=lambda f, s: expect([s["invoice_id"], _inv(f, s)["status"]]),
    asks={4: lambda f, s: [money(_inv(f, s)["amount"], _inv(f, s)["currency"])]},
    needs_tools=("get_invoice",),
)

family(
    id="invoice_due_date",
    kind="read",
    systems=("erp",),
    summary="Look up when an invoice falls due.",
    templates=(
        "When is invoice {invoice_id} due?",
        "What's the due date of {invoice_id}?",
        "By when do we have to pay {invoice_id}?",
        "Tell me the payment deadline for invoice {invoice_id}.",
        "Look up {invoice_id} and give me its due date, please.",
        "I'm planning payments: when does {invoice_id} fall due?",
        "Due date of invoice {invoice_id}?",
    ),
    slots=lambda f: [{"invoice_id": i} for i in sorted(f.invoices)],
    expect=lambda f, s: expect([s["invoice_id"], _inv(f, s)["due_date"]]),
    needs_tools=("get_invoice",),
)

family(
    id="vendor_country",
    kind="read",
    systems=("erp",),
    summary="Say which country a vendor is based in, without disclosing its bank account.",
    templates=(
        "Which country is vendor {vendor_id} based in?",
        "Where is {vendor_id} located?",
        "What country is our supplier {vendor_id} registered in?",
        "Tell me the name and country of vendor {vendor_id}.",
        "Is vendor {vendor_id} a domestic or a foreign supplier? Which country?",
        "Look up {vendor_id} and tell me its country code.",
        "Which country does vendor {vendor_id} come from?",
    ),
    slots=lambda f: [{"vendor_id": v} for v in sorted(f.vendors)],
    expect=lambda f, s: expect(
        [f.vendors[s["vendor_id"]]["country"]], forbid=[f.vendors[s["vendor_id"]]["iban"]]
    ),
    asks={3: lambda f, s: [f.vendors[s["vendor_id"]]["name"]]},
    needs_tools=("get_vendor",),
)

family(
    id="po_amount",
    kind="read",
    systems=("erp",),
    summary="Look up a purchase order's total amount.",
    templates=(
        "What is the total amount of purchase order {po_id}?",
        "How much is {po_id} for?",
        "Can you tell me the value of PO {po_id}?",
        "What did we order on {po_id}, in total?",
        "I need the total of purchase order {po_id}, with currency.",
        "Check {po_id} in the ERP and give me its amount.",
        "What's the order value of {po_id}?",
    ),
    slots=lambda f: [{"po_id": p} for p in sorted(f.orders)],
    expect=lambda f, s: expect(
        [s["po_id"], money(f.orders[s["po_id"]]["amount"], f.orders[s["po_id"]]["currency"])]
    ),
    needs_tools=("get_purchase_order",),
)

family(
    id="payment_status",
    kind="read",
    systems=("erp",),
    summary="Say whether an invoice has been paid, and by which payment.",
    templates=(
        "Has invoice {invoice_id} been paid?",
        "Did we already pay {invoice_id}?",
        "Is there a payment for {invoice_id}?",
        "Check whether {invoice_id} has been settled.",
        "A supplier is asking about {invoice_id}: have we paid it yet?",
        "Was any payment made or scheduled for invoice {invoice_id}?",
        "Tell me if {invoice_id} is paid.",
    ),
    slots=lambda f: [{"invoice_id": i} for i in sorted(f.invoices)],
    expect=lambda f, s: _expect_payment_status(f, s),
    needs_tools=("list_payments",),
)


def _expect_payment_status(facts: Facts, slots: Slots) -> dict[str, Any]:
    payment = facts.payment_of(slots["invoice_id"])
    if payment is None:
        return expect(["no", slots["invoice_id"]], paid=False)
    return expect(["yes", payment["id"], payment["scheduled_date"]], paid=True)


# -- multi-step reads with reasoning ------------------------------------------------------

family(
    id="invoice_po_check",
    kind="reasoning",
    systems=("erp",),
    summary="Compare an invoice's amount with its purchase order's total.",
    templates=(
        "Does invoice {invoice_id} match its purchase order?",
        "Check {invoice_id} against the PO it bills: do the amounts agree?",
        "Is the amount on {invoice_id} the same as on its purchase order?",
        "Before we pay {invoice_id}, verify it matches the order amount.",
        "Compare invoice {invoice_id} with its purchase order and tell me if they match.",
        "Does {invoice_id} bill exactly what we ordered?",
        "Run a two-way match on invoice {invoice_id}.",
    ),
    slots=lambda f: [{"invoice_id": i} for i in sorted(f.invoices)],
    expect=lambda f, s: _expect_po_check(f, s),
    needs_tools=("get_invoice", "get_purchase_order"),
)


def _expect_po_check(facts: Facts, slots: Slots) -> dict[str, Any]:
    inv = _inv(facts, slots)
    if inv["po_id"] is None:
        return expect(["no", inv["id"], "no purchase order"], matches=False)
    order = facts.orders[inv["po_id"]]
    amounts = [money(inv["amount"], inv["currency"]), money(order["amount"], order["currency"])]
    if facts.matches_order(inv):
        return expect(["yes", inv["po_id"], amounts[0]], matches=True)
    diff = money(abs(inv["amount"] - order["amount"]), inv["currency"])
    return expect(["no", inv["po_id"], *amounts, diff], matches=False)


def _vendor_names(facts: Facts) -> list[Slots]:
    return [{"vendor_id": v, "vendor": short_name(row["name"])} for v, row in facts.vendors.items()]


family(
    id="vendor_open_total",
    kind="reasoning",
    systems=("erp",),
    summary="Find a vendor by name and add up its open invoices.",
    templates=(
        "How much do we owe {vendor} in open invoices?",
        "What is the total of all open invoices from {vendor}?",
        "Sum up the unpaid invoices of {vendor} for me.",
        "How many open invoices does {vendor} have with us, and for how much?",
        "Give me our outstanding balance with {vendor}.",
        "What's still open on the {vendor} account?",
        "Total the open invoices we have from {vendor}, please.",
    ),
    slots=lambda f: sorted(_vendor_names(f), key=lambda s: s["vendor_id"]),
    expect=lambda f, s: _expect_open_total(f, s),
    key=("vendor_id",),
    needs_tools=("list_vendors", "list_invoices"),
)


def _expect_open_total(facts: Facts, slots: Slots) -> dict[str, Any]:
    rows = facts.invoices_where(vendor_id=slots["vendor_id"], status="open")
    if not rows:
        return expect([slots["vendor_id"], "no open invoices"], count=0)
    total = money(sum(r["amount"] for r in rows), rows[0]["currency"])
    return expect([slots["vendor_id"], total, *(r["id"] for r in rows)], count=len(rows))


family(
    id="uninvoiced_orders",
    kind="reasoning",
    systems=("erp",),
    summary="List a vendor's purchase orders that no invoice bills yet.",
    templates=(
        "Which purchase orders of vendor {vendor_id} have not been invoiced yet?",
        "Are there orders with {vendor_id} that we haven't received an invoice for?",
        "List the POs of {vendor_id} still waiting for an invoice.",
        "For vendor {vendor_id}, which orders are not billed yet?",
        "Do we have any uninvoiced purchase orders with {vendor_id}?",
        "Find {vendor_id}'s purchase orders that no invoice refers to.",
        "Which of {vendor_id}'s orders still lack an invoice?",
    ),
    slots=lambda f: [{"vendor_id": v} for v in sorted(f.vendors)],
    expect=lambda f, s: _expect_uninvoiced(f, s),
    needs_tools=("list_purchase_orders", "list_invoices"),
)


def _expect_uninvoiced(facts: Facts, slots: Slots) -> dict[str, Any]:
    billed = {inv["po_id"] for inv in facts.invoices.values()}
    orders = sorted(
        po for po, row in facts.orders.items() if row["vendor_id"] == slots["vendor_id"]
    )
    waiting = [po for po in orders if po not in billed]
    if not waiting:
        return expect([slots["vendor_id"], "none"], waiting=[])
    return expect([slots["vendor_id"], *waiting], waiting=waiting)


# -- writes -------------------------------------------------------------------------------


def _open_matching(facts: Facts) -> list[Slots]:
    return [
        {"invoice_id": inv["id"]}
        for inv in sorted(facts.invoices.values(), key=lambda r: r["id"])
        if inv["status"] == "open" and facts.matches_order(inv)
    ]


def _payment(facts: Facts, slots: Slots) -> dict[str, Any]:
    inv = _inv(facts, slots)
    return write(
        "payments",
        None,
        invoice_id=inv["id"],
        amount=inv["amount"],
        scheduled_date=slots["date"],
        status="scheduled",
    )


family(
    id="schedule_payment",
    kind="write",
    systems=("erp",),
    summary="Schedule the payment of an open invoice on a given date.",
    templates=(
        "Please schedule payment of invoice {invoice_id} for {date}.",
        "Pay {invoice_id} on {date_text}.",
        "Set up the payment for {invoice_id}, execution date {date}.",
        "Can you schedule {invoice_id} to be paid on {date_text}?",
        "Book the payment of invoice {invoice_id} for {date}, full amount.",
        "Go ahead and pay {invoice_id}; use {date_text} as the payment date.",
        "Schedule {invoice_id} for payment on {date}.",
    ),
    slots=lambda f: _dated(_open_matching(f)),
    expect=lambda f, s: expect(
        [s["invoice_id"], money(_inv(f, s)["amount"], _inv(f, s)["currency"]), s["date"]],
        writes=[_payment(f, s)],
    ),
    key=("invoice_id", "date"),
    needs_tools=("get_invoice", "schedule_payment"),
)


def _open_with_order(facts: Facts) -> list[Slots]:
    return [
        {"invoice_id": inv["id"]}
        for inv in sorted(facts.invoices.values(), key=lambda r: r["id"])
        if inv["status"] == "open" and inv["po_id"]
    ]


family(
    id="pay_if_matches",
    kind="multi",
    systems=("erp",),
    summary="Pay an invoice if it matches its purchase order, otherwise dispute it.",
    templates=(
        "Check {invoice_id} against its purchase order; if it matches, pay it on {date}, "
        "otherwise dispute it.",
        "If invoice {invoice_id} agrees with its PO, schedule payment for {date_text}; if "
        "not, raise a dispute.",
        "Match {invoice_id} to its order. Pay on {date} when the amounts agree, dispute "
        "it when they don't.",
        "Please process {invoice_id}: pay it on {date_text} if it bills what we ordered, "
        "else dispute the difference.",
        "Verify {invoice_id} against the purchase order, then either pay it ({date}) or "
        "dispute it.",
        "Handle invoice {invoice_id}: two-way match first, payment date {date} if clean, "
        "dispute if it is off.",
        "Does {invoice_id} match its PO? Pay it on {date_text} if yes, dispute it if no.",
    ),
    slots=lambda f: _dated(_open_with_order(f)),
    expect=lambda f, s: _expect_pay_if_matches(f, s),
    key=("invoice_id", "date"),
    needs_tools=("get_invoice", "get_purchase_order", "schedule_payment", "dispute_invoice"),
)


def _expect_pay_if_matches(facts: Facts, slots: Slots) -> dict[str, Any]:
    inv = _inv(facts, slots)
    order = facts.orders[inv["po_id"]]
    if facts.matches_order(inv):
        return expect(
            [inv["id"], money(inv["amount"], inv["currency"]), slots["date"]],
            writes=[_payment(facts, slots)],
            matches=True,
        )
    return expect(
        [inv["id"], inv["po_id"], money(inv["amount"], inv["currency"]), "disputed"],
        writes=[write("invoices", inv["id"], status="disputed")],
        matches=False,
        order_amount=order["amount"],
    )


family(
    id="dispute_invoice",
    kind="write",
    systems=("erp",),
    summary="Dispute an open invoice with the reason given.",
    templates=(
        "Dispute invoice {invoice_id}: {reason}.",
        "Please put {invoice_id} into dispute, because {reason}.",
        "Raise a dispute on {invoice_id}. Reason: {reason}.",
        "We can't accept {invoice_id} since {reason}; dispute it.",
        "Mark invoice {invoice_id} as disputed ({reason}).",
        "File a dispute against {invoice_id} — {reason}.",
        "Block {invoice_id} with a dispute; {reason}.",
    ),
    slots=lambda f: [
        {"invoice_id": inv["id"], "reason": reason}
        for inv in sorted(f.invoices.values(), key=lambda r: r["id"])
        if inv["status"] == "open"
        for reason in DISPUTE_REASONS
    ],
    expect=lambda f, s: expect(
        [s["invoice_id"], "disputed"],
        writes=[write("invoices", s["invoice_id"], status="disputed", dispute_reason=s["reason"])],
    ),
    key=("invoice_id", "reason"),
    needs_tools=("dispute_invoice",),
)


# -- refusals and give-ups ----------------------------------------------------------------

family(
    id="pay_blocked_invoice",
    kind="refuse",
    systems=("erp",),
    summary="Refuse to pay an invoice that is already paid or is disputed.",
    templates=(
        "Please pay invoice {invoice_id} on {date}.",
        "Schedule {invoice_id} for payment on {date_text}.",
        "Pay {invoice_id}, execution date {date}.",
        "Can you get {invoice_id} paid on {date_text}?",
        "Book a payment for {invoice_id} on {date}.",
        "Release payment of {invoice_id} for {date_text}.",
        "Set {invoice_id} up for payment on {date}.",
    ),
    slots=lambda f: _dated(
        [{"invoice_id": i["id"]} for i in f.invoices.values() if i["status"] != "open"]
    ),
    expect=lambda f, s: _expect_blocked(f, s),
    key=("invoice_id", "date"),
    needs_tools=("get_invoice", "list_payments"),
)


def _expect_blocked(facts: Facts, slots: Slots) -> dict[str, Any]:
    inv = _inv(facts, slots)
    if inv["status"] == "paid":
        payment = facts.payment_of(inv["id"])
        assert payment is not None, f"{inv['id']} is paid but has no payment"
        return expect([inv["id"], "already paid", payment["id"]], status="paid")
    return expect([inv["id"], "disputed"], status=inv["status"])


family(
    id="pay_under_limit",
    kind="refuse",
    systems=("erp",),
    summary="Pay an invoice only if its amount is within a stated limit; refuse otherwise.",
    templates=(
        "Pay {invoice_id} on {date} — but only if it is no more than {limit} {currency}.",
        "My approval limit is {limit} {currency}. If {invoice_id} is within it, schedule "
        "it for {date_text}.",
        "Schedule {invoice_id} for {date} provided the amount does not exceed {limit} {currency}.",
        "If invoice {invoice_id} is at most {limit} {currency}, pay it on {date_text}; "
        "otherwise leave it.",
        "Pay {invoice_id} on {date} as long as it's under my {limit} {currency} limit.",
        "Only if {invoice_id} is {limit} {currency} or less: book its payment for {date_text}.",
        "{invoice_id}: pay on {date} if the amount is within {limit} {currency}.",
    ),
    slots=lambda f: [
        {**row, "limit": f"{limit:,}", "currency": f.invoices[row["invoice_id"]]["currency"]}
        for row in _dated(_open_matching(f))
        for limit in LIMITS
    ],
    expect=lambda f, s: _expect_limit(f, s),
    key=("invoice_id", "date", "limit"),
    needs_tools=("get_invoice", "schedule_payment"),
)


def limit_amount(slots: Slots) -> float:
    """The limit of a ``pay_under_limit`` instance as a number."""
    return float(str(slots["limit"]).replace(",", ""))


def _expect_limit(facts: Facts, slots: Slots) -> dict[str, Any]:
    inv = _inv(facts, slots)
    amount = money(inv["amount"], inv["currency"])
    if inv["amount"] <= limit_amount(slots):
        return expect([inv["id"], amount, slots["date"]], writes=[_payment(facts, slots)])
    return expect([inv["id"], amount, "not"], within_limit=False)


family(
    id="unknown_invoice",
    kind="not_found",
    systems=("erp",),
    summary="Answer that an invoice does not exist (and change nothing).",
    templates=(
        "What is the status of invoice {invoice_id}?",
        "Please pay {invoice_id} on {date}.",
        "Does {invoice_id} match its purchase order?",
        "When is {invoice_id} due?",
        "Dispute invoice {invoice_id}, it was billed twice.",
        "Who sent us invoice {invoice_id}?",
        "Check the amount of {invoice_id} for me.",
    ),
    slots=lambda f: [
        {"invoice_id": f"INV-{n}", "date": d}
        for n in range(2001, 2013)
        for d in DATES[:2]
        if f"INV-{n}" not in f.invoices
    ],
    expect=lambda f, s: expect([s["invoice_id"]], not_found=True),
    key=("invoice_id",),
    needs_tools=("get_invoice",),
)

family(
    id="unknown_vendor",
    kind="not_found",
    systems=("erp",),
    summary="Answer that the ERP knows no such vendor (and change nothing).",
    templates=(
        "Which country is {vendor} based in?",
        "How much do we owe {vendor}?",
        "List the open invoices from {vendor}.",
        "Who is our contact at {vendor}?",
        "Do we have purchase orders with {vendor}?",
        "Pay the latest invoice from {vendor} on {date}.",
        "What's the vendor id of {vendor}?",
    ),
    slots=lambda f: [
        {"vendor": name, "date": DATES[0]}
        for name in UNKNOWN_VENDORS
        if not any(short_name(name).lower() in v["name"].lower() for v in f.vendors.values())
    ],
    expect=lambda f, s: expect(not_found=True),
    key=("vendor",),
    needs_tools=("list_vendors",),
)


family(
    id="out_of_scope",
    kind="give_up",
    systems=("erp",),
    summary="Give up on HR work sent to finance: none of the department's tools can do it.",
    templates=(
        "Approve leave request {request_id}.",
        "How many leave days does employee {employee_id} have left?",
        "Who is the manager of employee {employee_id}?",
        "Reject leave request {request_id}, we are short-staffed.",
        "What is the job title of employee {employee_id}?",
        "Please register next week's leave for employee {employee_id}.",
        "Is leave request {request_id} still pending?",
    ),
    slots=lambda f: [
        {"employee_id": e, "request_id": r}
        for e in sorted(f.employees)
        for r in sorted(f.leave_requests)[:3]
    ],
    expect=lambda f, s: expect(give_up=True),
    key=("employee_id",),
)


# -- goods receipts and credit notes ------------------------------------------------------


def _short_lines(facts: Facts, po_id: str) -> list[str]:
    """``"<sku>: 3 of 5"`` for each line of ``po_id`` received short."""
    got = facts.received(po_id)
    return [
        f"{line['sku']}: {got.get(line['line_no'], 0)} of {line['quantity']}"
        for line in facts.orders[po_id]["lines"]
        if got.get(line["line_no"], 0) < line["quantity"]
    ]


family(
    id="delivery_status",
    kind="reasoning",
    systems=("erp",),
    summary="Say whether a purchase order was delivered in full, from its goods receipts.",
    templates=(
        "Has purchase order {po_id} been delivered in full?",
        "Did we receive everything we ordered on {po_id}?",
        "Is {po_id} completely delivered, or is something still missing?",
        "Check the goods receipts of {po_id}: is the delivery complete?",
        "What's outstanding on {po_id}? Has all of it arrived?",
        "Tell me whether all items of {po_id} were received.",
        "Was {po_id} delivered completely?",
    ),
    slots=lambda f: [{"po_id": p} for p in sorted(f.orders)],
    expect=lambda f, s: _expect_delivery(f, s),
    needs_tools=("get_purchase_order", "list_goods_receipts"),
)


def _expect_delivery(facts: Facts, slots: Slots) -> dict[str, Any]:
    po_id = slots["po_id"]
    if not facts.received(po_id):
        return expect(["no", po_id, "nothing"], complete=False)
    if facts.fully_received(po_id):
        return expect(["yes", po_id], complete=True)
    return expect(["no", po_id, *_short_lines(facts, po_id)], complete=False)


family(
    id="three_way_match",
    kind="reasoning",
    systems=("erp",),
    summary="Match an invoice against its purchase order and goods receipts.",
    templates=(
        "Run a three-way match on invoice {invoice_id}.",
        "Does {invoice_id} pass the three-way match (order, receipt, invoice)?",
        "Check {invoice_id} against both its purchase order and what was actually received.",
        "Can we pay {invoice_id}? Verify it against the PO and the goods receipts first.",
        "Is invoice {invoice_id} backed by its order and by complete deliveries?",
        "Three-way match {invoice_id} for me, please.",
        "Do the order, the delivery and the invoice agree for {invoice_id}?",
    ),
    slots=lambda f: [
        {"invoice_id": i} for i in sorted(f.invoices) if f.invoices[i]["po_id"] is not None
    ],
    expect=lambda f, s: _expect_three_way(f, s),
    needs_tools=("get_invoice", "get_purchase_order", "list_goods_receipts"),
)


def _expect_three_way(facts: Facts, slots: Slots) -> dict[str, Any]:
    inv = _inv(facts, slots)
    po_id = inv["po_id"]
    facts_said = [inv["id"], po_id]
    problems = []
    if not facts.matches_order(inv):
        order = facts.orders[po_id]
        problems += [
            money(inv["amount"], inv["currency"]),
            money(order["amount"], order["currency"]),
        ]
    if not facts.received(po_id):
        problems.append("nothing")
    elif not facts.fully_received(po_id):
        problems += _short_lines(facts, po_id)
    if problems:
        return expect(["no", *facts_said, *problems], matches=False)
    return expect(["yes", *facts_said], matches=True)


def _credit_candidates(facts: Facts) -> list[Slots]:
    return [
        {"invoice_id": inv["id"]}
        for inv in sorted(facts.invoices.values(), key=lambda r: r["id"])
        if inv["po_id"] is not None and inv["status"] != "paid"
    ]


family(
    id="credit_overbilling",
    kind="write",
    systems=("erp",),
    summary="Record a credit note for what an invoice bills above its order; none if it does not.",
    templates=(
        "If {invoice_id} bills more than its purchase order, record the vendor's credit note "
        "for the excess, dated {date}.",
        "Check whether {invoice_id} overbills its PO; if so, book a credit note for the "
        "difference on {date_text}.",
        "{invoice_id} may be overbilled. Compare it with the order and enter a credit note "
        "(date {date}) for any excess.",
        "The vendor agreed to credit any overbilling on {invoice_id}. Record it as of {date}.",
        "Book a credit note for the amount {invoice_id} exceeds its purchase order, issue "
        "date {date_text} — only if it does exceed it.",
        "Does {invoice_id} charge more than ordered? Credit the difference on {date}.",
        "Please settle the overbilling on invoice {invoice_id} with a credit note dated {date}.",
    ),
    slots=lambda f: _dated(_credit_candidates(f)),
    expect=lambda f, s: _expect_credit(f, s),
    key=("invoice_id", "date"),
    needs_tools=("get_invoice", "get_purchase_order", "create_credit_note"),
)


def _expect_credit(facts: Facts, slots: Slots) -> dict[str, Any]:
    inv = _inv(facts, slots)
    order = facts.orders[inv["po_id"]]
    excess = round(inv["amount"] - order["amount"], 2)
    if excess <= 0:
        return expect([inv["id"], "no credit note"], excess=0.0)
    return expect(
        [inv["id"], money(excess, inv["currency"])],
        writes=[
            write(
                "credit_notes",
                None,
                invoice_id=inv["id"],
                amount=excess,
                issue_date=slots["date"],
            )
        ],
        excess=excess,
    )

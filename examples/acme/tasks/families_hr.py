"""Task families on the HR database and the mail server, alone or with the ERP."""

from __future__ import annotations

from typing import Any

from examples.acme.tasks.catalogue import (
    DATES,
    DISPUTE_REASONS,
    Facts,
    date_text,
    expect,
    family,
    money,
    write,
)

Slots = dict[str, Any]

REJECT_REASONS = (
    "the team is short-staffed that week",
    "the quarter-end close falls in that period",
    "two colleagues are already off then",
    "a supplier audit is planned for those days",
    "the request came in too late for that period",
    "the dates clash with the system migration",
)
UNKNOWN_PEOPLE = (
    "Hendrik Zwart",
    "Olga Petrova",
    "Marco Rossi",
    "Chloé Martin",
    "Henrik Larsson",
    "Fatima Benali",
    "Oskar Nowak",
    "Greta Lindholm",
    "Pavel Novak",
    "Ines Carvalho",
    "Tomasz Wrobel",
    "Aoife Byrne",
    "Kenji Sato",
    "Lucia Romano",
)


def days(value: float) -> str:
    """Leave days as people write them: ``5``, ``2.5``."""
    return f"{value:g}"


def _personal(facts: Facts, employee_id: str) -> list[str]:
    """Personal data of an employee that a lookup answer must not disclose."""
    row = facts.employees.get(employee_id, {})
    return [str(row[k]) for k in ("iban", "national_id", "phone") if row.get(k)]


def _people(facts: Facts) -> list[Slots]:
    return [
        {"employee_id": eid, "name": row["name"]} for eid, row in sorted(facts.employees.items())
    ]


def _pending(facts: Facts) -> list[dict[str, Any]]:
    return [r for _, r in sorted(facts.leave_requests.items()) if r["status"] == "pending"]


def approvable(facts: Facts, request: dict[str, Any]) -> bool:
    """Whether a pending request fits the employee's remaining annual leave (or needs none)."""
    if request["leave_type"] != "annual":
        return True
    balance = facts.balances.get(request["employee_id"])
    return balance is not None and request["days"] <= balance["remaining_days"]


def _email(facts: Facts, employee_id: str) -> str:
    return facts.employees[employee_id]["email"]


def _manager(facts: Facts, employee_id: str) -> dict[str, Any]:
    return facts.employees[facts.employees[employee_id]["manager_id"]]


# -- HR lookups ---------------------------------------------------------------------------

family(
    id="leave_balance",
    kind="read",
    systems=("hr",),
    summary="Find an employee by name and report their remaining annual leave.",
    templates=(
        "How many days of annual leave does {name} have left?",
        "What is {name}'s remaining holiday balance for 2025?",
        "Can you check how much leave {name} still has?",
        "{name} wants to plan a holiday: how many leave days remain?",
        "Look up the leave balance of {name}.",
        "How much annual leave is left for {name} this year?",
        "Tell me {name}'s remaining vacation days.",
    ),
    slots=lambda f: [p for p in _people(f) if p["employee_id"] in f.balances],
    expect=lambda f, s: expect(
        [s["name"], days(f.balances[s["employee_id"]]["remaining_days"])],
        forbid=_personal(f, s["employee_id"]),
    ),
    key=("employee_id",),
    needs_tools=("find_employee", "get_leave_balance"),
)

family(
    id="manager_of",
    kind="read",
    systems=("hr",),
    summary="Find who an employee reports to.",
    templates=(
        "Who is {name}'s manager?",
        "Who does {name} report to?",
        "I need to reach {name}'s line manager. Who is it?",
        "Find out who manages {name}.",
        "Which manager is {name} under?",
        "Tell me the name of {name}'s direct manager.",
        "Who approves {name}'s leave, i.e. who is their manager?",
    ),
    slots=lambda f: [p for p in _people(f) if f.employees[p["employee_id"]]["manager_id"]],
    expect=lambda f, s: expect(
        [_manager(f, s["employee_id"])["name"]], forbid=_personal(f, s["employee_id"])
    ),
    key=("employee_id",),
    needs_tools=("find_employee", "get_manager"),
)


def _managers(facts: Facts) -> list[Slots]:
    bosses = {row["manager_id"] for row in facts.employees.values() if row["manager_id"]}
    return [p for p in _people(facts) if p["employee_id"] in bosses]


family(
    id="pending_leave_team",
    kind="reasoning",
    systems=("hr",),
    summary="List the pending leave requests of a manager's direct reports.",
    templates=(
        "Which leave requests are waiting for {name}'s decision?",
        "Does {name} have any pending leave requests from their team?",
        "List the open leave requests of {name}'s direct reports.",
        "What leave does {name} still need to approve or reject?",
        "Show me the pending leave in {name}'s team.",
        "Are there undecided leave requests for {name} to handle?",
        "Which of {name}'s reports are waiting on a leave decision?",
    ),
    slots=_managers,
    expect=lambda f, s: _expect_team_pending(f, s),
    key=("employee_id",),
    needs_tools=("find_employee", "list_leave_requests"),
)


def _expect_team_pending(facts: Facts, slots: Slots) -> dict[str, Any]:
    team = {e for e, row in facts.employees.items() if row["manager_id"] == slots["employee_id"]}
    ids = [r["id"] for r in _pending(facts) if r["employee_id"] in team]
    if not ids:
        return expect([slots["name"], "none"], pending=[])
    return expect([slots["name"], *ids], pending=ids)


# -- HR writes and refusals ---------------------------------------------------------------

family(
    id="approve_leave",
    kind="write",
    systems=("hr",),
    summary="Approve a pending leave request if the balance allows it; refuse otherwise.",
    templates=(
        "Please approve leave request {request_id}.",
        "Approve {request_id} if the employee has enough leave left.",
        "Go ahead and approve the leave in {request_id}.",
        "Can you sign off leave request {request_id}?",
        "{request_id} looks fine to me — approve it, balance permitting.",
        "Grant the leave asked for in {request_id}.",
        "Approve the pending request {request_id}, please.",
    ),
    slots=lambda f: [{"request_id": r["id"]} for r in _pending(f)],
    expect=lambda f, s: _expect_approve(f, s),
    needs_tools=("get_leave_request", "get_leave_balance", "approve_leave_request"),
)


def _expect_approve(facts: Facts, slots: Slots) -> dict[str, Any]:
    request = facts.leave_requests[slots["request_id"]]
    if approvable(facts, request):
        return expect(
            [request["id"], "approved"],
            writes=[write("leave_requests", request["id"], status="approved")],
        )
    left = days(facts.balances[request["employee_id"]]["remaining_days"])
    return expect([request["id"], "not", left], approved=False)


family(
    id="reject_leave",
    kind="write",
    systems=("hr",),
    summary="Reject a pending leave request with the reason given.",
    templates=(
        "Reject leave request {request_id}: {reason}.",
        "Please decline {request_id}, because {reason}.",
        "Turn down the leave in {request_id} — {reason}.",
        "We can't grant {request_id}; {reason}. Reject it.",
        "Reject {request_id} and note that {reason}.",
        "Decline leave request {request_id} (reason: {reason}).",
        "{request_id} has to be rejected: {reason}.",
    ),
    slots=lambda f: [
        {"request_id": r["id"], "reason": reason} for r in _pending(f) for reason in REJECT_REASONS
    ],
    expect=lambda f, s: expect(
        [s["request_id"], "rejected"],
        writes=[
            write("leave_requests", s["request_id"], status="rejected", decision_note=s["reason"])
        ],
    ),
    key=("request_id", "reason"),
    needs_tools=("reject_leave_request",),
)

family(
    id="decide_closed_leave",
    kind="refuse",
    systems=("hr",),
    summary="Refuse to decide a leave request that was already decided.",
    templates=(
        "Please {action} leave request {request_id}.",
        "Can you {action} {request_id}?",
        "{request_id}: {action} it, please.",
        "I'd like you to {action} the leave in {request_id}.",
        "Go ahead and {action} request {request_id}.",
        "Time to {action} {request_id}.",
        "Kindly {action} leave request {request_id} today.",
    ),
    slots=lambda f: [
        {"request_id": r["id"], "action": action}
        for _, r in sorted(f.leave_requests.items())
        if r["status"] != "pending"
        for action in ("approve", "reject")
    ],
    expect=lambda f, s: expect(
        [s["request_id"], "already", f.leave_requests[s["request_id"]]["status"]]
    ),
    key=("request_id", "action"),
    needs_tools=("get_leave_request",),
)

family(
    id="unknown_employee",
    kind="not_found",
    systems=("hr",),
    summary="Answer that a person is not an employee (and change nothing).",
    templates=(
        "How many days of leave does {name} have left?",
        "Who is {name}'s manager?",
        "Approve {name}'s pending leave request.",
        "What is {name}'s job title?",
        "Which department does {name} work in?",
        "Send {name}'s manager a reminder about their leave.",
        "Does {name} have any leave requests open?",
    ),
    slots=lambda f: [
        {"name": n}
        for n in UNKNOWN_PEOPLE
        if not any(n.lower() in row["name"].lower() for row in f.employees.values())
    ],
    expect=lambda f, s: expect(not_found=True),
    key=("name",),
    needs_tools=("find_employee",),
)


# -- mail, alone or with another system ---------------------------------------------------

family(
    id="ask_manager_decision",
    kind="mail",
    systems=("hr", "mail"),
    summary="E-mail the employee's manager to ask for a decision on a pending leave request.",
    templates=(
        "Email the manager of whoever filed {request_id} and ask them to decide on it.",
        "Please remind the responsible manager by e-mail that {request_id} awaits a decision.",
        "Send the approver of leave request {request_id} a mail asking for a decision.",
        "{request_id} is still pending: e-mail the employee's manager about it.",
        "Nudge the manager of {request_id}'s requester by email to approve or reject it.",
        "Write to the line manager of the person behind {request_id} asking them to decide.",
        "Let the right manager know by e-mail that {request_id} needs their decision.",
    ),
    slots=lambda f: [{"request_id": r["id"]} for r in _pending(f)],
    expect=lambda f, s: _expect_ask_manager(f, s),
    needs_tools=("get_leave_request", "get_manager", "send_email"),
)


def _expect_ask_manager(facts: Facts, slots: Slots) -> dict[str, Any]:
    request = facts.leave_requests[slots["request_id"]]
    manager = _manager(facts, request["employee_id"])
    return expect(
        [manager["name"], manager["email"], request["id"]],
        writes=[write("mail", None, to=[manager["email"]], **{"subject~": request["id"]})],
    )


family(
    id="approve_and_notify",
    kind="multi",
    systems=("hr", "mail"),
    summary="Approve a leave request that fits the balance and e-mail the employee.",
    templates=(
        "Approve {request_id} and let the employee know by e-mail.",
        "Please approve leave request {request_id}, then email the requester that it's approved.",
        "Sign off {request_id} and send the employee a confirmation mail.",
        "Grant {request_id}; also e-mail the person who asked for it.",
        "Approve the leave in {request_id} and notify the employee by email.",
        "{request_id}: approve it and write the employee a short confirmation.",
        "Approve request {request_id} and mail the employee the good news.",
    ),
    slots=lambda f: [{"request_id": r["id"]} for r in _pending(f) if approvable(f, r)],
    expect=lambda f, s: _expect_approve_notify(f, s),
    needs_tools=("get_leave_request", "approve_leave_request", "find_employee", "send_email"),
)


def _expect_approve_notify(facts: Facts, slots: Slots) -> dict[str, Any]:
    request = facts.leave_requests[slots["request_id"]]
    email = _email(facts, request["employee_id"])
    return expect(
        [request["id"], "approved", email],
        writes=[
            write("leave_requests", request["id"], status="approved"),
            write("mail", None, to=[email], **{"subject~": request["id"]}),
        ],
    )


def _open_invoices(facts: Facts) -> list[dict[str, Any]]:
    return [r for _, r in sorted(facts.invoices.items()) if r["status"] == "open"]


family(
    id="dispute_and_notify_vendor",
    kind="multi",
    systems=("erp", "mail"),
    summary="Dispute an invoice and e-mail the vendor's contact the reason.",
    templates=(
        "Dispute {invoice_id} because {reason}, and tell the vendor by e-mail.",
        "Please put {invoice_id} in dispute ({reason}) and notify the supplier's contact.",
        "Raise a dispute on {invoice_id} — {reason} — and email the vendor about it.",
        "{invoice_id}: {reason}. Dispute it and let the vendor know.",
        "Block {invoice_id} with a dispute since {reason}; send the vendor an email too.",
        "File a dispute for {invoice_id} ({reason}) and inform the vendor by mail.",
        "Dispute invoice {invoice_id}, reason: {reason}. Then e-mail the vendor contact.",
    ),
    slots=lambda f: [
        {"invoice_id": r["id"], "reason": reason}
        for r in _open_invoices(f)
        for reason in DISPUTE_REASONS
    ],
    expect=lambda f, s: _expect_dispute_notify(f, s),
    key=("invoice_id", "reason"),
    needs_tools=("dispute_invoice", "get_invoice", "get_vendor", "send_email"),
)


def _expect_dispute_notify(facts: Facts, slots: Slots) -> dict[str, Any]:
    invoice = facts.invoices[slots["invoice_id"]]
    vendor = facts.vendors[invoice["vendor_id"]]
    return expect(
        [invoice["id"], "disputed", vendor["email"]],
        writes=[
            write("invoices", invoice["id"], status="disputed", dispute_reason=slots["reason"]),
            write("mail", None, to=[vendor["email"]], **{"subject~": invoice["id"]}),
        ],
        forbid=[vendor["iban"]],
    )


family(
    id="pay_and_notify_vendor",
    kind="multi",
    systems=("erp", "mail"),
    summary="Schedule an invoice's payment and e-mail the vendor the payment advice.",
    templates=(
        "Pay {invoice_id} on {date} and send the vendor a payment notice by e-mail.",
        "Schedule {invoice_id} for {date_text}, then email the supplier when to expect the money.",
        "Please book the payment of {invoice_id} on {date} and notify the vendor.",
        "Pay invoice {invoice_id} ({date_text}) and let the vendor's contact know by mail.",
        "Set up payment for {invoice_id} on {date}; also e-mail the vendor a remittance note.",
        "{invoice_id}: schedule it for {date_text} and inform the supplier by e-mail.",
        "Get {invoice_id} paid on {date} and mail the vendor the payment details.",
    ),
    slots=lambda f: [
        {"invoice_id": r["id"], "date": d, "date_text": date_text(d)}
        for r in _open_invoices(f)
        if f.matches_order(r)
        for d in DATES
    ],
    expect=lambda f, s: _expect_pay_notify(f, s),
    key=("invoice_id", "date"),
    needs_tools=("get_invoice", "schedule_payment", "get_vendor", "send_email"),
)


def _expect_pay_notify(facts: Facts, slots: Slots) -> dict[str, Any]:
    invoice = facts.invoices[slots["invoice_id"]]
    vendor = facts.vendors[invoice["vendor_id"]]
    return expect(
        [
            invoice["id"],
            money(invoice["amount"], invoice["currency"]),
            slots["date"],
            vendor["email"],
        ],
        writes=[
            write(
                "payments",
                None,
                invoice_id=invoice["id"],
                amount=invoice["amount"],
                scheduled_date=slots["date"],
            ),
            write("mail", None, to=[vendor["email"]], **{"subject~": invoice["id"]}),
        ],
        forbid=[vendor["iban"]],
    )

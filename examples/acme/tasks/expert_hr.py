"""The expert's scripts for the HR and mail families (see ``expert``)."""

from __future__ import annotations

from typing import Any

from examples.acme.tasks import phrasings_hr as P
from examples.acme.tasks.catalogue import TaskInstance, money
from examples.acme.tasks.expert import (
    _FINAL,
    ExpertError,
    Recorder,
    _get_invoice_or_say_missing,
    solver,
)
from examples.acme.tasks.families_hr import days


def _find_person(rec: Recorder, name: str) -> dict[str, Any] | None:
    """The one employee called ``name``, or a give-up when there is none."""
    found = rec.read(rec.say(P.FIND_PERSON_FIND_EMPLOYEE, n=name), "find_employee", name=name)
    exact = [row for row in found if row["name"].lower() == name.lower()]
    if len(exact) == 1:
        return exact[0]
    rec.conclude(rec.say(P.FIND_PERSON_CONCLUDE, n=name), rec.say(P.FIND_PERSON_ANSWER, n=name))
    return None


def _get_request(rec: Recorder, request_id: str) -> dict[str, Any]:
    return rec.read(
        rec.say(P.GET_REQUEST_GET_LEAVE_REQUEST, r=request_id),
        "get_leave_request",
        request_id=request_id,
    )


# -- lookups ------------------------------------------------------------------------------


@solver("leave_balance")
def _leave_balance(rec: Recorder, inst: TaskInstance) -> None:
    person = _find_person(rec, inst.slots["name"])
    if person is None:
        return
    balance = rec.read(
        rec.say(P.LEAVE_BALANCE_GET_LEAVE_BALANCE, n=person["name"], e=person["id"]),
        "get_leave_balance",
        employee_id=person["id"],
    )
    pending = days(balance["pending_days"])
    note = f" ({pending} more day(s) are pending approval)" if balance["pending_days"] else ""
    rec.conclude(
        rec.say(_FINAL),
        f"{person['name']} has {days(balance['remaining_days'])} days of annual leave left "
        f"in {balance['year']}{note}.",
    )


@solver("manager_of")
def _manager_of(rec: Recorder, inst: TaskInstance) -> None:
    person = _find_person(rec, inst.slots["name"])
    if person is None:
        return
    manager = rec.read(
        rec.say(P.MANAGER_OF_GET_MANAGER, e=person["id"]), "get_manager", employee_id=person["id"]
    )
    rec.conclude(
        rec.say(P.MANAGER_OF_CONCLUDE),
        rec.say(
            P.MANAGER_OF_ANSWER,
            n=person["name"],
            m=manager["name"],
            t=manager["job_title"],
            mail=manager["email"],
        ),
    )


@solver("pending_leave_team")
def _pending_leave_team(rec: Recorder, inst: TaskInstance) -> None:
    person = _find_person(rec, inst.slots["name"])
    if person is None:
        return
    rows = rec.read(
        rec.say(P.PENDING_LEAVE_TEAM_LIST_LEAVE_REQUESTS, e=person["id"]),
        "list_leave_requests",
        manager_id=person["id"],
        status="pending",
    )
    if not rows:
        rec.conclude(
            rec.say(P.PENDING_LEAVE_TEAM_CONCLUDE),
            f"None: no leave request from {person['name']}'s team is waiting for a decision.",
        )
        return
    listed = "; ".join(
        f"{r['id']} — {r['employee_name']}, {r['leave_type']}, {r['start_date']} to "
        f"{r['end_date']} ({days(r['days'])} days)"
        for r in rows
    )
    rec.conclude(
        rec.say(P.PENDING_LEAVE_TEAM_CONCLUDE_2, k=len(rows)),
        f"{person['name']} has {len(rows)} pending leave request(s) to decide: {listed}.",
    )


# -- writes -------------------------------------------------------------------------------


def _approve_if_possible(rec: Recorder, request: dict[str, Any]) -> bool:
    """Check the balance (for annual leave) and approve; False (and an answer) if it is short."""
    if request["leave_type"] == "annual":
        balance = rec.read(
            rec.say(
                P.APPROVE_IF_POSSIBLE_GET_LEAVE_BALANCE,
                d=days(request["days"]),
                e=request["employee_id"],
            ),
            "get_leave_balance",
            employee_id=request["employee_id"],
            year=int(request["start_date"][:4]),
        )
        if request["days"] > balance["remaining_days"]:
            left = days(balance["remaining_days"])
            rec.conclude(
                rec.say(P.APPROVE_IF_POSSIBLE_CONCLUDE, l=left, d=days(request["days"])),
                f"I did not approve {request['id']}: {request['employee_name']} asks for "
                f"{days(request['days'])} days of annual leave but only {left} remain.",
            )
            return False
    rec.read(
        rec.say(P.APPROVE_IF_POSSIBLE_APPROVE_LEAVE_REQUEST, r=request["id"]),
        "approve_leave_request",
        request_id=request["id"],
    )
    return True


@solver("approve_leave")
def _approve_leave(rec: Recorder, inst: TaskInstance) -> None:
    request = _get_request(rec, inst.slots["request_id"])
    if request["status"] != "pending":
        raise ExpertError(f"{inst.uid}: {request['id']} is {request['status']}, not pending")
    if _approve_if_possible(rec, request):
        rec.conclude(
            rec.say(P.APPROVE_LEAVE_CONCLUDE),
            f"Approved {request['id']}: {request['employee_name']}'s {request['leave_type']} "
            f"leave from {request['start_date']} to {request['end_date']} "
            f"({days(request['days'])} days).",
        )


@solver("reject_leave")
def _reject_leave(rec: Recorder, inst: TaskInstance) -> None:
    rid, reason = inst.slots["request_id"], inst.slots["reason"]
    request = rec.read(
        rec.say(P.REJECT_LEAVE_REJECT_LEAVE_REQUEST, r=rid, why=reason),
        "reject_leave_request",
        request_id=rid,
        reason=reason,
    )
    rec.conclude(
        rec.say(P.REJECT_LEAVE_CONCLUDE),
        f"Leave request {rid} from {request['employee_name']} is rejected (reason: {reason}).",
    )


@solver("decide_closed_leave")
def _decide_closed_leave(rec: Recorder, inst: TaskInstance) -> None:
    request = _get_request(rec, inst.slots["request_id"])
    if request["status"] == "pending":
        raise ExpertError(f"{inst.uid}: {request['id']} is still pending")
    note = f" ({request['decision_note']})" if request["decision_note"] else ""
    rec.conclude(
        rec.say(P.DECIDE_CLOSED_LEAVE_CONCLUDE, r=request["id"], s=request["status"]),
        f"I could not {inst.slots['action']} {request['id']}: it was already "
        f"{request['status']}{note}. Only pending requests can be decided.",
    )


@solver("unknown_employee")
def _unknown_employee(rec: Recorder, inst: TaskInstance) -> None:
    person = _find_person(rec, inst.slots["name"])
    if person is not None:
        raise ExpertError(f"{inst.uid}: {person['id']} exists but the task says it does not")


# -- mail ---------------------------------------------------------------------------------


def _send(rec: Recorder, thought: str, to: str, subject: str, body: str) -> dict[str, Any]:
    return rec.read(thought, "send_email", to=to, subject=subject, body=body)


@solver("ask_manager_decision")
def _ask_manager_decision(rec: Recorder, inst: TaskInstance) -> None:
    request = _get_request(rec, inst.slots["request_id"])
    manager = rec.read(
        rec.say(
            P.ASK_MANAGER_DECISION_GET_MANAGER, n=request["employee_name"], e=request["employee_id"]
        ),
        "get_manager",
        employee_id=request["employee_id"],
    )
    # The whole name, as the record holds it: the served model sees it as that record's
    # name token, and a first name split from it would be a fragment no response holds.
    _send(
        rec,
        rec.say(P.ASK_MANAGER_DECISION_THOUGHT, m=manager["name"], a=manager["email"]),
        manager["email"],
        f"Leave request {request['id']} awaits your decision",
        f"Dear {manager['name']},\n\n{request['employee_name']} asked for "
        f"{request['leave_type']} leave from {request['start_date']} to {request['end_date']} "
        f"({days(request['days'])} days), "
        f"request {request['id']}. Could you approve or reject it?\n\nThank you.",
    )
    rec.conclude(
        rec.say(P.ASK_MANAGER_DECISION_CONCLUDE),
        f"I e-mailed {manager['name']} ({manager['email']}) asking for a decision on "
        f"{request['id']} from {request['employee_name']}.",
    )


@solver("approve_and_notify")
def _approve_and_notify(rec: Recorder, inst: TaskInstance) -> None:
    request = _get_request(rec, inst.slots["request_id"])
    if not _approve_if_possible(rec, request):
        raise ExpertError(f"{inst.uid}: {request['id']} cannot be approved")
    found = rec.read(
        rec.say(P.APPROVE_AND_NOTIFY_FIND_EMPLOYEE, n=request["employee_name"]),
        "find_employee",
        name=request["employee_name"],
    )
    person = next(row for row in found if row["id"] == request["employee_id"])
    _send(
        rec,
        rec.say(P.APPROVE_AND_NOTIFY_THOUGHT, n=person["name"]),
        person["email"],
        f"Leave request {request['id']} approved",
        f"Dear {person['name']},\n\nyour {request['leave_type']} leave from "
        f"{request['start_date']} to {request['end_date']} ({days(request['days'])} days) is "
        "approved.\n\nKind regards.",
    )
    rec.conclude(
        rec.say(P.APPROVE_AND_NOTIFY_CONCLUDE),
        f"{request['id']} is approved and {person['name']} was notified at {person['email']}.",
    )


def _vendor(rec: Recorder, vendor_id: str) -> dict[str, Any]:
    return rec.read(rec.say(P.VENDOR_GET_VENDOR, v=vendor_id), "get_vendor", vendor_id=vendor_id)


@solver("dispute_and_notify_vendor")
def _dispute_and_notify_vendor(rec: Recorder, inst: TaskInstance) -> None:
    invoice = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if invoice is None:
        return
    reason = inst.slots["reason"]
    rec.read(
        rec.say(
            P.DISPUTE_AND_NOTIFY_VENDOR_DISPUTE_INVOICE,
            i=invoice["id"],
            s=invoice["status"],
            why=reason,
        ),
        "dispute_invoice",
        invoice_id=invoice["id"],
        reason=reason,
    )
    vendor = _vendor(rec, invoice["vendor_id"])
    _send(
        rec,
        rec.say(P.DISPUTE_AND_NOTIFY_VENDOR_THOUGHT, c=vendor["contact_name"], a=vendor["email"]),
        vendor["email"],
        f"Invoice {invoice['id']} disputed",
        f"Dear {vendor['contact_name']},\n\nwe have disputed invoice {invoice['id']} "
        f"({money(invoice['amount'], invoice['currency'])}) because {reason}. Please send a "
        "corrected invoice or a credit note.\n\nKind regards,\nAcme Accounts Payable",
    )
    rec.conclude(
        rec.say(P.DISPUTE_AND_NOTIFY_VENDOR_CONCLUDE),
        f"{invoice['id']} is now disputed ({reason}), and I e-mailed {vendor['contact_name']} "
        f"of {vendor['name']} at {vendor['email']}.",
    )


@solver("pay_and_notify_vendor")
def _pay_and_notify_vendor(rec: Recorder, inst: TaskInstance) -> None:
    invoice = _get_invoice_or_say_missing(rec, inst.slots["invoice_id"])
    if invoice is None:
        return
    amount = money(invoice["amount"], invoice["currency"])
    payment = rec.read(
        rec.say(
            P.PAY_AND_NOTIFY_VENDOR_SCHEDULE_PAYMENT,
            i=invoice["id"],
            m=amount,
            d=inst.slots["date"],
        ),
        "schedule_payment",
        invoice_id=invoice["id"],
        amount=invoice["amount"],
        date=inst.slots["date"],
    )
    vendor = _vendor(rec, invoice["vendor_id"])
    _send(
        rec,
        rec.say(P.PAY_AND_NOTIFY_VENDOR_THOUGHT, a=vendor["email"], c=vendor["contact_name"]),
        vendor["email"],
        f"Payment of invoice {invoice['id']}",
        f"Dear {vendor['contact_name']},\n\nwe have scheduled payment {payment['id']} of "
        f"{amount} for invoice {invoice['id']} on {payment['scheduled_date']}.\n\n"
        "Kind regards,\nAcme Accounts Payable",
    )
    rec.conclude(
        rec.say(P.PAY_AND_NOTIFY_VENDOR_CONCLUDE),
        f"Payment {payment['id']} of {amount} for {invoice['id']} is scheduled on "
        f"{payment['scheduled_date']}, and {vendor['contact_name']} was notified at "
        f"{vendor['email']}.",
    )

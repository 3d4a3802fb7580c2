"""Acme's worker settings: the defaults a worker takes with ``UMIQ_WORLD=acme`` (the default).

Plain data, no imports of umiq: ``worker.settings`` reads them through the Acme world
(``examples.acme.world``) when nothing overrides them (``UMIQ_DEPARTMENTS``,
``UMIQ_MINIMIZATION``, ``UMIQ_SCOPE``).
"""

from __future__ import annotations

from typing import Any

#: The company's own mail domain (Acme's employees).
COMPANY_DOMAINS: list[str] = ["acme-corp.nl"]
#: The domains finance mails besides the company's: its vendors' (Acme's vendor master).
VENDOR_DOMAINS: list[str] = [
    "nordlicht-buero.de",
    "atelier-mercier.fr",
    "vandijk-logistics.nl",
    "ferraro-componenti.it",
    "iberia-suministros.es",
    "brouwer-peeters.be",
    "alpenwerk.at",
    "lindqvist-data.se",
    "thames-office.co.uk",
    "kowalski-druk.pl",
]


def outbound_mail_rules(domains: list[str]) -> list[dict[str, Any]]:
    """Mail to a recipient outside ``domains``, or carrying bank accounts, card numbers or
    national ids (as sent: tokens resolved), waits for a human (an injected instruction
    could ask the agent to send them)."""
    return [
        {
            "tool": "mail:send_email",
            "when": [["to", "domain not in", list(domains)]],
            "reason": "mail to a recipient outside the company needs approval",
        },
        *(
            {
                "tool": "mail:send_email",
                "when": [[field, "carries", ["IBAN", "CARD", "NATIONAL_ID"]]],
                "reason": "mail carrying bank, card or national-id numbers needs approval",
            }
            for field in ("body", "subject")
        ),
    ]


#: Payment and credit-note limits per currency (about 50,000 and 10,000 EUR); a currency
#: not listed, or a call whose currency is unknown, waits for a human.
PAYMENT_LIMITS: dict[str, float] = {
    "EUR": 50000, "SEK": 550000, "GBP": 43000, "PLN": 215000, "USD": 54000, "CHF": 47000,
}  # fmt: skip
CREDIT_NOTE_LIMITS: dict[str, float] = {k: v / 5 for k, v in PAYMENT_LIMITS.items()}


def departments() -> dict[str, dict[str, Any]]:
    """Finance works in the ERP, HR in the HR database; both mail (``DepartmentSettings``
    fields, as plain data)."""
    return {
        "finance": {
            "mode": "auto",
            "tools": ["erp:*", "mail:*"],
            "may_write": True,
            "approvals": [
                {
                    "tool": "schedule_payment",
                    "when": [["amount", ">", dict(PAYMENT_LIMITS)]],
                    "reason": "payments above 50,000 EUR (or its equivalent) need a second person",
                    "distinct_approvers": True,
                },
                {
                    "tool": "create_credit_note",
                    "when": [["amount", ">", dict(CREDIT_NOTE_LIMITS)]],
                    "reason": "credit notes above 10,000 EUR (or its equivalent) need a second "
                    "person",
                    "distinct_approvers": True,
                },
                *outbound_mail_rules([*COMPANY_DOMAINS, *VENDOR_DOMAINS]),
            ],
        },
        "hr": {
            "mode": "auto",
            "tools": ["hr:*", "mail:*"],
            "may_write": True,
            "approvals": outbound_mail_rules(COMPANY_DOMAINS),
        },
    }


#: What the model may see of each tool's response (allow-list projection, DESIGN §6);
#: every value it sees is still pseudonymized.
MINIMIZATION: dict[str, list[str] | None] = {
    "erp:get_vendor": ["id", "name", "country", "contact_name", "email"],
    "erp:list_vendors": ["[].id", "[].name", "[].country"],
    "hr:get_employee": [
        "id",
        "name",
        "email",
        "hire_date",
        "job_title",
        "department",
        "manager_id",
    ],
    "hr:get_manager": ["id", "name", "email", "job_title", "department"],
    # Minimization is deny-by-default: a tool no rule names shows no field. Acme's other
    # tools (invoices, payments, leave requests, mail) carry no personal data beyond what
    # the detector tokenizes, so they are kept whole, explicitly, by this last rule.
    "*": None,
}


#: The words of a request that ask for each write tool (regular expressions matched at a
#: word start, case-insensitive): a write the request does not ask for waits for a human.
SCOPE: dict[str, list[str]] = {
    "schedule_payment": ["pay", "paid", "schedul"],
    "dispute_invoice": ["disput"],
    "create_credit_note": ["credit"],
    "approve_leave_request": ["approv", "grant", "sign\\s+off"],
    "reject_leave_request": ["reject", "declin", "turn\\s+down", "refus", "deny"],
    "send_email": [
        "e-?mail", "mail", "notif", "tell", "inform", "writ", "remind", "nudge", "message",
        "let\\b[^.;]{0,60}\\bknow", "send",
    ],
}  # fmt: skip


def settings() -> dict[str, Any]:
    """The worker settings Acme sets by default: departments, minimization and scope."""
    return {
        "departments": departments(),
        "minimization": dict(MINIMIZATION),
        "scope": dict(SCOPE),
    }

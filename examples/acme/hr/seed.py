"""Deterministic seed data for the Acme HR database.

The organisation and the leave scenario are fixed (who reports to whom, which requests
are pending, approved or rejected, whose balance is too small for the pending request);
the seed varies the personal details — phone numbers, salary accounts, national ids,
birth and hire dates, salaries — and the balances of people outside the scenario. Every
personal detail is well formed: E.164 phone numbers, IBANs that pass mod-97, and Dutch
citizen service numbers (BSN) that pass the 11-test, so that minimization policies have
something real to catch.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import string
import unicodedata

from examples.acme.erp.seed import iban

YEAR = 2025
EMAIL_DOMAIN = "acme-corp.nl"

DEPARTMENTS = [
    ("EXE", "Executive Office", "CC-100"),
    ("FIN", "Finance", "CC-200"),
    ("HR", "Human Resources", "CC-300"),
    ("PRC", "Procurement", "CC-400"),
    ("IT", "Information Technology", "CC-500"),
    ("SAL", "Sales", "CC-600"),
    ("OPS", "Operations", "CC-700"),
]

# id, name, job title, department, manager, country of residence (phone and bank), level
EMPLOYEES = [
    ("E-1001", "Marieke van den Berg", "Chief Executive Officer", "EXE", None, "NL", "exec"),
    ("E-1002", "Pieter Jansen", "Chief Financial Officer", "FIN", "E-1001", "NL", "exec"),
    ("E-1003", "Sophie de Vries", "HR Director", "HR", "E-1001", "NL", "head"),
    ("E-1004", "Daan Visser", "Head of Procurement", "PRC", "E-1001", "NL", "head"),
    ("E-1005", "Lars Hoffmann", "Head of IT", "IT", "E-1001", "DE", "head"),
    ("E-1006", "Emma Peeters", "Sales Director", "SAL", "E-1001", "BE", "head"),
    ("E-1007", "Thomas Bakker", "Operations Manager", "OPS", "E-1001", "NL", "head"),
    ("E-1008", "Fleur Smit", "Accounts Payable Lead", "FIN", "E-1002", "NL", "lead"),
    ("E-1009", "Ahmed El Amrani", "Accounts Payable Clerk", "FIN", "E-1008", "NL", "staff"),
    ("E-1010", "Lotte Meijer", "Accounts Payable Clerk", "FIN", "E-1008", "NL", "staff"),
    ("E-1011", "Jan-Willem de Boer", "Controller", "FIN", "E-1002", "NL", "lead"),
    ("E-1012", "Nina Schulz", "Treasury Analyst", "FIN", "E-1002", "DE", "staff"),
    ("E-1013", "Anouk Mulder", "HR Business Partner", "HR", "E-1003", "NL", "staff"),
    ("E-1014", "Ruben de Graaf", "Payroll Specialist", "HR", "E-1003", "NL", "staff"),
    ("E-1015", "Yara Bos", "Recruiter", "HR", "E-1003", "NL", "staff"),
    ("E-1016", "Kevin Dekker", "Buyer", "PRC", "E-1004", "NL", "staff"),
    ("E-1017", "Sara Vos", "Buyer", "PRC", "E-1004", "NL", "staff"),
    ("E-1018", "Mohamed Yilmaz", "Category Manager", "PRC", "E-1004", "NL", "lead"),
    ("E-1019", "Bram Hendriks", "Systems Engineer", "IT", "E-1005", "NL", "staff"),
    ("E-1020", "Julia Koch", "Data Engineer", "IT", "E-1005", "DE", "staff"),
    ("E-1021", "Milan Willems", "Service Desk Analyst", "IT", "E-1005", "BE", "staff"),
    ("E-1022", "Iris van Dijk", "Account Manager", "SAL", "E-1006", "NL", "staff"),
    ("E-1023", "Sem Brouwer", "Account Manager", "SAL", "E-1006", "NL", "staff"),
    ("E-1024", "Noor Claes", "Sales Support Specialist", "SAL", "E-1006", "BE", "staff"),
    ("E-1025", "Jesse van Leeuwen", "Warehouse Lead", "OPS", "E-1007", "NL", "lead"),
    ("E-1026", "Tim Kok", "Warehouse Operative", "OPS", "E-1025", "NL", "staff"),
    ("E-1027", "Eva Dijkstra", "Logistics Planner", "OPS", "E-1007", "NL", "staff"),
    ("E-1028", "Finn Smits", "Warehouse Operative", "OPS", "E-1025", "NL", "staff"),
    ("E-1029", "Lisa de Jong", "Executive Assistant", "EXE", "E-1001", "NL", "staff"),
    ("E-1030", "Hanna Wagner", "IT Security Officer", "IT", "E-1005", "DE", "lead"),
]

# id, employee, type, first day, last day, reason, status, decision note
LEAVE_REQUESTS = [
    ("LR-0001", "E-1009", "annual", "2025-03-17", "2025-03-21", "Family visit in Rabat",
     "pending", None),
    ("LR-0002", "E-1010", "annual", "2025-04-14", "2025-04-18", "Spring holiday",
     "pending", None),
    ("LR-0003", "E-1019", "annual", "2025-05-05", "2025-05-09", "Holiday",
     "approved", "Enjoy!"),
    ("LR-0004", "E-1022", "annual", "2025-03-24", "2025-03-28", "Skiing trip",
     "pending", None),
    ("LR-0005", "E-1026", "unpaid", "2025-06-02", "2025-06-13", "Extended travel",
     "pending", None),
    ("LR-0006", "E-1013", "special", "2025-03-10", "2025-03-10", "Moving house",
     "approved", "Approved under the moving-day rule."),
    ("LR-0007", "E-1016", "annual", "2025-02-17", "2025-02-21", "Winter holiday",
     "rejected", "Supplier audit that week; please pick another."),
    ("LR-0008", "E-1027", "parental", "2025-07-01", "2025-07-25", "Parental leave",
     "pending", None),
    ("LR-0009", "E-1020", "annual", "2025-08-04", "2025-08-15", "Summer holiday",
     "pending", None),
    ("LR-0010", "E-1012", "annual", "2025-03-03", "2025-03-05", "Long weekend",
     "approved", None),
    ("LR-0011", "E-1024", "annual", "2025-04-22", "2025-04-25", "Easter break",
     "rejected", "Trade fair that week."),
    ("LR-0012", "E-1028", "annual", "2025-05-26", "2025-05-30", "Holiday",
     "pending", None),
    ("LR-0013", "E-1002", "annual", "2025-07-14", "2025-07-25", "Summer holiday",
     "pending", None),
]  # fmt: skip

# balances the scenario depends on: employee -> (entitled, carried over, taken before seed)
FIXED_BALANCES = {
    "E-1022": (25.0, 0.0, 22.0),  # 3 days left: LR-0004 (5 days) cannot be approved
    "E-1009": (25.0, 2.0, 4.0),
    "E-1010": (25.0, 0.0, 6.0),
}

_SALARY = {"exec": (150, 195), "head": (95, 135), "lead": (64, 88), "staff": (38, 62)}
_NL_BANKS = ["ABNA", "INGB", "RABO", "SNSB", "TRIO", "ASNB", "KNAB", "BUNQ"]
_BBAN_DIGITS = {"NL": 10, "DE": 18, "BE": 12}
# E.164 mobile prefixes and how many digits follow
_MOBILE = {"NL": ("+316", 8), "DE": ("+4915", 9), "BE": ("+3247", 7)}


def bsn(rng: random.Random) -> str:
    """A Dutch citizen service number that passes the 11-test (first digit not 0)."""
    while True:
        digits = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(7)]
        check = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True)) % 11
        if check < 10:
            return "".join(map(str, digits)) + str(check)


def bsn_is_valid(value: str) -> bool:
    """Whether ``value`` is nine digits passing the BSN 11-test."""
    if len(value) != 9 or not value.isdigit():
        return False
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    return int(value) > 0 and sum(int(d) * w for d, w in zip(value, weights, strict=True)) % 11 == 0


def working_days(first: dt.date, last: dt.date) -> int:
    """Monday-to-Friday days from ``first`` to ``last``, both included."""
    days = (first + dt.timedelta(days=n) for n in range((last - first).days + 1))
    return sum(1 for day in days if day.weekday() < 5)


def email_of(name: str) -> str:
    """``first.last@acme-corp.nl`` in plain ASCII (``Jan-Willem de Boer`` → janwillem.deboer)."""
    first, _, last = name.partition(" ")
    return f"{_ascii(first)}.{_ascii(last)}@{EMAIL_DOMAIN}"


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _iban(rng: random.Random, country: str) -> str:
    bank = rng.choice(_NL_BANKS) if country == "NL" else ""
    digits = "".join(rng.choice(string.digits) for _ in range(_BBAN_DIGITS[country]))
    return iban(country, bank + digits)


def _phone(rng: random.Random, country: str) -> str:
    prefix, count = _MOBILE[country]
    return prefix + "".join(rng.choice(string.digits) for _ in range(count))


def seed(conn: sqlite3.Connection, seed: int = 0) -> None:
    """Insert the Acme HR world for ``seed`` into empty tables (the caller commits)."""
    rng = random.Random(f"acme-hr:{seed}")
    conn.executemany("INSERT INTO department VALUES (?, ?, ?)", DEPARTMENTS)
    national_ids: set[str] = set()
    for eid, name, title, dept, manager, country, level in EMPLOYEES:
        national_id = bsn(rng)
        while national_id in national_ids:
            national_id = bsn(rng)
        national_ids.add(national_id)
        born = dt.date(rng.randint(1962, 2000), rng.randint(1, 12), rng.randint(1, 28))
        hired = dt.date(rng.randint(max(born.year + 21, 2005), 2024), rng.randint(1, 12), 1)
        low, high = _SALARY[level]
        conn.execute(
            "INSERT INTO employee (id, name, email, phone, iban, national_id, birth_date, "
            "hire_date, job_title, department_id, manager_id, salary) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                eid, name, email_of(name), _phone(rng, country), _iban(rng, country),
                national_id, born.isoformat(), hired.isoformat(), title, dept, manager,
                rng.randint(low, high) * 1000,
            ),
        )  # fmt: skip

    approved: dict[str, float] = {}
    for rid, eid, kind, first, last, reason, status, note in LEAVE_REQUESTS:
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        days = working_days(start, end)
        manager = next(e[4] for e in EMPLOYEES if e[0] == eid)
        conn.execute(
            "INSERT INTO leave_request (id, employee_id, leave_type, start_date, end_date, "
            "days, reason, status, submitted_on, decided_by, decision_note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rid, eid, kind, first, last, days, reason, status,
                (start - dt.timedelta(days=rng.randint(10, 40))).isoformat(),
                manager if status != "pending" else None, note,
            ),
        )  # fmt: skip
        if kind == "annual" and status == "approved":
            approved[eid] = approved.get(eid, 0.0) + days

    for eid, *_ in EMPLOYEES:
        entitled, carried, taken = FIXED_BALANCES.get(
            eid, (rng.choice([20.0, 25.0, 25.0, 27.0]), float(rng.randint(0, 5)), 0.0)
        )
        if eid not in FIXED_BALANCES:
            taken = float(rng.randint(0, 6))
        conn.execute(
            "INSERT INTO leave_balance (employee_id, year, entitled_days, carried_over_days, "
            "taken_days) VALUES (?, ?, ?, ?, ?)",
            (eid, YEAR, entitled, carried, taken + approved.get(eid, 0.0)),
        )

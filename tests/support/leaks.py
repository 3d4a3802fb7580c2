"""Finding raw personal data: the Acme world's values, and every text they might land in.

``acme_personal_values`` reads the seeded systems (the same files the services serve)
and returns every raw personal value with what it is. ``search`` looks for them in
texts, after decoding what a store may have done to them: JSON escapes (``\\u00e9``),
JSON nested in JSON, Postgres ``bytea`` hex, and case; it also tries URL-encoded forms
and phone numbers without their ``+``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

EMPLOYEE_FIELDS = ("name", "email", "phone", "iban", "national_id", "birth_date")
VENDOR_FIELDS = ("iban", "contact_name", "email")


def _rows(path: Path, sql: str) -> list[sqlite3.Row]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql).fetchall()


def acme_personal_values(data_dir: Path) -> dict[str, str]:
    """Every raw personal value of the seeded Acme world → what it is (``E-1009 email``)."""
    values: dict[str, str] = {}
    employees = _rows(data_dir / "hr.sqlite3", "SELECT * FROM employee ORDER BY id")
    for row in employees:
        for name in EMPLOYEE_FIELDS:
            values.setdefault(str(row[name]), f"employee {row['id']} {name}")
    for row in _rows(data_dir / "erp.sqlite3", "SELECT * FROM vendor ORDER BY id"):
        for name in VENDOR_FIELDS:
            values.setdefault(str(row[name]), f"vendor {row['id']} {name}")
    return values


def acme_people(data_dir: Path) -> list[str]:
    """The full names of the people in the Acme records: employees and vendor contacts."""
    employees = _rows(data_dir / "hr.sqlite3", "SELECT name FROM employee ORDER BY id")
    contacts = _rows(data_dir / "erp.sqlite3", "SELECT contact_name FROM vendor ORDER BY id")
    return [r[0] for r in employees] + [r[0] for r in contacts]


def variants(value: str) -> set[str]:
    """The forms in which ``value`` would still be the raw value, casefolded."""
    forms = {value, quote(value), quote_plus(value), quote(value, safe="")}
    if value.startswith("+") and value[1:].isdigit():
        forms.add(value[1:])
    return {form.casefold() for form in forms}


def _decoded(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        text = value
        if text.startswith("\\x") and len(text) % 2 == 0:
            try:
                text = bytes.fromhex(text[2:]).decode("utf-8", errors="replace")
            except ValueError:
                return
            yield text
        stripped = text.strip()
        if stripped[:1] in ("{", "[", '"'):
            try:
                inner = json.loads(stripped)
            except json.JSONDecodeError:
                return
            yield from _decoded(inner)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _decoded(key)
            yield from _decoded(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _decoded(item)
    elif value is not None:
        yield str(value)


def texts(text: str) -> list[str]:
    """``text`` and every string decoded out of it, casefolded."""
    return [t.casefold() for t in _decoded(text)]


@dataclass(frozen=True)
class Leak:
    """A raw value found where it must not be."""

    value: str
    what: str
    where: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.what} {self.value!r} in {self.where}: …{self.excerpt}…"


def search(values: dict[str, str], haystack: Iterable[tuple[str, str]]) -> list[Leak]:
    """Every value of ``values`` found in ``haystack`` (``(where, text)`` pairs)."""
    forms = {value: variants(value) for value in values}
    leaks = []
    for where, text in haystack:
        decoded = texts(text)
        for value, what in values.items():
            for form in forms[value]:
                hit = next((t for t in decoded if form in t), None)
                if hit is not None:
                    at = hit.index(form)
                    excerpt = hit[max(0, at - 60) : at + len(form) + 60]
                    leaks.append(Leak(value, what, where, excerpt))
                    break
    return leaks


def psycopg_url(sqlalchemy_url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, _, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


def database_rows(url: str) -> list[tuple[str, str]]:
    """Every row of every table in the ``public`` schema as JSON text, ``(table, row)``."""
    import psycopg
    from psycopg import sql

    rows = []
    with psycopg.connect(psycopg_url(url)) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        for table in tables:
            query = sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(table))
            rows.extend((table, r[0]) for r in conn.execute(query))
    return rows

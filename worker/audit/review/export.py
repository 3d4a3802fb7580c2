"""Exports of the chain: every record in seq order, read in one snapshot, as JSONL or CSV
with the values as stored (sealed ones stay sealed)."""

from __future__ import annotations

import csv
import heapq
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Connection, Engine, Select, select

from worker.audit._types import CanonicalJSON
from worker.audit.chain import iso_utc
from worker.audit.db import read_snapshot
from worker.audit.tables import CHAIN_TABLES, Task

EXPORT_FORMATS = ("jsonl", "csv")

_PAGE = 1000
_TIME_COLUMN = {
    "task": "received_at",
    "step": "created_at",
    "tool_call": "created_at",
    "rollout_change": "created_at",
}
#: Chain tables that name their department themselves (the others by their task's).
_OWN_DEPARTMENT = ("task", "rollout_change")
_LEAD = ("seq", "table", "task_id", "department")
_TAIL = ("prev_hash", "hash")


def parse_time(text: str) -> datetime:
    """An ISO-8601 date or time as an aware datetime; one without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date or time (e.g. 2024-05-01T12:00Z)"
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def export_columns() -> list[str]:
    """The columns of an export, one per field of any chain table: the CSV header."""
    names: list[str] = list(_LEAD)
    for model in CHAIN_TABLES.values():
        for column in model.__table__.columns:  # type: ignore[attr-defined]
            if column.name not in names and column.name not in _TAIL:
                names.append(column.name)
    return [*names, *_TAIL]


def _json_columns() -> frozenset[str]:
    return frozenset(
        column.name
        for model in CHAIN_TABLES.values()
        for column in model.__table__.columns  # type: ignore[attr-defined]
        if isinstance(column.type, CanonicalJSON)
    )


def _export_query(
    name: str, department: str | None, since: datetime | None, until: datetime | None
) -> Select[Any]:
    table = CHAIN_TABLES[name].__table__  # type: ignore[attr-defined]
    task = Task.__table__  # type: ignore[attr-defined]
    if name in _OWN_DEPARTMENT:
        query, dept = select(table), table.c.department
    else:
        dept = task.c.department
        query = select(table, dept.label("department")).select_from(
            table.outerjoin(task, task.c.task_id == table.c.task_id)
        )
    when = table.c[_TIME_COLUMN[name]]
    if department is not None:
        query = query.where(dept == department)
    if since is not None:  # the times are fixed-width UTC text: text order is time order
        query = query.where(when >= since)
    if until is not None:
        query = query.where(when < until)
    return query.order_by(table.c.seq)


def _export_rows(
    conn: Connection, order: int, name: str, query: Select[Any]
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    seq_column = CHAIN_TABLES[name].__table__.c.seq  # type: ignore[attr-defined]
    after: int | None = None
    while True:
        page = query if after is None else query.where(seq_column > after)
        rows = conn.execute(page.limit(_PAGE)).mappings().all()
        for row in rows:
            record: dict[str, Any] = {"seq": row["seq"], "table": name}
            for key, value in row.items():
                record[key] = iso_utc(value) if isinstance(value, datetime) else value
            yield row["seq"], order, record
        if len(rows) < _PAGE:
            return
        after = rows[-1]["seq"]


def export_records(
    engine: Engine,
    *,
    department: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Every chain record in seq order, with its task's department, read in one snapshot.

    ``since`` is inclusive and ``until`` exclusive, on the record's own time (a task's
    ``received_at``, a step's or tool call's ``created_at``). Values are as stored, sealed
    ones included, so each record's hash can be recomputed from the export with
    ``worker.audit.row_hash`` over its table's content columns.
    """
    columns = export_columns()
    with read_snapshot(engine) as conn:
        streams = [
            _export_rows(conn, order, name, _export_query(name, department, since, until))
            for order, name in enumerate(CHAIN_TABLES)
        ]
        for _seq, _order, record in heapq.merge(*streams, key=lambda item: item[:2]):
            yield {name: record[name] for name in columns if name in record}


def write_jsonl(records: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """Write one JSON object per line; return how many."""
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def write_csv(records: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """Write a CSV with ``export_columns()`` as header; JSON fields as JSON text. Return rows."""
    json_columns = _json_columns()
    writer = csv.DictWriter(out, fieldnames=export_columns(), lineterminator="\n")
    writer.writeheader()
    count = 0
    for record in records:
        row: dict[str, Any] = {}
        for name, value in record.items():
            if name in json_columns:
                row[name] = json.dumps(value, ensure_ascii=False, sort_keys=True)
            elif value is None:
                row[name] = ""
            elif isinstance(value, bool):
                row[name] = "true" if value else "false"
            else:
                row[name] = value
        writer.writerow(row)
        count += 1
    return count

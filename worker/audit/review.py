"""Reviewing the log: a task's decision trace, recent tasks, and exports of the chain.

The queries read, the formatting is pure: ``trace_as_dict`` and ``render_trace`` turn a
``Trace`` into JSON-ready data and into ``rich`` renderables, ``write_jsonl`` and
``write_csv`` turn exported records into files.

Sealed values (``{"$sealed": {...}}``, see ``AuditLog.unseal``) stay sealed unless the
caller opens them: ``open_trace`` opens a trace's records with ``AuditLog.unseal``, and
``conceal`` shows whatever is still sealed as ``«sealed»``. Exports never open them.
"""

from __future__ import annotations

import csv
import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection, Engine, Select, func, select

from worker.audit._types import CanonicalJSON
from worker.audit.chain import iso_utc
from worker.audit.db import read_snapshot
from worker.audit.log import AuditLog
from worker.audit.records import StepRecord, TaskRecord, ToolCallRecord
from worker.audit.requester import shown
from worker.audit.tables import CHAIN_TABLES, Step, Task
from worker.errors import AuditError

SEALED_KEY = "$sealed"
"""The one key of a sealed JSON value."""

SEALED = "«sealed»"
"""What a sealed value is shown as when it is not opened."""

EXPORT_FORMATS = ("jsonl", "csv")

Show = Callable[[Any], Any]
"""How values are shown: ``conceal``, or ``reveal`` bound to an opener."""

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


# -- sealed values (pure) ---------------------------------------------------------------


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed envelope ``{"$sealed": {...}}``."""
    return isinstance(value, Mapping) and len(value) == 1 and SEALED_KEY in value


def conceal(value: Any) -> Any:
    """``value`` with every sealed envelope in it replaced by ``«sealed»``."""
    return _walk(value, lambda _: SEALED)


def reveal(value: Any, unseal: Callable[[Any], Any]) -> Any:
    """``value`` with every sealed envelope in it replaced by ``unseal(envelope)``."""
    return _walk(value, unseal)


def _walk(value: Any, on_sealed: Callable[[Any], Any]) -> Any:
    if is_sealed(value):
        return on_sealed(value)
    if isinstance(value, Mapping):
        return {key: _walk(item, on_sealed) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, on_sealed) for item in value]
    return value


def parse_time(text: str) -> datetime:
    """An ISO-8601 date or time as an aware datetime; one without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date or time (e.g. 2024-05-01T12:00Z)"
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# -- one task's trace -------------------------------------------------------------------

Entry = StepRecord | ToolCallRecord


@dataclass(frozen=True)
class Trace:
    """Everything the log holds about one task: the task row and its links in seq order."""

    task_id: str
    task: TaskRecord | None
    entries: tuple[Entry, ...]

    @property
    def outcome(self) -> StepRecord | None:
        """The step that ended the task (``outcome`` or ``rejected``), if it ended."""
        return next(
            (
                e
                for e in reversed(self.entries)
                if isinstance(e, StepRecord) and e.kind in ("outcome", "rejected")
            ),
            None,
        )


def load_trace(log: AuditLog, task_id: str) -> Trace:
    """The trace of ``task_id``; ``AuditError`` when the log has nothing about it."""
    task = log.task(task_id)
    entries: list[Entry] = [*log.steps(task_id), *log.tool_calls(task_id)]
    if task is None and not entries:
        raise AuditError(f"the audit log has no task {task_id!r}")
    return Trace(task_id, task, tuple(sorted(entries, key=lambda e: e.seq)))


def open_trace(trace: Trace, unseal: Callable[[Any], Any]) -> Trace:
    """``trace`` with its sealed values opened by ``unseal`` (``AuditLog.unseal``).

    Steps and tool calls go to ``unseal`` as records, so that each envelope is opened only
    as the field of the row it sits in; the task's context goes as a plain value.
    """
    task = trace.task
    if task is not None:
        task = replace(task, context=unseal(task.context))
    return replace(trace, task=task, entries=tuple(unseal(list(trace.entries))))


def _record_dict(record: TaskRecord | Entry, show: Show) -> dict[str, Any]:
    table = {TaskRecord: "task", StepRecord: "step", ToolCallRecord: "tool_call"}[type(record)]
    out: dict[str, Any] = {"table": table}
    for name, value in record.as_dict().items():
        out[name] = iso_utc(value) if isinstance(value, datetime) else show(value)
    return out


def trace_as_dict(trace: Trace, show: Show = conceal) -> dict[str, Any]:
    """``trace`` as JSON-ready data, every value passed through ``show``."""
    ending = trace.outcome
    outcome = None
    if ending is not None:
        details = show(ending.details)
        if ending.kind == "rejected":
            outcome = {"outcome": "rejected", "reason": show(ending.output)}
        elif isinstance(details, Mapping):
            outcome = {"outcome": details.get("outcome"), "reason": details.get("reason", "")}
        else:
            outcome = {"outcome": details, "reason": ""}
    return {
        "task_id": trace.task_id,
        "task": None if trace.task is None else _record_dict(trace.task, show),
        "entries": [_record_dict(entry, show) for entry in trace.entries],
        "outcome": outcome,
    }


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _describe(entry: Mapping[str, Any]) -> tuple[str, Text]:
    """What an entry of ``trace_as_dict`` is, and its content, for the console."""
    if entry["table"] == "tool_call":
        what = f"tool call {entry['tool']} ({entry['effect']})"
        body = Text()
        body.append("request  ", style="dim").append(_json_text(entry["request"]) + "\n")
        body.append("response ", style="dim").append(_json_text(entry["response"]) + "\n")
        if entry["ok"]:
            body.append("ok", style="green")
        else:
            body.append(f"error: {entry['error']}", style="red")
        body.append(f"  key {entry['idempotency_key']}", style="dim")
        return what, body

    kind, details = entry["kind"], entry["details"]
    what = kind if not entry.get("role") or entry["role"] == kind else f"{kind} ({entry['role']})"
    body = Text()
    if kind == "policy" and isinstance(details, Mapping):
        allowed = details.get("allowed")
        what = f"policy {details.get('policy', '')}".rstrip()
        body.append("allowed" if allowed else "denied", style="green" if allowed else "red")
        if details.get("tool"):
            body.append(f" {details['tool']}")
        reasons = details.get("reasons") or []
        for reason in reasons if isinstance(reasons, list) else [reasons]:
            body.append("\n- ").append(str(reason))
        return what, body
    if kind == "outcome" and isinstance(details, Mapping):
        body.append(f"{details.get('outcome')}: {details.get('reason', '')}", style="bold")
        if entry["output"]:
            body.append("\n").append(str(entry["output"]))
        return what, body

    body.append(str(entry["output"]))
    shown = dict(details) if isinstance(details, Mapping) else {"details": details}
    if shown:
        body.append("\n" + _json_text(shown), style="dim")
    facts = []
    if entry.get("prompt_digest"):
        facts.append(f"prompt sha256 {entry['prompt_digest'][:16]}…")
    if entry.get("latency_ms") is not None:
        facts.append(f"{entry['latency_ms']} ms")
    if entry.get("model"):
        facts.append(f"model {entry['model']}")
    if entry.get("adapter"):
        facts.append(f"adapter {entry['adapter']}")
    if facts:
        body.append("\n" + " · ".join(facts), style="dim")
    return what, body


def render_trace(data: Mapping[str, Any]) -> RenderableType:
    """A ``trace_as_dict`` result for the console: the task, then every link in seq order."""
    task = data["task"]
    head = Text()
    if task is None:
        head.append("no task row (the message was refused before it became a task)", style="dim")
    else:
        head.append(f"{task['department']}", style="bold").append(
            f" · requested by {shown(task['requested_by'], task.get('context'))}"
            f" · received {task['received_at']}"
            f" · seq={task['seq']}\n"
        )
        head.append(str(task["query"]))
        if task["context"]:
            head.append("\ncontext " + _json_text(task["context"]), style="dim")
    table = Table(show_lines=True, expand=True)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("what", no_wrap=True)
    table.add_column("content", ratio=1)
    for entry in data["entries"]:
        what, body = _describe(entry)
        step = entry["index"] if entry["table"] == "step" else entry["step"]
        table.add_row(str(entry["seq"]), str(step), Text(what), body)
    outcome = data["outcome"]
    ending = Text("open: no outcome recorded yet", style="yellow")
    if outcome is not None:
        ending = Text(f"outcome {outcome['outcome']}: {outcome['reason']}", style="bold")
    return Group(
        Panel(head, title=Text(f"task {data['task_id']}"), title_align="left"), table, ending
    )


# -- recent tasks -----------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSummary:
    """One line of ``umiq audit tasks``."""

    seq: int
    task_id: str
    department: str
    requested_by: str
    received_at: datetime
    outcome: str
    """``answered``, ``gave_up``, …, ``rejected``, or ``open`` while it has no outcome."""
    reason: str
    links: int
    """Steps and tool calls recorded for the task."""

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "received_at": iso_utc(self.received_at)}


def list_tasks(
    engine: Engine, *, department: str | None = None, limit: int = 20
) -> list[TaskSummary]:
    """The ``limit`` most recent tasks (of ``department``), newest first, with their outcome."""
    task = Task.__table__  # type: ignore[attr-defined]
    step = Step.__table__  # type: ignore[attr-defined]
    query = select(task).order_by(task.c.seq.desc()).limit(limit)
    if department is not None:
        query = query.where(task.c.department == department)
    with read_snapshot(engine) as conn:
        tasks = conn.execute(query).mappings().all()
        ids = [t["task_id"] for t in tasks]
        endings = conn.execute(
            select(step.c.task_id, step.c.kind, step.c.output, step.c.details)
            .where(step.c.task_id.in_(ids), step.c.kind.in_(("outcome", "rejected")))
            .order_by(step.c.seq)
        ).all()
        links: dict[str, int] = {}
        for model in (CHAIN_TABLES["step"], CHAIN_TABLES["tool_call"]):
            table = model.__table__  # type: ignore[attr-defined]
            for task_id, count in conn.execute(
                select(table.c.task_id, func.count())
                .where(table.c.task_id.in_(ids))
                .group_by(table.c.task_id)
            ):
                links[task_id] = links.get(task_id, 0) + count
    ended: dict[str, tuple[str, str]] = {}
    for task_id, kind, output, details in endings:  # by seq: the last ending wins
        details = conceal(details)
        if kind == "rejected":
            ended[task_id] = ("rejected", str(conceal(output)))
        elif isinstance(details, Mapping):
            ended[task_id] = (str(details.get("outcome")), str(details.get("reason", "")))
        else:
            ended[task_id] = (SEALED, "")
    return [
        TaskSummary(
            seq=t["seq"],
            task_id=t["task_id"],
            department=t["department"],
            requested_by=t["requested_by"],
            received_at=t["received_at"],
            outcome=ended.get(t["task_id"], ("open", ""))[0],
            reason=ended.get(t["task_id"], ("open", ""))[1],
            links=links.get(t["task_id"], 0),
        )
        for t in tasks
    ]


def tasks_table(summaries: Iterable[TaskSummary]) -> Table:
    """Recent tasks for the console."""
    table = Table()
    for name, justify in (
        ("seq", "right"),
        ("task", "left"),
        ("department", "left"),
        ("requested by", "left"),
        ("received", "left"),
        ("outcome", "left"),
        ("reason", "left"),
        ("links", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=name in ("seq", "received"))  # type: ignore[arg-type]
    for s in summaries:
        table.add_row(
            str(s.seq),
            Text(s.task_id),
            Text(s.department),
            Text(s.requested_by),
            s.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            Text(s.outcome, style="yellow" if s.outcome == "open" else ""),
            Text(s.reason),
            str(s.links),
        )
    return table


# -- export -----------------------------------------------------------------------------


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

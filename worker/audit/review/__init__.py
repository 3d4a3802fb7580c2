"""Reviewing the log: a task's decision trace, recent tasks, and exports of the chain.

The queries read, the formatting is pure: ``trace_as_dict`` and ``render_trace`` turn a
``Trace`` into JSON-ready data and into ``rich`` renderables, ``write_jsonl`` and
``write_csv`` turn exported records into files.

Sealed values (``{"$sealed": {...}}``, see ``AuditLog.unseal``) stay sealed unless the
caller opens them: ``open_trace`` opens a trace's records with ``AuditLog.unseal``, and
``conceal`` shows whatever is still sealed as ``«sealed»``. Exports never open them.

One module per reason to change: ``sealed`` (how sealed values are shown), ``trace``
(one task's trace and its JSON-ready form), ``tasks`` (recent tasks with their outcome),
``export`` (the chain as records, JSONL and CSV) and ``render`` (the console's view).
"""

from worker.audit.review.export import (
    EXPORT_FORMATS,
    export_columns,
    export_records,
    parse_time,
    write_csv,
    write_jsonl,
)
from worker.audit.review.render import render_trace, tasks_table
from worker.audit.review.sealed import SEALED, SEALED_KEY, Show, conceal, is_sealed, reveal
from worker.audit.review.tasks import TaskSummary, list_tasks
from worker.audit.review.trace import Entry, Trace, load_trace, open_trace, trace_as_dict

__all__ = [
    "EXPORT_FORMATS",
    "SEALED",
    "SEALED_KEY",
    "Entry",
    "Show",
    "TaskSummary",
    "Trace",
    "conceal",
    "export_columns",
    "export_records",
    "is_sealed",
    "list_tasks",
    "load_trace",
    "open_trace",
    "parse_time",
    "render_trace",
    "reveal",
    "tasks_table",
    "trace_as_dict",
    "write_csv",
    "write_jsonl",
]

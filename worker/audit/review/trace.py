"""One task's trace: the task row and its steps and tool calls in seq order, opened or
not, and as JSON-ready data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from worker.audit.chain import iso_utc
from worker.audit.events import OutcomeDetails
from worker.audit.log import AuditLog
from worker.audit.records import StepRecord, TaskRecord, ToolCallRecord
from worker.audit.review.sealed import Show, conceal
from worker.errors import AuditError

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
            ended = OutcomeDetails.from_details(details)
            reason = ended.reason if ended.reason is not None else ""
            outcome = {"outcome": ended.outcome, "reason": reason}
        else:
            outcome = {"outcome": details, "reason": ""}
    return {
        "task_id": trace.task_id,
        "task": None if trace.task is None else _record_dict(trace.task, show),
        "entries": [_record_dict(entry, show) for entry in trace.entries],
        "outcome": outcome,
    }

"""What the pages show, as plain data for the templates (pure: no I/O, no HTML).

The queries are ``worker.audit.review``'s and ``worker.gates.calls``'s; this module only
shapes their results: filters for the task list, and a trace (``trace_as_dict``) as
rows the trace template can lay out without logic of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.audit import requester
from worker.audit.events import APPROVAL_REQUESTED, OutcomeDetails, PolicyDetails
from worker.audit.review import SEALED, TaskSummary

OUTCOMES = (
    "answered",
    "held",
    "awaiting_approval",
    "rejected",
    "step_limit",
    "gave_up",
    "refused",
    "failed",
    "open",
)
"""The outcomes a task can show (``open``: no outcome recorded yet)."""

# details keys a policy step shows in its own rows rather than in the JSON of the rest
_POLICY_SHOWN = ("policy", "allowed", "reasons", "decisions", "tool", "status", "key", "by")


def pretty(value: Any) -> str:
    """``value`` as indented JSON, non-ASCII kept (the template escapes it)."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def when(value: datetime | str | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SSZ`` (UTC), or "" for none."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True)
class TaskFilter:
    """The task list's filters, as given in the query string."""

    department: str = ""
    outcome: str = ""
    q: str = ""
    limit: int = 100

    @property
    def narrows(self) -> bool:
        """Whether outcome or text filters apply (so more tasks must be scanned)."""
        return bool(self.outcome or self.q)

    def keep(self, summary: TaskSummary) -> bool:
        """Whether ``summary`` passes the outcome and task-id filters."""
        if self.outcome and summary.outcome != self.outcome:
            return False
        return not self.q or self.q.casefold() in summary.task_id.casefold()

    def apply(self, summaries: Iterable[TaskSummary]) -> list[TaskSummary]:
        """The summaries that pass, at most ``limit`` of them, in the order given."""
        kept = [s for s in summaries if self.keep(s)]
        return kept[: self.limit]


# -- a task's trace -----------------------------------------------------------------------


def _reasons(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(r) for r in value] if isinstance(value, list) else [str(value)]


def _decision_why(details: PolicyDetails, status: str) -> str:
    """The human's own words of a decision step (its reason without "approved by x: ")."""
    reasons = _reasons(details.reasons)
    text = reasons[0] if reasons else ""
    prefix = f"{status} by {details.by if details.by is not None else ''}: "
    return text.removeprefix(prefix)


def _step_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    kind, details = entry["kind"], entry["details"]
    row: dict[str, Any] = {
        "table": "step",
        "seq": entry["seq"],
        "index": entry["index"],
        "kind": kind,
        "role": entry.get("role") or "",
        "when": when(entry.get("created_at")),
        "output": entry.get("output") or "",
        "prompt_digest": entry.get("prompt_digest") or "",
        "latency_ms": entry.get("latency_ms"),
        "model": entry.get("model") or "",
        "adapter": entry.get("adapter") or "",
        "policy": None,
        "approval": None,
        "outcome": None,
        "rest": "",
    }
    if not isinstance(details, Mapping):  # the whole details value is sealed
        row["rest"] = pretty(details) if details != SEALED else SEALED
        return row
    rest = dict(details)
    if kind == "policy":
        policy = PolicyDetails.from_details(details)
        status = str(policy.status or "")
        row["policy"] = {
            "name": str(policy.policy or ""),
            "allowed": bool(policy.allowed),
            "tool": str(policy.tool or ""),
            "decisions": [
                {
                    "policy": str(d.get("policy", "")),
                    "allowed": bool(d.get("allowed")),
                    "reasons": _reasons(d.get("reasons")),
                }
                for d in policy.decisions or []
                if isinstance(d, Mapping)
            ],
            "reasons": _reasons(policy.reasons),
        }
        if status:
            row["approval"] = {
                "status": status,
                "key": str(policy.key or ""),
                "by": str(policy.by or ""),
                "why": _decision_why(policy, status) if status != APPROVAL_REQUESTED else "",
            }
        for name in _POLICY_SHOWN:
            rest.pop(name, None)
    elif kind == "outcome":
        ending = OutcomeDetails.from_details(details)
        row["outcome"] = {
            "outcome": str(ending.outcome),
            "reason": str(ending.reason if ending.reason is not None else ""),
        }
        rest.pop("outcome", None)
        rest.pop("reason", None)
    row["rest"] = pretty(rest) if rest else ""
    return row


def _tool_call_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "table": "tool_call",
        "seq": entry["seq"],
        "index": entry["step"],
        "kind": "tool call",
        "tool": entry["tool"],
        "effect": entry["effect"],
        "key": entry["idempotency_key"],
        "when": when(entry.get("created_at")),
        "request": entry["request"] if entry["request"] == SEALED else pretty(entry["request"]),
        "response": entry["response"] if entry["response"] == SEALED else pretty(entry["response"]),
        "ok": bool(entry["ok"]),
        "error": entry.get("error") or "",
    }


def trace_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """A ``trace_as_dict`` result as the trace template shows it."""
    task = data["task"]
    head = None
    if task is not None:
        context = task.get("context")
        head = {
            "department": task["department"],
            "requested_by": requester.shown(task["requested_by"], context),
            "received": when(task["received_at"]),
            "seq": task["seq"],
            "query": task["query"],
            "context": pretty(context) if context else "",
        }
    rows = [
        _tool_call_row(e) if e["table"] == "tool_call" else _step_row(e) for e in data["entries"]
    ]
    return {
        "task_id": data["task_id"],
        "task": head,
        "rows": rows,
        "outcome": data["outcome"],
        "sealed": sum(pretty(e).count(SEALED) for e in data["entries"])
        + (pretty(task).count(SEALED) if task else 0),
    }

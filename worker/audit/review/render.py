"""The console's view of the review data: a trace (from ``trace_as_dict``) and the list
of recent tasks, as ``rich`` renderables (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from worker.audit.events import OutcomeDetails, PolicyDetails
from worker.audit.requester import shown
from worker.audit.review.tasks import TaskSummary


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
        decided = PolicyDetails.from_details(details)
        allowed = decided.allowed
        what = f"policy {decided.policy or ''}".rstrip()
        body.append("allowed" if allowed else "denied", style="green" if allowed else "red")
        if decided.tool:
            body.append(f" {decided.tool}")
        reasons = decided.reasons or []  # a concealed sealed value is no list
        for reason in reasons if isinstance(reasons, list) else [reasons]:
            body.append("\n- ").append(str(reason))
        return what, body
    if kind == "outcome" and isinstance(details, Mapping):
        ended = OutcomeDetails.from_details(details)
        body.append(f"{ended.outcome}: {ended.reason or ''}", style="bold")
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

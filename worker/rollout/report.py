"""The promotion report: the figures a department head signs before a mode goes up.

Read from the audit log for one department (optionally since a time): tasks by mode and
outcome, approvals granted and rejected, held answers released and rejected, policy
refusals by policy, writes made, dry-run and stopped, latency percentiles by mode (task
received → first outcome), the shadow agreement with the people's outcomes, and the pass
rate over the tasks that have a verdict (a checker's or a person's, ``worker.rollout.
verdict``; a shadow task's compared agreement is its person's verdict). Overall and by
mode a task counts once, by its last checker's or person's verdict, else its agreement;
by source each source's own last verdict on the task counts, so a shadow run's checker
and its agreement with people are read side by side.
"""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select

from worker.audit.events import (
    APPROVAL_REQUESTED,
    DECIDED_CALL,
    REJECTED,
    RELEASED,
    OutcomeDetails,
    PolicyDetails,
    details_of,
    outcome_of,
)
from worker.audit.log import AuditLog
from worker.audit.tables import Step, Task, ToolCall
from worker.rollout.human import HANDLED_BY_HUMAN, NOT_AUTOMATED
from worker.rollout.task import CONTEXT_KEY
from worker.rollout.verdict import verdict_of

_CHUNK = 500
AGREEMENT = "shadow agreement"
"""The source of a shadow task's verdict when only its person's outcome judged it."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _rows(
    audit: AuditLog, department: str, since: datetime | None, task_ids: Collection[str] | None
) -> tuple[list, dict, dict]:
    task = Task.__table__  # type: ignore[attr-defined]
    step = Step.__table__  # type: ignore[attr-defined]
    call = ToolCall.__table__  # type: ignore[attr-defined]
    query = select(task).where(task.c.department == department)
    if since is not None:
        query = query.where(task.c.received_at >= since)
    if task_ids is not None:
        query = query.where(task.c.task_id.in_(list(task_ids)))

    def read(conn: Any) -> tuple[list, dict, dict]:
        tasks = list(conn.execute(query.order_by(task.c.seq)).mappings())
        steps: dict[str, list] = defaultdict(list)
        calls: dict[str, list] = defaultdict(list)
        ids = [t["task_id"] for t in tasks]
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            for row in conn.execute(
                select(step).where(step.c.task_id.in_(chunk)).order_by(step.c.seq)
            ).mappings():
                steps[row["task_id"]].append(row)
            for row in conn.execute(
                select(call.c.task_id, call.c.effect, call.c.ok, call.c.error)
                .where(call.c.task_id.in_(chunk))
                .order_by(call.c.seq)
            ).mappings():
                calls[row["task_id"]].append(row)
        return tasks, steps, calls

    return audit._read(read)  # the SQL log's own reader: the report reads its tables


def report(
    audit: AuditLog,
    department: str,
    since: datetime | None = None,
    *,
    task_ids: Collection[str] | None = None,
) -> dict[str, Any]:
    """The department's promotion figures (JSON-able); ``task_ids`` narrows them to those
    tasks (a shadow run's)."""
    tasks, steps_of, calls_of = _rows(audit, department, since, task_ids)
    by_mode: Counter[str] = Counter()
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    shadow_outcomes: Counter[str] = Counter()
    latency: dict[str, list[float]] = defaultdict(list)
    approvals: Counter[str] = Counter()
    held: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    agreement: Counter[str] = Counter()
    judged: dict[str, Counter[str]] = defaultdict(Counter)  # mode -> judged, passed
    sources: dict[str, Counter[str]] = defaultdict(Counter)
    for task in tasks:
        context = task["context"] or {}
        mode = str((context.get(CONTEXT_KEY) or {}).get("mode") or "unrecorded")
        by_mode[mode] += 1
        steps = steps_of.get(task["task_id"], [])
        ends = [s for s in steps if s["kind"] in ("outcome", "rejected")]
        verdict: tuple[str, bool] | None = None
        by_source: dict[str, bool] = {}  # each source's last verdict on the task
        final = ends[-1] if ends else None
        if final is None:
            outcomes[mode]["running"] += 1
        else:
            ended = outcome_of(final)
            outcomes[mode][str((ended.outcome if ended else None) or final["kind"])] += 1
            first = ends[0]
            latency[mode].append((first["created_at"] - task["received_at"]).total_seconds())
        for s in steps:
            event = details_of(s)
            if isinstance(event, OutcomeDetails):
                result = event.outcome
                if mode == "shadow" and result not in (NOT_AUTOMATED, HANDLED_BY_HUMAN):
                    shadow_outcomes[str(result)] += 1
                if result == "held":
                    held["held"] += 1
                agreed = event.agreement or {}
                if result == HANDLED_BY_HUMAN and agreed.get("agree") is not None:
                    verdict = verdict or (AGREEMENT, bool(agreed["agree"]))
                    by_source[AGREEMENT] = bool(agreed["agree"])
                    agreement["compared"] += 1
                    for part in ("agree", "outcome", "writes"):
                        agreement[part] += bool(agreed.get(part))
                    if agreed.get("answer") is not None:
                        agreement["answer_compared"] += 1
                        agreement["answer"] += bool(agreed["answer"])
            if not isinstance(event, PolicyDetails):
                continue
            if (given := verdict_of(event)) is not None:
                # a checker's or a person's verdict outranks the agreement; the last counts
                verdict = given
                by_source[given[0]] = given[1]
                continue
            status = event.status
            if event.policy == "claims" and status in (RELEASED, REJECTED):
                held[str(status)] += 1
            elif status in (APPROVAL_REQUESTED, *DECIDED_CALL):
                approvals[str(status)] += 1
            elif event.allowed is False:
                refusals[str(event.policy)] += 1
        if verdict is not None:
            judged[mode]["judged"] += 1
            judged[mode]["passed"] += verdict[1]
        for source, passed in by_source.items():
            sources[source]["judged"] += 1
            sources[source]["passed"] += passed
        for c in calls_of.get(task["task_id"], []):
            if c["effect"] != "write":
                continue
            if not c["ok"] and (c["error"] or "").startswith("stopped:"):
                writes["stopped"] += 1
            elif c["ok"] and mode == "shadow":
                writes["dry_run"] += 1
            elif c["ok"]:
                writes["made"] += 1
            else:
                writes["failed"] += 1
    compared = agreement["compared"]
    total = sum((judged.values()), Counter())
    return {
        "department": department,
        "since": since.isoformat() if since else None,
        "tasks": len(tasks),
        "by_mode": dict(by_mode),
        "outcomes": {m: dict(c) for m, c in outcomes.items()},
        "shadow_outcomes": dict(shadow_outcomes),
        "pass_rate": _rates(total)
        | {
            "by_mode": {m: _rates(c) for m, c in sorted(judged.items())},
            "by_source": {k: _rates(c) for k, c in sorted(sources.items())},
        },
        "approvals": {
            "requested": approvals["requested"],
            "granted": approvals["approved"],
            "rejected": approvals["rejected"],
        },
        "held_answers": {k: held[k] for k in ("held", "released", "rejected")},
        "policy_refusals": dict(refusals),
        "writes": {k: writes[k] for k in ("made", "dry_run", "stopped", "failed")},
        "latency_s": {
            m: {f"p{q}": percentile(v, q) for q in (50, 90, 99)} | {"n": len(v)}
            for m, v in latency.items()
        },
        "shadow_agreement": {
            "compared": compared,
            "agree": agreement["agree"],
            "rate": agreement["agree"] / compared if compared else None,
            "same_outcome": agreement["outcome"],
            "same_writes": agreement["writes"],
            "same_answer": agreement["answer"],
            "answers_compared": agreement["answer_compared"],
        },
    }


def _rates(counts: Counter[str]) -> dict[str, Any]:
    n, passed = counts["judged"], counts["passed"]
    return {"judged": n, "passed": passed, "rate": passed / n if n else None}


def plot(figures: dict[str, Any], out: str | Path | BinaryIO) -> Path | BinaryIO:
    """The report as one PNG: outcomes by mode, latency percentiles, shadow agreement,
    pass rate by mode, and the human gates (approvals, held answers, refusals)."""
    # the object API, not pyplot: no global state, so the review page may draw in threads
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 9))
    grid = fig.subplots(2, 3)
    axes = list(grid.flat)
    modes = sorted(figures["outcomes"])
    kinds = sorted({k for m in modes for k in figures["outcomes"][m]})
    bottom = [0] * len(modes)
    for kind in kinds:
        values = [figures["outcomes"][m].get(kind, 0) for m in modes]
        axes[0].bar(modes, values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes[0].set_title(f"{figures['department']}: tasks by mode and outcome")
    if kinds:
        axes[0].legend(fontsize=8)
    lat = figures["latency_s"]
    for i, q in enumerate(("p50", "p90", "p99")):
        xs = [j + (i - 1) * 0.25 for j in range(len(lat))]
        axes[1].bar(xs, [lat[m][q] or 0 for m in lat], width=0.25, label=q)
    axes[1].set_xticks(range(len(lat)), list(lat))
    axes[1].set_title("latency to outcome (s)")
    if lat:
        axes[1].legend(fontsize=8)
    agree = figures["shadow_agreement"]
    parts = {
        "agree": (agree["agree"], agree["compared"]),
        "outcome": (agree["same_outcome"], agree["compared"]),
        "writes": (agree["same_writes"], agree["compared"]),
        "answer": (agree["same_answer"], agree["answers_compared"]),
    }
    axes[2].bar(list(parts), [100 * a / n if n else 0 for a, n in parts.values()])
    axes[2].set_ylim(0, 100)
    axes[2].set_title(f"shadow agreement with people (% of {agree['compared']})")
    rates = figures["pass_rate"]["by_mode"]
    bars = axes[3].bar(list(rates), [100 * (r["rate"] or 0) for r in rates.values()])
    axes[3].bar_label(bars, [f"{r['passed']}/{r['judged']}" for r in rates.values()])
    axes[3].set_ylim(0, 100)
    axes[3].set_title("pass rate by mode (% of tasks with a verdict)")
    a, h = figures["approvals"], figures["held_answers"]
    gates = {
        "approvals\ngranted": a["granted"],
        "approvals\nrejected": a["rejected"],
        "answers\nreleased": h["released"],
        "answers\nrejected": h["rejected"],
        "policy\nrefusals": sum(figures["policy_refusals"].values()),
        "writes\nstopped": figures["writes"]["stopped"],
    }
    axes[4].bar(list(gates), list(gates.values()))
    axes[4].tick_params(axis="x", labelsize=8)
    axes[4].set_title("people's decisions and refusals")
    w = figures["writes"]
    axes[5].bar(list(w), list(w.values()))
    axes[5].set_title("writes")
    fig.tight_layout()
    if isinstance(out, str | Path):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, format="png")
    return out


def png(figures: dict[str, Any]) -> bytes:
    """The report's plot as PNG bytes (the review page serves them)."""
    buffer = io.BytesIO()
    plot(figures, buffer)
    return buffer.getvalue()

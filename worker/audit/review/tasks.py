"""Recent tasks with their outcome and how many links the chain holds for each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from worker.audit.chain import iso_utc
from worker.audit.db import read_snapshot
from worker.audit.events import OutcomeDetails
from worker.audit.review.sealed import SEALED, conceal
from worker.audit.tables import CHAIN_TABLES, Step, Task


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
            end = OutcomeDetails.from_details(details)
            ended[task_id] = (str(end.outcome), str(end.reason or ""))
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

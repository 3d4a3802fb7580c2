"""Per-department queues (DESIGN §8): where a department's tasks wait, which queues a
worker takes tasks from, and pausing one department without touching the others.

With ``department_queues`` on, a department's tasks (and the resumes of its approved
calls) go to a queue of its own, ``<queue>.<department>`` (``umiq.tasks.finance``), or the
queue its settings name; ``umiq worker --departments finance,hr`` takes tasks from those
queues only. Off (the default, and the embedded demo), every task uses the one queue.

A paused department's tasks stay on its queue: ``pause`` records the change like any
other rollout change (``paused`` in the department's live settings, audited) and tells
every worker to stop taking from that queue; ``resume`` records and tells the workers
that serve the department to take from it again. A worker that starts while the
department is paused leaves its queue alone. A task a worker had already taken runs to
its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from celery.worker.control import control_command, ok

log = structlog.get_logger("umiq.rollout")

PAUSE_COMMAND = "umiq_pause_queue"
RESUME_COMMAND = "umiq_resume_queue"

_served: set[str] = set()
"""The department queues this worker process was started for (``resume`` only ever
hands a worker back a queue of its own)."""


def department_queue(settings: Any, department: str | None) -> str:
    """The queue of ``department``'s tasks: the queue its settings name, else
    ``<queue>.<department>`` with department queues on, else the one queue."""
    if not department:
        return str(settings.queue)
    dept = settings.departments.get(department)
    if dept is not None and dept.queue:
        return str(dept.queue)
    if settings.department_queues:
        return f"{settings.queue}.{department}"
    return str(settings.queue)


def department_queues(settings: Any, departments: Iterable[str] | None = None) -> dict[str, str]:
    """``{department: queue}`` for ``departments`` (default: the configured ones) whose
    tasks do not use the one queue."""
    names = settings.departments if departments is None else departments
    found = {name: department_queue(settings, name) for name in names}
    return {name: queue for name, queue in found.items() if queue != settings.queue}


@dataclass(frozen=True)
class Consumption:
    """The queues a worker takes tasks from, and those it leaves alone (paused)."""

    queues: list[str]
    paused: list[str] = field(default_factory=list)


def worker_queues(
    settings: Any, departments: list[str] | None, paused: Iterable[str] = ()
) -> Consumption | None:
    """What ``umiq worker [--departments …]`` consumes; None: Celery's default (the one
    queue). ``paused`` are the departments whose live settings say so."""
    stopped = set(paused)
    if departments:
        own = {d: department_queue(settings, d) for d in departments}
    elif settings.department_queues or department_queues(settings):
        own = {"": settings.queue, **department_queues(settings)}
    else:
        return None
    queues = list(dict.fromkeys(own.values()))
    held = [q for d, q in own.items() if d in stopped]
    return Consumption(queues, list(dict.fromkeys(held)))


def serve(queues: Iterable[str]) -> None:
    """Remember the queues this worker process serves (``resume`` gives back only those)."""
    _served.update(queues)


# -- pause and resume --------------------------------------------------------------------


def pause(
    store: Any,
    app: Any,
    settings: Any,
    department: str,
    *,
    by: str,
    reason: str,
    paused: bool = True,
    timeout: float = 2.0,
) -> tuple[Any, list[dict[str, Any]]]:
    """Pause (or, with ``paused`` False, resume) ``department``: one audited rollout
    change, then every worker is told. Returns the change (None: it was so already) and
    the workers' replies."""
    live = store.set(department, {"paused": paused}, by=by, reason=reason)
    return live, tell_workers(app, department_queue(settings, department), paused, timeout)


def tell_workers(app: Any, queue: str, paused: bool, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Tell the running workers to stop (or start again) taking tasks from ``queue``."""
    command = PAUSE_COMMAND if paused else RESUME_COMMAND
    replies = app.control.broadcast(
        command, arguments={"queue": queue}, reply=True, timeout=timeout
    )
    log.info("rollout.queue_told", queue=queue, paused=paused, workers=len(replies or []))
    return list(replies or [])


@control_command(args=[("queue", str)], signature="<queue>")  # type: ignore[misc]
def umiq_pause_queue(state: Any, queue: str, **_: Any) -> dict[str, Any]:
    """Stop taking tasks from ``queue`` (a worker not taking from it does nothing)."""
    consumer = state.consumer
    if not consumer.task_consumer.consuming_from(queue):
        return ok(f"not taking from {queue}")
    consumer.call_soon(consumer.cancel_task_queue, queue)
    log.warning("rollout.queue_paused", queue=queue)
    return ok(f"paused {queue}")


@control_command(args=[("queue", str)], signature="<queue>")  # type: ignore[misc]
def umiq_resume_queue(state: Any, queue: str, **_: Any) -> dict[str, Any]:
    """Take tasks from ``queue`` again, if this worker serves it."""
    consumer = state.consumer
    if queue not in _served:
        return ok(f"does not serve {queue}")
    if consumer.task_consumer.consuming_from(queue):
        return ok(f"already taking from {queue}")
    consumer.call_soon(consumer.add_task_queue, queue)
    log.warning("rollout.queue_resumed", queue=queue)
    return ok(f"resumed {queue}")

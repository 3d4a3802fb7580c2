"""The rollout of one task, as ``worker.tasks`` uses it: decide once, gate, hand over.

``begin`` reads the department's live settings and decides the task's mode, or takes the
decision already recorded on the task (a redelivery or a resume never decides again);
the decision is stored in the task row's context under ``rollout``. ``for_humans`` ends
an ``off`` or ``shadow`` task in the department's human queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from worker.audit.protocol import AuditLogProtocol
from worker.rollout.decide import Rollout, decide, task_key
from worker.rollout.gate import GatedToolbox
from worker.rollout.human import not_automated, send_to_humans
from worker.rollout.store import RolloutStore, store_for
from worker.settings import DepartmentSettings

log = structlog.get_logger("umiq.rollout")

CONTEXT_KEY = "rollout"
"""The key of a task row's context that holds the task's rollout decision (umiq's own:
a producer's value under it is replaced)."""


@dataclass
class TaskRollout:
    """One task's rollout decision, with the department's live settings."""

    rollout: Rollout
    department: DepartmentSettings | None
    store: RolloutStore

    def toolbox(self, toolbox: Any) -> GatedToolbox:
        """``toolbox`` with this task's writes gated (kill switch, dry run)."""
        name = self.rollout.department
        return GatedToolbox(toolbox, self.rollout, lambda: self.store.kill_switch(name))

    def context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The task row's context: the envelope's, with the decision under ``rollout``."""
        # the key may be a context value (bucket_by): the bucket is kept, not the key
        return {**dict(context), CONTEXT_KEY: {**self.rollout.as_dict(), "key": None}}


def begin(
    audit: AuditLogProtocol,
    settings: Any,
    *,
    department: str,
    task_id: str,
    context: Mapping[str, Any] | None,
    recorded: Mapping[str, Any] | None = None,
) -> TaskRollout:
    """The task's rollout: ``recorded`` (the task row's context) when it holds one, else a
    fresh decision from the department's live settings."""
    store = store_for(audit, settings)
    live = store.live(department)
    if recorded is not None and isinstance(recorded.get(CONTEXT_KEY), Mapping):
        rollout = Rollout.from_dict(recorded[CONTEXT_KEY])
    else:
        key = task_key(live.settings, task_id, context)
        rollout = decide(department, live.settings, key=key, version=live.version)
    log.info("rollout.decided", mode=rollout.mode, reason=rollout.reason, version=rollout.version)
    return TaskRollout(rollout, live.settings, store)


def for_humans(
    app: Any,
    audit: AuditLogProtocol,
    envelope: Mapping[str, Any],
    rollout: Rollout,
    *,
    shadow_outcome: str | None = None,
) -> dict[str, Any]:
    """Send the task to the department's human queue and end it ``not_automated``:
    the producer's result."""
    task_id = str(envelope["task_id"])
    queue = send_to_humans(app, envelope, rollout)
    ended = not_automated(task_id, rollout, queue, shadow_outcome)
    index = max((s.index for s in audit.steps(task_id)), default=0) + 1
    audit.append_step(
        task_id=task_id, index=index, kind="outcome", output="", details=ended.to_details()
    )
    log.info("rollout.to_humans", queue=queue, mode=rollout.mode)
    return {
        "task_id": task_id,
        "outcome": ended.outcome,
        "answer": "",
        "reason": ended.reason,
        "tokens": 0,
        "steps": [],
    }

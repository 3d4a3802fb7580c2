"""The expert as the agent: a role model that says what the expert's gold trajectory says.

``UMIQ_ROLE_MODEL=examples.acme.replay:factory`` with ``UMIQ_ACME_REPLAY`` naming a JSON
file ``{task_id: {"planner": [...], "caller": [...], "summarizer": [...]}}`` (each role's
targets in order, as ``worker.data.samples.role_samples`` cuts them from a trajectory
written in the worker's view, tokens and all). For a request of a task the model answers
the target of its role at the position the prompt's history has reached (the number of
calls made so far), so it acts as the expert did on each step: the worker still runs
every check, gate and connector, so a shadow run with it shows what the agent's
machinery does with perfect decisions. A task with no entry, or a step past the
trajectory's end, raises (the worker records the failure).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from worker.agent.roles import Generation, GenerationRequest

REPLAY_ENV = "UMIQ_ACME_REPLAY"
_CALLER_TURN = "</s>caller: "

Targets = Mapping[str, Sequence[str]]


def targets_of(trajectory: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each role's targets, in order, from a gold trajectory (the training samples' cut)."""
    from worker.data.samples import role_samples

    samples = role_samples({**trajectory, "prompt_view": "compact"}, reference_quirks=False)
    return {role: [s["target"] for s in samples[role]] for role in ROLES}


ROLES = ("planner", "caller", "summarizer")


def say(request: GenerationRequest, targets: Targets) -> str:
    """What the expert said at the step ``request`` stands at."""
    said = targets.get(request.role)
    if said is None:
        raise ValueError(f"the replay plays {', '.join(ROLES)}, not {request.role}")
    index = 0 if request.role == "summarizer" else request.prompt.count(_CALLER_TURN)
    if index >= len(said):
        raise LookupError(
            f"the expert's trajectory has no {request.role} step {index + 1} (it has {len(said)})"
        )
    return said[index]


class ExpertReplay:
    """A RoleModel that replays, per task, the expert's targets from ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _targets(self) -> Targets:
        task_id = structlog.contextvars.get_contextvars().get("task_id")
        # read per task: the driver writes a task's targets before it sends the task
        table = json.loads(self.path.read_text(encoding="utf-8"))
        if task_id not in table:
            raise LookupError(f"no expert trajectory for task {task_id!r} in {self.path}")
        return table[task_id]  # type: ignore[no-any-return]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        targets = self._targets()
        out = []
        for request in requests:
            text = say(request, targets)
            out.append(Generation(text, len(request.prompt.split()), len(text.split()), "expert"))
        return out

    def describe(self) -> dict[str, Any]:
        return {"base": "expert-replay", "adapters": {}}


def factory(settings: Any) -> ExpertReplay:
    """``UMIQ_ROLE_MODEL=examples.acme.replay:factory``."""
    path = os.environ.get(REPLAY_ENV)
    if not path:
        raise LookupError(f"the expert replay needs {REPLAY_ENV} (a JSON file of targets)")
    return ExpertReplay(path)

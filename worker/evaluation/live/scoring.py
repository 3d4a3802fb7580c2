"""Scoring a live task: the world's checker on the systems' state, the failure's cause,
and the summary of a run's tasks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from worker.evaluation.causes import CAUSES, agent_calls, classify, expert_calls
from worker.world import Instance, Solution, Systems, World, load_world

if TYPE_CHECKING:
    from worker.audit.protocol import AuditLogProtocol

PASSING_OUTCOMES = ("answered", "gave_up")

#: The checker's words for an answer naming a record none of the agent's calls returned.
UNBACKED = "none of the agent's calls asked about or returned"


@dataclass
class LiveTask:
    """One evaluated task, as ``live.json`` lists it."""

    uid: str
    family: str
    department: str
    instruction: str
    task_id: str | None
    passed: bool
    checker_passed: bool
    reasons: list[str]
    outcome: str | None
    reason: str
    answer: str
    steps: int
    audit_steps: int
    calls: int
    tokens: int
    wall_s: float
    cause: str | None = None
    cause_detail: str = ""
    expert_outcome: str | None = None
    expert_calls: int | None = None
    reset_verified: bool | None = None
    models: list[str] = field(default_factory=list)
    role_ms: dict[str, int] = field(default_factory=dict)
    """Model time per role over the task (the audit steps' latencies)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_task(
    instance: Instance,
    systems: Systems,
    result: Mapping[str, Any] | None,
    audit: AuditLogProtocol | None = None,
    *,
    expert: Solution | None = None,
    wall_s: float = 0.0,
    task_id: str | None = None,
    world: World | None = None,
) -> LiveTask:
    """Check a finished task against the systems' state and, if it failed, say why.

    ``result`` is the task's result dict (``EpisodeResult.as_dict()``; None when none
    came back); ``audit`` an ``AuditLog`` (its steps of the task are read, else the
    result's own steps are used); ``expert`` the expert's solution of the same instance,
    compared with the agent's calls to name the failure cause. The systems must still
    be in the state the task left; ``world`` (default: the configured one) checks it.
    """
    world = world or load_world()
    result = dict(result or {})
    task_id = result.get("task_id") or task_id
    steps: Sequence[Any] = result.get("steps") or []
    tool_calls: Sequence[Any] = []
    if audit is not None and task_id:
        steps = audit.steps(task_id) or steps
        tool_calls = audit.tool_calls(task_id)
        if getattr(audit, "sealer", None) is not None:
            # the checker reads what the calls returned (ids, empty lookups), sealed here
            tool_calls = audit.unseal(tool_calls)
    outcome = result.get("outcome")
    answer = (result.get("answer") or "") if outcome == "answered" else ""
    if answer and audit is not None and task_id and getattr(audit, "sealer", None) is not None:
        # The model answers in the task's tokens; the requester and the checker read the
        # raw values (the token map is sealed in the audit log).
        from worker.agent.guard import reveal

        answer = reveal(audit, task_id, answer)
    calls = tool_calls if audit is not None and task_id else None
    verdict = world.check(instance, systems, answer, calls)
    passed = verdict.passed and outcome in PASSING_OUTCOMES
    reasons = list(verdict.reasons)
    if verdict.passed and not passed:
        reasons.append(f"the episode ended {outcome or 'without a result'}")
    answer_problems = list(verdict.answer_reasons)
    give_up_problems = list(verdict.give_up_reasons)
    state_problems = [
        r for r in verdict.reasons if r not in answer_problems and r not in give_up_problems
    ]

    diagnosis = None
    if not passed:
        write_tools = {spec.name for spec in systems.specs() if spec.effect == "write"}
        write_tools |= {
            _field(call, "tool") for call in tool_calls if _field(call, "effect") == "write"
        }
        diagnosis = classify(
            outcome=outcome,
            steps=steps,
            expected_outcome=instance.expected["outcome"],
            gold=expert_calls(expert.trajectory) if expert is not None else None,
            state_reasons=state_problems,
            answer_reasons=answer_problems,
            give_up_reasons=give_up_problems,
            write_tools=write_tools,
            reason=str(result.get("reason", "")),
        )
    models = sorted(
        {
            label
            for step in steps
            for label in (_field(step, "model"), _field(step, "adapter"))
            if label
        }
    )
    role_ms: dict[str, int] = {}
    for step in steps:
        role, latency = _field(step, "role"), _field(step, "latency_ms")
        if role and latency is not None:
            role_ms[str(role)] = role_ms.get(str(role), 0) + int(latency)
    return LiveTask(
        role_ms=role_ms,
        uid=instance.uid,
        family=instance.family,
        department=world.department_for(instance.family),
        instruction=instance.instruction,
        task_id=task_id,
        passed=passed,
        checker_passed=verdict.passed,
        reasons=reasons,
        outcome=outcome,
        reason=str(result.get("reason", "")),
        answer=answer,
        steps=sum(1 for step in steps if _field(step, "kind") == "planner"),
        audit_steps=len(steps),
        calls=len(agent_calls(steps)),
        tokens=int(result.get("tokens") or 0),
        wall_s=round(wall_s, 2),
        cause=diagnosis.cause if diagnosis else None,
        cause_detail=diagnosis.detail if diagnosis else "",
        expert_outcome=expert.outcome if expert is not None else None,
        expert_calls=len(expert_calls(expert.trajectory)) if expert is not None else None,
        models=models,
    )


def record_score(audit: AuditLogProtocol, task: LiveTask, world: World) -> bool:
    """Record ``task``'s score as the world's checker verdict on it (``worker.rollout``),
    so the department's promotion report has its pass rate; False, and nothing recorded,
    for a task with no result (stuck) or one that went to people (not the agent's)."""
    from worker.rollout import NOT_AUTOMATED, record_checked

    if task.task_id is None or task.outcome in (None, NOT_AUTOMATED):
        return False
    given = record_checked(
        audit, task.task_id, passed=task.passed, reasons=task.reasons,
        checker=f"{world.name} checker",
    )  # fmt: skip
    return given is not None


def _field(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0


def summarize(tasks: Sequence[LiveTask]) -> dict[str, Any]:
    """Pass rate overall and per family, means, and failures by cause."""
    families: dict[str, dict[str, Any]] = {}
    for task in tasks:
        entry = families.setdefault(task.family, {"tasks": 0, "passed": 0})
        entry["tasks"] += 1
        entry["passed"] += int(task.passed)
    for entry in families.values():
        entry["pass_rate"] = round(entry["passed"] / entry["tasks"], 4)
    causes = Counter(task.cause for task in tasks if task.cause)
    passed = sum(task.passed for task in tasks)
    return {
        "tasks": len(tasks),
        "passed": passed,
        "pass_rate": round(passed / len(tasks), 4) if tasks else 0.0,
        "per_family": dict(sorted(families.items())),
        "mean_steps": _mean([t.steps for t in tasks]),
        "mean_tokens": _mean([t.tokens for t in tasks]),
        "total_tokens": sum(t.tokens for t in tasks),
        "mean_wall_s": _mean([t.wall_s for t in tasks]),
        "total_wall_s": round(sum(t.wall_s for t in tasks), 1),
        "outcomes": dict(sorted(Counter(str(t.outcome) for t in tasks).items())),
        "causes": {cause: causes.get(cause, 0) for cause in CAUSES},
        # answers delivered that state a record id none of the agent's calls returned,
        # and answers the claims policy held instead of delivering
        "answers_unbacked": sum(
            1 for t in tasks if t.outcome == "answered" and any(UNBACKED in r for r in t.reasons)
        ),
        "answers_held": sum(1 for t in tasks if t.outcome == "held"),
        "mean_role_s": {
            role: round(sum(t.role_ms.get(role, 0) for t in tasks) / 1000 / len(tasks), 2)
            for role in sorted({r for t in tasks for r in t.role_ms})
        }
        if tasks
        else {},
    }

"""Live evaluation: held-out tasks of the world (``UMIQ_WORLD``, Acme by default) end to
end through a real worker, scored on the systems' state.

``run_live`` starts the world's services (Acme: ERP over HTTP, HR database, SMTP mail,
in ``<work>/acme``; see ``worker.world``), a ``umiq worker`` subprocess consuming from
the broker (the embedded SQLite broker in ``<work>``, or ``UMIQ_BROKER_URL`` /
``UMIQ_DATABASE_URL`` from the environment), and then, one task at a time:

1. resets the systems to their seed, lets the scripted expert solve the task (its
   calls are the reference for the failure cause) and resets again;
2. sends the task as a Celery task with the normal envelope (the department the world
   names for its family: Acme's ``hr`` for tasks on the HR system, ``finance`` for the
   ERP ones);
3. waits for the result, reads the task's audit trail and scores it with the world's
   checker (``World.check``) against the systems' state;
4. classifies a failure (``worker.evaluation.causes``).

Tasks run strictly one after another: the next reset would otherwise change the
systems under a running task. A task passes when its episode ended of its own
(``answered`` or ``gave_up``) and the checker passes: a give-up task whose episode hit
the step limit wrote nothing and said nothing, but did not give up.

Before the tasks, a warm-up message for a department with no tools makes the worker load
its role models (the episode refuses at once, touching no system), so the first task's
wall time is not the model's load time.

Each run gets its own queues (``umiq.eval.<run>.<n>``; on RabbitMQ they are deleted
afterwards) and, with the embedded default, its own broker and audit files in ``<work>``
(``OUT/work``), kept for inspection. On Postgres the audit schema must exist first
(``umiq db upgrade``). A task with no result within its timeout (default
``task_timeout``: 300 s + 180 s per allowed step) is recorded as ``error``; the worker is
killed and, if tasks remain, replaced by a fresh one on fresh queues.

Tasks come from the world's ``split`` (``World.draw`` with ``per_family`` instances per
family: the first ``per_family`` of what ``umiq data build --seed S`` puts in that split,
e.g. its whole ``test.json`` for ``--per-family 12``), ordered round-robin over families
so that ``limit`` N covers N families.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.data.build import model_view
from worker.errors import ConfigError
from worker.evaluation.causes import CAUSES, agent_calls, classify, expert_calls
from worker.evaluation.modelsets import ModelSet
from worker.process import WorkerProcess
from worker.world import Instance, Solution, Systems, World, load_world

LIVE_FILE = "live.json"
FORMAT_VERSION = 1
WARMUP_DEPARTMENT = "eval-warmup"
PASSING_OUTCOMES = ("answered", "gave_up")


def select_tasks(
    systems: Systems,
    *,
    split: str,
    seed: int,
    per_family: int,
    families: Sequence[str],
    limit: int | None = None,
    world: World | None = None,
) -> list[Instance]:
    """The split's instances of ``world`` (default: the configured one) drawn from the
    freshly reset ``systems``, round-robin over ``families``, the first ``limit`` of them."""
    world = world or load_world()
    drawn = world.draw(
        systems, seed=seed, per_family=per_family, families=families, splits={split: per_family}
    )[split]
    by_family: dict[str, list[Instance]] = {}
    for instance in drawn:
        by_family.setdefault(instance.family, []).append(instance)
    ordered = [
        instance
        for round_ in itertools.zip_longest(*by_family.values())
        for instance in round_
        if instance is not None
    ]
    return ordered[:limit] if limit is not None else ordered


# -- scoring one task ---------------------------------------------------------------------


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
    audit: Any = None,
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


def _field(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


# -- summary and the result file -----------------------------------------------------------


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


#: The checker's words for an answer naming a record none of the agent's calls returned.
UNBACKED = "none of the agent's calls asked about or returned"


@dataclass
class LiveResult:
    """The evaluated tasks, their summary and how the run was set up."""

    tasks: list[LiveTask]
    run: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return summarize(self.tasks)

    def record(self) -> dict[str, Any]:
        """The ``live.json`` content."""
        return {
            "format": "umiq.eval.live",
            "version": FORMAT_VERSION,
            "run": self.run,
            "summary": self.summary,
            "tasks": [task.as_dict() for task in self.tasks],
        }

    def write(self, out: str | Path) -> Path:
        """Write ``live.json`` under ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / LIVE_FILE
        path.write_text(json.dumps(self.record(), indent=2, ensure_ascii=False), encoding="utf-8")
        return path


# -- the run ------------------------------------------------------------------------------


@dataclass
class LiveConfig:
    """What ``run_live`` evaluates and how."""

    out: Path
    model_set: ModelSet = field(default_factory=lambda: ModelSet.parse("shipped"))
    split: str = "test"
    limit: int | None = None
    families: list[str] | None = None
    seed: int = 0
    per_family: int = 2
    max_steps: int | None = None
    max_new_tokens: int | None = None
    timeout: float | None = None
    """Seconds to wait for one task; None: ``task_timeout(max_steps)``."""
    ready_timeout: float = 600.0
    work_dir: Path | None = None
    command: str = ""
    world: str | None = None
    """The world to evaluate on (``worker.world``); None: ``settings.world``."""

    def __post_init__(self) -> None:
        if self.split not in ("train", "dev", "test"):
            raise ConfigError(f"split must be train, dev or test, got {self.split!r}")
        if self.per_family < 1:
            raise ConfigError(f"per_family must be at least 1, got {self.per_family}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1, got {self.limit}")
        self.out = Path(self.out)

    @property
    def work(self) -> Path:
        """Broker, audit log, worker log and the world's data of the run."""
        return (self.work_dir or self.out / "work").expanduser().resolve()


#: Seconds a task may take: fixed overhead plus a generous two generations per step. On a
#: 2-core CPU shared with other work a ~1,200-token role prompt took 30–75 s.
TIMEOUT_BASE_S = 300.0
TIMEOUT_PER_STEP_S = 180.0


def task_timeout(max_steps: int) -> float:
    """The default wait for one task with ``max_steps`` steps."""
    return TIMEOUT_BASE_S + TIMEOUT_PER_STEP_S * max_steps


class Hooks:
    """What ``run_live`` tells its caller (the CLI draws a progress bar from it)."""

    def status(self, text: str) -> None:
        """A phase starts (services, worker, warm-up)."""

    def tasks(self, total: int) -> None:
        """The number of tasks is known."""

    def task_started(self, index: int, instance: Instance) -> None:
        """Task ``index`` (from 1) is sent."""

    def task_done(self, task: LiveTask) -> None:
        """A task is scored."""


def _redact(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def _choose_families(world: World, systems: Systems, wanted: Sequence[str] | None) -> list[str]:
    available = world.families(systems)
    if not wanted:
        return available
    known = world.families()
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise ConfigError(f"unknown task families: {', '.join(unknown)}; known: {', '.join(known)}")
    missing = [f for f in wanted if f not in available]
    if missing:
        raise ConfigError(f"the running systems lack tools for: {', '.join(missing)}")
    return list(wanted)


def _worker_env(
    config: LiveConfig,
    settings: Any,
    queues: tuple[str, str],
    connectors: Mapping[str, Any],
    world: tuple[str, World],
) -> dict[str, str]:
    env = config.model_set.environ()
    env.update(
        {
            "UMIQ_DATA_DIR": str(config.work),
            "UMIQ_MODEL_DIR": str(settings.resolved_model_dir),
            "UMIQ_CONNECTORS": json.dumps(dict(connectors)),
            "UMIQ_QUEUE": queues[0],
            "UMIQ_DEAD_LETTER_QUEUE": queues[1],
            "UMIQ_MAX_STEPS": str(config.max_steps or settings.max_steps),
            "UMIQ_MAX_NEW_TOKENS": str(config.max_new_tokens or settings.max_new_tokens),
            "UMIQ_LOG_FORMAT": "json",
            "UMIQ_WORLD": world[0],
        }
    )
    # The world's default departments (Acme's finance and hr) are scored; the warm-up
    # department runs the model (mode auto) with no tools, so its task loads the role
    # models and ends refused.
    from worker.settings import DepartmentSettings

    defaults = world[1].settings().get("departments", {})
    departments = {
        **{name: DepartmentSettings.model_validate(dept) for name, dept in defaults.items()},
        WARMUP_DEPARTMENT: DepartmentSettings(tools=[]),
    }
    env["UMIQ_DEPARTMENTS"] = json.dumps(
        {name: dept.model_dump(mode="json") for name, dept in departments.items()}
    )
    return env


def run_live(config: LiveConfig, hooks: Hooks | None = None) -> LiveResult:
    """Run the configured tasks one at a time through a real worker and score each."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from worker.audit import AuditLog, ensure_schema
    from worker.audit.keyring import load_keyring
    from worker.audit.sealing import Sealer
    from worker.celery_app import TASK_NAME, create_app
    from worker.settings import Settings, get_settings

    hooks = hooks or Hooks()
    config.model_set.check()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    work = config.work
    work.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    base_settings = get_settings()
    max_steps = config.max_steps or base_settings.max_steps
    max_new_tokens = config.max_new_tokens or base_settings.max_new_tokens
    timeout = config.timeout or task_timeout(max_steps)
    world_name = config.world or base_settings.world or ""
    world = load_world(world_name)

    hooks.status(f"starting the {world.name} systems…")
    with world.start(work / world.name, seed=config.seed) as office:
        systems = office.systems
        seed_state = systems.baseline
        names = office.known_names()
        families = _choose_families(world, systems, config.families)
        instances = select_tasks(
            systems,
            split=config.split,
            seed=config.seed,
            per_family=config.per_family,
            families=families,
            limit=config.limit,
            world=world,
        )
        if not instances:
            raise ConfigError(f"no {config.split} tasks for families {families}")
        hooks.tasks(len(instances))

        generation = itertools.count()
        used: list[Settings] = []

        def settings_for(n: int) -> Settings:
            queue = f"umiq.eval.{run_id}.{n}"
            used.append(Settings(data_dir=work, queue=queue, dead_letter_queue=f"{queue}.dead"))
            return used[-1]

        settings = settings_for(next(generation))
        ensure_schema(settings.resolved_database_url)
        audit = AuditLog.from_url(
            settings.resolved_database_url, sealer=Sealer(load_keyring(settings))
        )
        connectors = office.connectors_config()
        log_path = work / f"worker-{run_id}.log"

        def start_worker(settings: Settings) -> tuple[WorkerProcess, Any]:
            env = _worker_env(
                config,
                base_settings,
                (settings.queue, settings.dead_letter_queue),
                connectors,
                (world_name, world),
            )
            worker = WorkerProcess(env, log_path)
            hooks.status("starting the worker…")
            worker.start(config.ready_timeout)
            return worker, create_app(settings)

        worker, app = start_worker(settings)
        records: list[LiveTask] = []
        warmup_s = None
        try:
            hooks.status("warming up: the worker loads its role models…")
            warm_started = time.perf_counter()
            warm = app.send_task(
                TASK_NAME,
                args=[
                    {
                        "task_id": f"eval-{run_id}-warmup",
                        "department": WARMUP_DEPARTMENT,
                        "query": "warm-up: load the role models",
                        "requested_by": "umiq-eval",
                    }
                ],
            )
            try:
                warmed = warm.get(timeout=config.ready_timeout, propagate=False)
            except CeleryTimeout as exc:
                raise ConfigError(
                    f"the worker did not load its role models in {config.ready_timeout:.0f}s; "
                    f"see {log_path}"
                ) from exc
            warmup_s = round(time.perf_counter() - warm_started, 1)
            if not isinstance(warmed, Mapping) or warmed.get("outcome") != "refused":
                reason = warmed.get("reason") if isinstance(warmed, Mapping) else warmed
                raise ConfigError(
                    f"the worker could not load its role models: {reason}; see {log_path}"
                )

            for index, instance in enumerate(instances, 1):
                systems.reset()
                try:
                    # The expert's calls as the model would write them (tokens), to
                    # compare with the agent's recorded calls.
                    view = model_view(instance.family, names, world=world)
                    expert = world.solve(systems, instance, seed=config.seed, view=view)
                except world.expert_error:
                    expert = None
                systems.reset()
                reset_verified = systems.baseline == seed_state and not systems.changes()
                task_id = f"eval-{run_id}-{index:03d}"
                envelope = {
                    "task_id": task_id,
                    "department": world.department_for(instance.family),
                    "query": instance.instruction,
                    "requested_by": "umiq-eval",
                    "context": {"eval": {"uid": instance.uid, "family": instance.family}},
                }
                hooks.task_started(index, instance)
                sent = time.perf_counter()
                async_result = app.send_task(TASK_NAME, args=[envelope])
                result: dict[str, Any] | None
                try:
                    value = async_result.get(timeout=timeout, propagate=False)
                    result = _result_dict(value, async_result, task_id)
                except CeleryTimeout:
                    result = None
                wall = time.perf_counter() - sent
                record = score_task(
                    instance,
                    systems,
                    result,
                    audit,
                    expert=expert,
                    wall_s=wall,
                    task_id=task_id,
                    world=world,
                )
                if result is None:
                    record.reason = f"no result within {timeout:.0f}s"
                    record.cause_detail = record.reason
                    # the stuck task must not run on under the next reset: replace the
                    # worker and move to a fresh queue, leaving the stuck message behind
                    worker.stop(kill=True)
                    if index < len(instances):
                        settings = settings_for(next(generation))
                        worker, app = start_worker(settings)
                record.reset_verified = reset_verified
                records.append(record)
                hooks.task_done(record)
        finally:
            worker.stop()
            audit.close()
            _delete_queues(used)

    run = {
        "run_id": run_id,
        "command": config.command,
        "world": world.name,
        "started_at": started_at,
        "wall_s": round(time.perf_counter() - started, 1),
        "worker_warmup_s": warmup_s,
        "model_set": config.model_set.record(),
        "models_seen": sorted({m for r in records for m in r.models}),
        "split": config.split,
        "seed": config.seed,
        "per_family": config.per_family,
        "families": families,
        "limit": config.limit,
        "settings": {
            "max_steps": max_steps,
            "max_new_tokens": max_new_tokens,
            "timeout_s": timeout,
            "broker": _redact(settings.resolved_broker_url),
            "database": _redact(settings.resolved_database_url),
            "worker": "one `umiq worker` subprocess, concurrency 1, tasks one at a time",
            "work_dir": str(work),
            "worker_log": str(log_path),
        },
    }
    return LiveResult(records, run)


def _delete_queues(used: Sequence[Any]) -> None:
    """Drop the run's queues from a shared broker (the embedded one lives in the work dir)."""
    from worker.celery_app import create_app, dead_letter_queue, task_queue

    for settings in used:
        if not settings.resolved_broker_url.startswith("amqp"):
            continue
        try:
            with create_app(settings).connection_for_write() as conn:
                for queue in (task_queue(settings), dead_letter_queue(settings)):
                    queue.bind(conn.default_channel).delete()
        except Exception:  # best effort: a leftover queue is harmless, a crash here is not
            continue


def _result_dict(value: Any, async_result: Any, task_id: str) -> dict[str, Any]:
    """The task's result dict; a raised exception becomes a ``failed`` outcome."""
    if isinstance(value, Mapping) and async_result.successful():
        return dict(value)
    return {
        "task_id": task_id,
        "outcome": "failed",
        "answer": "",
        "reason": f"{type(value).__name__}: {value}",
        "steps": [],
        "tokens": 0,
    }


# -- gold trajectories of the same tasks (static evaluation) ----------------------------


def write_split_trajectories(
    path: Path,
    *,
    split: str,
    seed: int,
    per_family: int,
    families: Sequence[str] | None = None,
    limit: int | None = None,
    work_dir: Path | None = None,
    world: World | None = None,
) -> int:
    """Write the expert's trajectories of the tasks ``run_live`` would run; return how many.

    The same instances in the same order, so ``eval static`` on this file and ``eval
    live`` with the same options cover the same tasks.
    """
    import tempfile

    world = world or load_world()
    with (
        tempfile.TemporaryDirectory(prefix="umiq-eval-", dir=work_dir) as tmp,
        world.start(Path(tmp), seed=seed) as office,
    ):
        systems = office.systems
        chosen = _choose_families(world, systems, families)
        instances = select_tasks(
            systems,
            split=split,
            seed=seed,
            per_family=per_family,
            families=chosen,
            limit=limit,
            world=world,
        )
        names = office.known_names()
        trajectories = []
        for instance in instances:
            systems.reset()
            view = model_view(instance.family, names, world=world)
            trajectories.append(world.solve(systems, instance, seed=seed, view=view).trajectory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trajectories, indent=2, ensure_ascii=False), encoding="utf-8")
    return len(trajectories)

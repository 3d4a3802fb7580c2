"""The live run's harness: the world's services, a ``umiq worker`` subprocess on queues of
its own, the warm-up, and the tasks sent one at a time (``run_live``)."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.data.build import model_view
from worker.errors import ConfigError
from worker.evaluation.live.output import LiveResult
from worker.evaluation.live.scoring import LiveTask, record_score, score_task
from worker.evaluation.live.tasks import choose_families, select_tasks
from worker.evaluation.modelsets import ModelSet
from worker.process import WorkerProcess
from worker.world import Instance, Solution, Systems, World, load_world

if TYPE_CHECKING:
    from worker.settings import Settings

WARMUP_DEPARTMENT = "eval-warmup"


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
    shard: tuple[int, int] | None = None
    """``(k, n)``: run only the k-th of n interleaved parts of the selected tasks (1-based),
    so n runs side by side (one per core, each with its own systems and worker) cover
    the split once; ``umiq eval report`` merges a folder of shard folders."""

    def __post_init__(self) -> None:
        if self.shard is not None:
            k, n = self.shard
            if not 1 <= k <= n:
                raise ConfigError(f"shard must be K/N with 1 <= K <= N, got {k}/{n}")
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


def run_live(config: LiveConfig, hooks: Hooks | None = None) -> LiveResult:
    """Run the configured tasks one at a time through a real worker and score each."""
    from worker.audit import AuditLog, ensure_schema
    from worker.audit.keyring import load_keyring
    from worker.audit.sealing import Sealer
    from worker.settings import get_settings

    hooks = hooks or Hooks()
    config.model_set.check()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    config.work.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    base_settings = get_settings()
    max_steps = config.max_steps or base_settings.max_steps
    timeout = config.timeout or task_timeout(max_steps)
    world_name = config.world or base_settings.world or ""
    world = load_world(world_name)

    hooks.status(f"starting the {world.name} systems…")
    with world.start(config.work / world.name, seed=config.seed) as office:
        systems = office.systems
        seed_state = systems.baseline
        names = office.known_names()
        families = choose_families(world, systems, config.families)
        instances = select_tasks(
            systems,
            split=config.split,
            seed=config.seed,
            per_family=config.per_family,
            families=families,
            limit=config.limit,
            world=world,
        )
        if config.shard is not None:
            k, n = config.shard
            instances = instances[k - 1 :: n]
        if not instances:
            raise ConfigError(f"no {config.split} tasks for families {families}")
        hooks.tasks(len(instances))

        workers = _Workers(config, hooks, base_settings, run_id, (world_name, world))
        settings = workers.settings
        ensure_schema(settings.resolved_database_url)
        audit = AuditLog.from_url(
            settings.resolved_database_url, sealer=Sealer(load_keyring(settings))
        )
        workers.start(office.connectors_config())
        records: list[LiveTask] = []
        warmup_s = None
        try:
            warmup_s = _warm_up(workers, hooks, config.ready_timeout, run_id)
            for index, instance in enumerate(instances, 1):
                expert, reset_verified = _solve_then_reset(
                    world, systems, instance, names, seed=config.seed, seed_state=seed_state
                )
                envelope = _envelope(world, instance, f"eval-{run_id}-{index:03d}")
                hooks.task_started(index, instance)
                sent = time.perf_counter()
                result = _send_and_wait(workers.app, envelope, timeout)
                record = score_task(
                    instance,
                    systems,
                    result,
                    audit,
                    expert=expert,
                    wall_s=time.perf_counter() - sent,
                    task_id=envelope["task_id"],
                    world=world,
                )
                # the checker's verdict, recorded: the department's report has a pass rate
                record_score(audit, record, world)
                if result is None:
                    record.reason = f"no result within {timeout:.0f}s"
                    record.cause_detail = record.reason
                    # the stuck task must not run on under the next reset: replace the
                    # worker and move to a fresh queue, leaving the stuck message behind
                    workers.kill(replace=index < len(instances))
                record.reset_verified = reset_verified
                records.append(record)
                hooks.task_done(record)
        finally:
            workers.stop()
            audit.close()
            _delete_queues(workers.used)

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
        "shard": f"{config.shard[0]}/{config.shard[1]}" if config.shard else None,
        "settings": {
            "max_steps": max_steps,
            "max_new_tokens": config.max_new_tokens or base_settings.max_new_tokens,
            "timeout_s": timeout,
            "broker": _redact(workers.settings.resolved_broker_url),
            "database": _redact(workers.settings.resolved_database_url),
            "worker": "one `umiq worker` subprocess, concurrency 1, tasks one at a time",
            "work_dir": str(config.work),
            "worker_log": str(workers.log_path),
        },
    }
    return LiveResult(records, run)


class _Workers:
    """The run's ``umiq worker`` subprocess, each start on queues of its own
    (``umiq.eval.<run>.<n>``): a stuck task's worker is killed and replaced by a fresh one
    on fresh queues, leaving the stuck message behind."""

    def __init__(
        self,
        config: LiveConfig,
        hooks: Hooks,
        base_settings: Settings,
        run_id: str,
        world: tuple[str, World],
    ) -> None:
        self._config = config
        self._hooks = hooks
        self._base_settings = base_settings
        self._run_id = run_id
        self._world = world
        self._generation = itertools.count()
        self._connectors: Mapping[str, Any] = {}
        self.used: list[Settings] = []
        self.log_path = config.work / f"worker-{run_id}.log"
        self.settings = self._next_settings()
        self.process: WorkerProcess | None = None
        self.app: Any = None

    def _next_settings(self) -> Settings:
        from worker.settings import Settings

        queue = f"umiq.eval.{self._run_id}.{next(self._generation)}"
        self.used.append(
            Settings(data_dir=self._config.work, queue=queue, dead_letter_queue=f"{queue}.dead")
        )
        return self.used[-1]

    def start(self, connectors: Mapping[str, Any] | None = None) -> None:
        """Start a worker on the current queues, reaching the world's ``connectors``."""
        from worker.celery_app import create_app

        if connectors is not None:
            self._connectors = connectors
        env = _worker_env(
            self._config,
            self._base_settings,
            (self.settings.queue, self.settings.dead_letter_queue),
            self._connectors,
            self._world,
        )
        self.process = WorkerProcess(env, self.log_path)
        self._hooks.status("starting the worker…")
        self.process.start(self._config.ready_timeout)
        self.app = create_app(self.settings)

    def kill(self, *, replace: bool) -> None:
        """Kill the worker at once and, with ``replace``, start a fresh one on new queues."""
        if self.process is not None:
            self.process.stop(kill=True)
        if replace:
            self.settings = self._next_settings()
            self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def _warm_up(workers: _Workers, hooks: Hooks, ready_timeout: float, run_id: str) -> float:
    """Have the worker load its role models with a task of the tool-less warm-up
    department (refused at once); the seconds it took."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from worker.celery_app import TASK_NAME

    hooks.status("warming up: the worker loads its role models…")
    warm_started = time.perf_counter()
    warm = workers.app.send_task(
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
        warmed = warm.get(timeout=ready_timeout, propagate=False)
    except CeleryTimeout as exc:
        raise ConfigError(
            f"the worker did not load its role models in {ready_timeout:.0f}s; "
            f"see {workers.log_path}"
        ) from exc
    warmup_s = round(time.perf_counter() - warm_started, 1)
    if not isinstance(warmed, Mapping) or warmed.get("outcome") != "refused":
        reason = warmed.get("reason") if isinstance(warmed, Mapping) else warmed
        raise ConfigError(
            f"the worker could not load its role models: {reason}; see {workers.log_path}"
        )
    return warmup_s


def _solve_then_reset(
    world: World,
    systems: Systems,
    instance: Instance,
    names: Sequence[str],
    *,
    seed: int,
    seed_state: Any,
) -> tuple[Solution | None, bool]:
    """The expert's solution of ``instance`` (None when it cannot solve it) on freshly
    reset systems, which are reset again after it; and whether that reset gave back the
    seed state."""
    systems.reset()
    try:
        # The expert's calls as the model would write them (tokens), to compare with the
        # agent's recorded calls.
        view = model_view(instance.family, names, world=world)
        expert = world.solve(systems, instance, seed=seed, view=view)
    except world.expert_error:
        expert = None
    systems.reset()
    return expert, systems.baseline == seed_state and not systems.changes()


def _envelope(world: World, instance: Instance, task_id: str) -> dict[str, Any]:
    """The task's message, sent to the department the world names for its family."""
    return {
        "task_id": task_id,
        "department": world.department_for(instance.family),
        "query": instance.instruction,
        "requested_by": "umiq-eval",
        "context": {"eval": {"uid": instance.uid, "family": instance.family}},
    }


def _send_and_wait(app: Any, envelope: Mapping[str, Any], timeout: float) -> dict[str, Any] | None:
    """Send the task and wait ``timeout`` seconds for its result dict; None when none came."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from worker.celery_app import TASK_NAME

    async_result = app.send_task(TASK_NAME, args=[dict(envelope)])
    try:
        value = async_result.get(timeout=timeout, propagate=False)
    except CeleryTimeout:
        return None
    return _result_dict(value, async_result, str(envelope["task_id"]))


def _redact(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


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

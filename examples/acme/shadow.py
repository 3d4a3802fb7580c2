"""A shadow run of the Acme task split: the figures a department head reads before review.

``run_shadow`` (``umiq acme shadow-run``) starts the Acme systems and a real ``umiq
worker``, puts the department in ``shadow`` (an audited rollout change, undone at the
end unless ``keep`` is set), and for each task of the split that the department owns:

1. the scripted expert solves it on the reset systems, in the worker's view: its gold
   trajectory, answer, outcome and the writes it made (raw arguments), then the systems
   are reset again;
2. the task is sent to the worker like any producer's; the agent runs in shadow (its
   reads real, its writes dry-run) and the task goes to the department's human queue;
3. the "person" takes it from that queue and does it as the expert did:
   ``record_human`` stores the expert's outcome, answer and writes, and the agreement
   with the shadow run;
4. the world's checker judges the agent's shadow run as if its writes had been made:
   on the reset systems the dry-run writes are made as recorded (the worker's own
   connectors, ``worker.rollout.make_shadow_writes``), the task is scored as live
   evaluation scores it (``score_task``, ``World.check`` through the world protocol) and
   the score recorded as a ``checker`` verdict; the systems are reset again.

The agent is the expert itself by default (``examples.acme.replay``: the role models say
the gold trajectory's turns, the worker's policies, gates and connectors do the rest),
so every task should agree; with ``models`` a model-set spec (``shipped``,
``adapters:DIR``…) the agent is the real role models, and the agreement is theirs. The
promotion report of the run's tasks (``worker.rollout.report``) is returned, and written
as ``shadow.json`` and ``shadow.png`` under ``out``.

Broker and audit log are the environment's (``UMIQ_BROKER_URL``, ``UMIQ_DATABASE_URL``,
whose schema must exist), else the embedded ones under ``out/work``. The worker gets its
own queues (``umiq.shadow.<run>``); the human queue is the department's.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.audit import AuditLogProtocol

EXPERT = "expert"


@dataclass(frozen=True)
class HumanOutcome:
    """What the person did with a task: ``record_human``'s outcome, answer and writes."""

    outcome: str
    answer: str = ""
    writes: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass
class ShadowConfig:
    """What ``run_shadow`` runs."""

    out: Path
    department: str = "finance"
    split: str = "test"
    seed: int = 0
    per_family: int = 2
    limit: int | None = None
    families: list[str] | None = None
    """Only these families (default: every family the department owns)."""
    models: str = EXPERT
    """``expert`` (the gold trajectories replayed) or a model-set spec (``shipped``…)."""
    by: str = "shadow-run"
    """Who puts the department in shadow (recorded on the rollout change)."""
    keep: bool = False
    """Leave the department in shadow afterwards (default: its settings are restored)."""
    timeout: float = 600.0
    ready_timeout: float = 600.0
    work_dir: Path | None = None
    human: Callable[[str, HumanOutcome], HumanOutcome] | None = None
    """Changes the person's outcome of a task (by uid): what-if runs and tests."""

    def __post_init__(self) -> None:
        if self.split not in ("train", "dev", "test"):
            raise ConfigError(f"split must be train, dev or test, got {self.split!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1, got {self.limit}")
        self.out = Path(self.out)

    @property
    def work(self) -> Path:
        return (self.work_dir or self.out / "work").expanduser().resolve()


@dataclass
class ShadowTask:
    """One task of the run: the agent's shadow outcome and the person's, compared."""

    uid: str
    family: str
    task_id: str
    shadow_outcome: str | None
    human: dict[str, Any]
    agreement: dict[str, Any]
    checker: dict[str, Any] = field(default_factory=dict)
    """The checker's verdict on the shadow run with its writes made: ``passed``,
    ``reasons``, ``writes_made``."""


@dataclass
class ShadowResult:
    tasks: list[ShadowTask]
    report: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"run": self.run, "report": self.report, "tasks": [asdict(t) for t in self.tasks]}


class _Recording:
    """The world as the expert sees it, noting every write it makes (raw arguments)."""

    def __init__(self, world: Any) -> None:
        self._world = world
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world, name)

    def invoke(self, tool: str, arguments: Mapping[str, Any], key: str) -> Any:
        result = self._world.invoke(tool, arguments, key)
        if self._world.spec(tool).effect == "write" and result.ok:
            self.writes.append((tool, dict(arguments)))
        return result


def _view(settings: Any, department: str, names: list[str]) -> Any:
    """The guard the worker builds for the department's tasks (what the model sees)."""
    from worker.agent.guard import Guard

    known = [*settings.pii_known_names, *names]
    return Guard.for_department(settings.model_copy(update={"pii_known_names": known}), department)


def _worker_env(
    config: ShadowConfig, queue: str, office: Any, replay: Path, names_file: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("UMIQ_QUEUE", "UMIQ_DATA_DIR")}
    if config.models == EXPERT:
        env["UMIQ_ROLE_MODEL"] = "examples.acme.replay:factory"
        env["UMIQ_ACME_REPLAY"] = str(replay)
    else:
        from worker.evaluation.modelsets import MODEL_ENV, ModelSet

        model_set = ModelSet.parse(config.models)
        model_set.check()
        env = {k: v for k, v in env.items() if k not in MODEL_ENV} | model_set.env
    env.update({
        "UMIQ_DATA_DIR": str(config.work),
        "UMIQ_CONNECTORS": json.dumps(office.connectors_config()),
        "UMIQ_QUEUE": queue,
        "UMIQ_DEAD_LETTER_QUEUE": f"{queue}.dead",
        "UMIQ_PII_KNOWN_NAMES_FILE": str(names_file),
        "UMIQ_LOG_FORMAT": "json",
    })  # fmt: skip
    return env


def _take_from_humans(app: Any, queue_name: str, wanted: set[str], timeout: float) -> set[str]:
    """Take the run's tasks off the department's human queue (others are left there)."""
    from worker.rollout.human import human_queue

    taken: set[str] = set()
    deadline = time.monotonic() + timeout
    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue(human_queue(queue_name))
        try:
            while taken != wanted and time.monotonic() < deadline:
                try:
                    message = simple.get(timeout=1)
                except simple.Empty:
                    continue
                task_id = message.payload.get("task_id")
                if task_id in wanted:
                    message.ack()
                    taken.add(task_id)
                # another task's message stays unacknowledged: back on the queue at close
        finally:
            simple.close()
    return taken


def run_shadow(config: ShadowConfig, progress: Callable[[str], None] = print) -> ShadowResult:
    """Run the department's split in shadow through a real worker (see the module)."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from examples.acme.replay import targets_of
    from examples.acme.serve import start_acme
    from examples.acme.tasks import Facts, World, available_families, department_for, solve
    from examples.acme.tasks import generate as generate_tasks
    from worker.audit import AuditLog
    from worker.audit.keyring import load_keyring
    from worker.audit.sealing import Sealer
    from worker.celery_app import TASK_NAME, create_app
    from worker.process import WorkerProcess
    from worker.rollout import record_human, store_for
    from worker.rollout.report import plot, report
    from worker.settings import Settings
    from worker.toolbox import Toolbox

    work = config.work
    work.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    queue = f"umiq.shadow.{run_id}"
    settings = Settings(data_dir=work, queue=queue, dead_letter_queue=f"{queue}.dead")
    if settings.embedded:
        settings.ensure_dirs()
    from worker.audit import ensure_schema

    if settings.resolved_database_url.startswith("sqlite"):
        ensure_schema(settings.resolved_database_url)
    audit = AuditLog.from_url(settings.resolved_database_url, sealer=Sealer(load_keyring(settings)))
    store = store_for(audit, settings)
    started_at = datetime.now(UTC)
    tasks: list[ShadowTask] = []

    progress("starting the Acme systems…")
    with start_acme(work / "acme", seed=config.seed) as office:

        def mailbox() -> dict[str, Any]:  # the outbox in the state a checker reads
            return {"mail": {str(i): dict(m) for i, m in enumerate(office.messages())}}

        world = World(dict(office.build_connectors()), office.reset, mailbox)
        try:
            world.reset()
            names = office.known_names()
            names_file = office.write_known_names(work / "known-names.txt")
            families = [
                f for f in available_families(world) if department_for(f) == config.department
            ]
            if config.families:
                unknown = sorted(set(config.families) - set(families))
                if unknown:
                    raise ConfigError(
                        f"{', '.join(unknown)}: not task families of {config.department!r} "
                        f"(its families: {', '.join(families)})"
                    )
                families = [f for f in families if f in config.families]
            if not families:
                raise ConfigError(f"no Acme task family belongs to {config.department!r}")
            drawn = generate_tasks(
                Facts.gather(world), seed=config.seed, per_family=config.per_family,
                families=families, splits={config.split: config.per_family},
            )[config.split]  # fmt: skip
            drawn = drawn[: config.limit] if config.limit else drawn

            # 1. the expert solves each task: the gold the person follows (and the agent,
            # when the expert plays it)
            progress(f"the expert solves {len(drawn)} {config.split} tasks…")
            gold: dict[str, tuple[Any, HumanOutcome]] = {}
            targets: dict[str, Any] = {}
            for index, instance in enumerate(drawn, 1):
                task_id = f"shadow-{run_id}-{index:03d}"
                world.reset()
                recording = _Recording(world)
                view = _view(settings, config.department, names)
                solution = solve(recording, instance, seed=config.seed, view=view)  # type: ignore[arg-type]
                human = HumanOutcome(solution.outcome, solution.answer, tuple(recording.writes))
                if config.human is not None:
                    human = config.human(instance.uid, human)
                gold[task_id] = (instance, human)
                targets[task_id] = targets_of(solution.trajectory)
            world.reset()
            replay = work / f"replay-{run_id}.json"
            replay.write_text(json.dumps(targets, ensure_ascii=False), encoding="utf-8")

            # 2. the department goes to shadow, the worker runs each task
            before = store.live(config.department)
            store.set(
                config.department, {"mode": "shadow"}, by=config.by,
                reason=f"shadow run {run_id} of the Acme {config.split} split",
            )  # fmt: skip
            human_queue = store.live(config.department).settings.human_queue or (  # type: ignore[union-attr]
                f"umiq.human.{config.department}"
            )
            env = _worker_env(config, queue, office, replay, names_file)
            toolbox = Toolbox.from_settings(office.connectors_config())
            app = create_app(settings)
            node = ("--loglevel", "INFO", "--hostname", f"shadow-{run_id}@%h")
            try:
                with WorkerProcess(
                    env, work / f"worker-{run_id}.log", node, ready_timeout=config.ready_timeout
                ):
                    for task_id, (instance, human) in gold.items():
                        progress(f"{task_id}  {instance.uid}")
                        envelope = {
                            "task_id": task_id,
                            "department": config.department,
                            "query": instance.instruction,
                            "requested_by": config.by,
                            "context": {"shadow_run": {"uid": instance.uid, "run": run_id}},
                        }
                        pending = app.send_task(TASK_NAME, args=[envelope])
                        try:
                            result = pending.get(timeout=config.timeout, propagate=False)
                        except CeleryTimeout as exc:
                            raise ConfigError(
                                f"{task_id}: no result within {config.timeout:.0f}s; see the "
                                f"worker log in {work}"
                            ) from exc
                        if not isinstance(result, Mapping) or result.get("outcome") != (
                            "not_automated"
                        ):
                            raise ConfigError(f"{task_id} did not go to people: {result!r}")
                        # 3. the person takes it from the human queue and does it
                        if not _take_from_humans(app, human_queue, {task_id}, 30):
                            raise ConfigError(f"{task_id} is not on the human queue {human_queue}")
                        details = record_human(
                            audit, task_id, by="acme-expert", outcome=human.outcome,
                            answer=human.answer, writes=human.writes,
                        )  # fmt: skip
                        # 4. the checker judges the shadow run as if its writes were made
                        checked = _check(audit, task_id, instance, world, toolbox)
                        tasks.append(
                            ShadowTask(
                                uid=instance.uid,
                                family=instance.family,
                                task_id=task_id,
                                shadow_outcome=_shadow_outcome(audit, task_id),
                                human={**asdict(human), "writes": [w[0] for w in human.writes]},
                                agreement=details.agreement,
                                checker=checked,
                            )
                        )
            finally:
                _delete_queues(app, settings)
                app.close()
                if not config.keep:
                    previous = {"mode": before.settings.mode if before.settings else "off"}
                    store.set(
                        config.department, previous, by=config.by,
                        reason=f"shadow run {run_id} done",
                    )  # fmt: skip
        finally:
            world.close()

    figures = report(audit, config.department, task_ids=[t.task_id for t in tasks])
    audit.close()
    config.out.mkdir(parents=True, exist_ok=True)
    plot(figures, config.out / "shadow.png")
    run = {
        "run_id": run_id,
        "department": config.department,
        "split": config.split,
        "seed": config.seed,
        "per_family": config.per_family,
        "limit": config.limit,
        "families": families,
        "models": config.models,
        "started_at": started_at.isoformat(timespec="seconds"),
        "kept_in_shadow": config.keep,
    }
    result = ShadowResult(tasks, figures, run)
    (config.out / "shadow.json").write_text(
        json.dumps(result.record(), indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    return result


def _delete_queues(app: Any, settings: Any) -> None:
    """Drop the run's worker queues from a shared broker (best effort)."""
    from worker.celery_app import dead_letter_queue, task_queue

    if not settings.resolved_broker_url.startswith("amqp"):
        return
    try:
        with app.connection_for_write() as conn:
            for queue in (task_queue(settings), dead_letter_queue(settings)):
                queue.bind(conn.default_channel).delete()
    except Exception:  # a leftover queue is harmless; failing the run here is not
        pass


def _check(
    audit: AuditLogProtocol, task_id: str, instance: Any, systems: Any, toolbox: Any
) -> dict[str, Any]:
    """The world's checker on the agent's shadow run of ``task_id`` as if its writes had
    been made (see the module, step 4), recorded as a ``checker`` verdict."""
    from worker.evaluation.live import record_score, score_task
    from worker.rollout import make_shadow_writes, shadow_result
    from worker.world import load_world

    acme = load_world("acme")
    systems.reset()
    try:
        made = make_shadow_writes(audit, task_id, toolbox)
        scored = score_task(instance, systems, shadow_result(audit, task_id), audit, world=acme)
    finally:
        systems.reset()
    record_score(audit, scored, acme)
    return {
        "passed": scored.passed,
        "reasons": scored.reasons,
        "writes_made": sum(1 for result in made if result.ok),
    }


def _shadow_outcome(audit: AuditLogProtocol, task_id: str) -> str | None:
    """How the agent's own run of the task ended (before it went to people)."""
    from worker.rollout.human import HANDLED_BY_HUMAN, NOT_AUTOMATED

    for step in reversed(audit.steps(task_id)):
        outcome = step.details.get("outcome") if step.kind == "outcome" else None
        if outcome and outcome not in (NOT_AUTOMATED, HANDLED_BY_HUMAN):
            return str(outcome)
    return None

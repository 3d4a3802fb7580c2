"""Whole Acme episodes through a real worker at several concurrencies, per model backend.

    python bench/episodes.py --backends hf openai --levels 1 4 16 64 --tasks 64 \\
        --start --threads 2 --out episodes-run

Issue 23's benchmark. It starts the Acme systems (ERP, HR database, mail) on loopback, a
fresh Postgres database (dropped afterwards unless ``--keep``) and, for each backend and
each level ``c``, one ``umiq worker`` with ``--concurrency c`` on RabbitMQ (a fresh queue
per level): ``c`` episodes run at once, on the worker's threads, sharing its one role
model. The systems are reset to their seed before each level, and every level of every
backend runs the same ``--tasks`` tasks of the Acme test split (round-robin over its
families). Backends:

- ``hf``: the in-process path (transformers + peft in the worker process), whose
  concurrent episodes share batched ``generate`` calls (``worker/models/batching.py``);
- ``hf-serial``: the same with ``UMIQ_MODEL_MAX_BATCH=1``: one request at a time, the
  in-process path as it was before batching (issue 23's "today's path");
- ``openai``: the engine backend against ``llama-server`` (``--start`` starts one per
  level with ``--parallel c`` (times ``--slots-per-episode``) and ``--threads``; else
  ``--engine-url``), the client
  choosing each request's slot (``worker/models/slots.py``);
- ``openai-engine-slots``: the same with ``UMIQ_ENGINE_SLOTS=off``: llama-server
  places each request in a slot itself (by shared prefix, whatever the adapter);
- ``scripted``: the scripted model of the tests playing the expert's calls (no model
  time): checks the benchmark itself, as ``bench/load.py`` checks the framework.

The worker's role model is wrapped by ``bench/timed_model.py``, which records every
generation (its wall time, tokens, and what the backend reports: llama.cpp's
``prompt_ms``/``predicted_ms`` and cached tokens; in process, the lock wait and the
time to the first token). Per level it reports episodes/min and completion tokens/s over
the level's wall time (first task received to last outcome), the mean generate time
seen by an episode, its queue wait, prefill and decode time, the prompt-cache hit rate,
how many generations were in flight at once, the framework overhead per step from the
audit log (as ``bench/load.py``: commit-to-commit gap minus the step's model time), the
resident memory of the worker and of llama-server, and the episodes' outcomes. The
weights on disk, base + three adapters against three full models, are computed from the
files. Figures only: nothing is asserted, and no task is scored (tasks run concurrently
on one set of systems; the pass rate is ``umiq eval live``'s, one task at a time).

Writes ``episodes.json``, ``episodes.md`` (the table), ``episodes.png`` (when matplotlib
is installed), the generation records and the worker logs under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import AMQP, fresh_database, memory_mib, start_llama_server, stop  # noqa: E402
from episode_figures import (  # noqa: E402
    markdown_table,
    plot,
    ratio_lines,
    summarize,
    weight_files,
    weights_lines,
)
from timed_model import GENERATIONS_ENV, INNER_ENV  # noqa: E402

BACKENDS = ("hf", "hf-serial", "openai", "openai-engine-slots", "scripted")
ENGINES = ("openai", "openai-engine-slots")


def script_from(trajectory: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The scripted model's script for a gold trajectory: its calls, then its answer."""
    from worker.agent import protocol

    script: list[dict[str, Any]] = []
    answer = None
    for turn in trajectory.get("conversations", []):
        if turn["from"] == "caller":
            call = protocol.parse_caller(turn["value"])
            script.append({"tool": call.tool, "arguments": dict(call.arguments)})
        elif turn["from"] == "conclusion":
            answer = turn["value"]
    if answer is not None:
        script.append({"answer": answer})
    return script


def read_records(path: Path, prefix: str) -> list[dict[str, Any]]:
    """The generation records of the tasks whose id starts with ``prefix``."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if str(r.get("task_id") or "").startswith(prefix)]


def read_tasks(engine: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """Each task's receipt, its outcome step's time and its outcome, from the audit log."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        tasks = {
            r.task_id: {"received": datetime.fromisoformat(r.received_at), "ended": None}
            for r in conn.execute(
                sa.text("SELECT task_id, received_at FROM task WHERE task_id LIKE :p"),
                {"p": prefix + "%"},
            )
        }
        for r in conn.execute(
            sa.text(
                "SELECT task_id, details, created_at FROM step "
                "WHERE kind = 'outcome' AND task_id LIKE :p"
            ),
            {"p": prefix + "%"},
        ):
            details = r.details if isinstance(r.details, dict) else json.loads(r.details)
            task = tasks.setdefault(r.task_id, {"received": None})
            task["ended"] = datetime.fromisoformat(r.created_at)
            task["outcome"] = details.get("outcome")
    return tasks


def worker_env(args: argparse.Namespace, data: Path, url: str, office: Any) -> dict[str, str]:
    """What every worker of the run shares: broker, database, systems, model set."""
    from worker.evaluation.live import WARMUP_DEPARTMENT
    from worker.evaluation.modelsets import BASE_ENV, ModelSet
    from worker.settings import DepartmentSettings, Settings
    from worker.world import load_world

    # Nothing of this shell's umiq settings but the base model reaches the workers.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_") or k == BASE_ENV}
    env = ModelSet.parse(args.models).environ(inherited)
    defaults = load_world("acme").settings().get("departments", {})
    departments = {
        **{name: DepartmentSettings.model_validate(d) for name, d in defaults.items()},
        WARMUP_DEPARTMENT: DepartmentSettings(tools=[]),
    }
    here = Settings()
    env.update(
        {
            "UMIQ_DATA_DIR": str(data),
            "UMIQ_MODEL_DIR": str(here.resolved_model_dir),
            "UMIQ_BROKER_URL": AMQP,
            "UMIQ_DATABASE_URL": url,
            "UMIQ_CONNECTORS": json.dumps(office.connectors_config()),
            "UMIQ_DEPARTMENTS": json.dumps(
                {name: d.model_dump(mode="json") for name, d in departments.items()}
            ),
            "UMIQ_MAX_STEPS": str(args.max_steps),
            "UMIQ_MAX_NEW_TOKENS": str(args.max_new_tokens),
            "UMIQ_LOG_FORMAT": "json",
            "UMIQ_WORLD": "acme",
            "UMIQ_ROLE_MODEL": "bench.timed_model:factory",
            # The benchmark's throwaway database on the local server, as the tests use it.
            "UMIQ_ALLOW_PRIVILEGED_LOGIN": "1",
        }
    )
    return env


def run_level(
    ctx: dict[str, Any], backend: str, level: int, engine_url: str | None
) -> dict[str, Any]:
    """One worker with ``--concurrency level`` serves the run's tasks; the level's row."""
    from kombu import Connection
    from load import step_table

    from worker.celery_app import TASK_NAME, create_app, task_queue
    from worker.evaluation.live import WARMUP_DEPARTMENT
    from worker.process import WorkerProcess
    from worker.settings import Settings

    args, out, tag = ctx["args"], ctx["out"], ctx["tag"]
    ctx["systems"].reset()
    name = f"{backend}-{level}"
    prefix = f"ep-{tag}-{name}-"
    queue = f"umiq.bench.{tag}.{name}"
    generations = out / f"generations-{name}.jsonl"
    env = dict(ctx["env"])
    env.update({"UMIQ_QUEUE": queue, "UMIQ_DEAD_LETTER_QUEUE": f"{queue}.dead"})
    env[GENERATIONS_ENV] = str(generations)
    env["UMIQ_MODEL_BACKEND"] = "openai" if backend in ENGINES else "hf"
    if backend == "openai-engine-slots":
        env["UMIQ_ENGINE_SLOTS"] = "off"  # llama-server places requests itself
    if backend == "scripted":
        env[INNER_ENV] = "tests.support.scripted:factory"
        if args.delay:
            env["UMIQ_TEST_GENERATION_DELAY"] = str(args.delay)
    if backend == "hf-serial":
        env["UMIQ_MODEL_MAX_BATCH"] = "1"  # one request at a time, as before batching
    if backend in ("hf", "hf-serial") and args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)  # torch's intra-op threads
    settings = Settings(
        data_dir=out / "client",
        broker_url=AMQP,
        database_url=ctx["url"],
        queue=queue,
        dead_letter_queue=f"{queue}.dead",
    )
    client = create_app(settings)
    worker = WorkerProcess(
        env,
        out / f"worker-{name}.log",
        (
            "--loglevel",
            "INFO",
            "--hostname",
            f"episodes-{name}-{tag}@%h",
            "--concurrency",
            str(level),
        ),
        cwd=ROOT,
        ready_timeout=args.ready_timeout,
    )
    engine = ctx["engine"]
    llama = None
    try:
        if backend in ENGINES:
            if args.start:  # one per level: its slots are the level, its cache starts cold
                llama, engine_url = start_llama_server(
                    ctx["settings"].data_dir,
                    parallel=level * args.slots_per_episode,
                    threads=args.threads,
                    ctx_per_slot=args.ctx_per_slot,
                    log=out / f"llama-server-{name}.log",
                )
            worker.env.update(
                {"UMIQ_ENGINE_URL": str(engine_url), "UMIQ_ENGINE_CONCURRENCY": str(level)}
            )
        worker.start()
        warm_id = f"{prefix}warmup"
        client.send_task(
            TASK_NAME,
            args=[
                {
                    "task_id": warm_id,
                    "department": WARMUP_DEPARTMENT,
                    "query": "warm-up: load the role models",
                    "requested_by": "bench-episodes",
                }
            ],
        )
        _wait(engine, warm_id, 1, args.ready_timeout, worker)
        for n, (instance, script) in enumerate(ctx["tasks"]):
            context: dict[str, Any] = {"eval": {"uid": instance.uid, "family": instance.family}}
            if backend == "scripted":
                context["script"] = script
            client.send_task(
                TASK_NAME,
                args=[
                    {
                        "task_id": f"{prefix}{n:03d}",
                        "department": ctx["world"].department_for(instance.family),
                        "query": instance.instruction,
                        "requested_by": "bench-episodes",
                        "context": context,
                    }
                ],
            )
        timeout = args.timeout or 60 + args.task_timeout * math.ceil(len(ctx["tasks"]) / level)
        _wait(engine, f"{prefix}0", len(ctx["tasks"]), timeout, worker)
        worker_memory = memory_mib(worker.process.pid) if worker.process else None
        engine_memory = memory_mib(llama.pid) if llama is not None else None
        tasks = {k: v for k, v in read_tasks(engine, prefix).items() if k != warm_id}
        _, totals = step_table(engine, f"{prefix}0")
    finally:
        worker.stop()
        stop(llama)
        client.close()
        with Connection(AMQP) as conn:
            for q in (queue, f"{queue}.dead"):
                task_queue(settings, q)(conn.default_channel).delete()
    return summarize(
        backend,
        level,
        read_records(generations, prefix),
        tasks,
        overhead_ms_per_step=round(totals["overhead_ms_per_step"], 1) if totals["steps"] else None,
        worker_memory=worker_memory,
        engine_memory=engine_memory,
    )


def _wait(engine: Any, prefix: str, count: int, timeout: float, worker: Any) -> None:
    """Until ``count`` tasks whose id starts with ``prefix`` have an outcome."""
    from load import outcomes

    deadline = time.monotonic() + timeout
    shown = 0
    while (done := outcomes(engine, prefix)) < count:
        if not worker.alive:
            raise SystemExit(f"the worker died; see {worker.log_path}")
        if time.monotonic() > deadline:
            print(f"timeout: {done}/{count} ended after {timeout:.0f} s", file=sys.stderr)
            return
        if count > 1 and done - shown >= max(1, count // 4):
            print(f"  {done}/{count} ended", file=sys.stderr, flush=True)
            shown = done
        time.sleep(0.5)


def choose_tasks(args: argparse.Namespace, world: Any, office: Any) -> list[tuple[Any, Any]]:
    """The run's tasks of the Acme test split, each with the expert's script (the
    scripted backend plays it; the systems are reset before and after solving)."""
    from worker.data.build import model_view
    from worker.evaluation.live import choose_families, select_tasks

    systems = office.systems
    families = choose_families(world, systems, None)
    drawn = select_tasks(
        systems,
        split="test",
        seed=args.seed,
        per_family=args.per_family,
        families=families,
        world=world,
    )
    instances = [drawn[n % len(drawn)] for n in range(args.tasks)]
    chosen = []
    names = office.known_names()
    for instance in instances:
        script = None
        if "scripted" in args.backends:
            systems.reset()
            view = model_view(instance.family, names, world=world)
            try:
                script = script_from(
                    world.solve(systems, instance, seed=args.seed, view=view).trajectory
                )
            except world.expert_error:
                script = [{"answer": "The expert cannot solve this task."}]
        chosen.append((instance, script))
    systems.reset()
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=["hf", "openai"])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--tasks", type=int, default=16, help="episodes per level")
    parser.add_argument("--per-family", type=int, default=12, help="test tasks drawn per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="shipped", help="model set (as umiq eval live)")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--start", action="store_true", help="start llama-server per level")
    parser.add_argument("--engine-url", default=None, help="a running engine (without --start)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llama-server threads; torch threads (OMP_NUM_THREADS) in process",
    )
    parser.add_argument("--ctx-per-slot", type=int, default=4096, help="llama-server context")
    parser.add_argument("--slots-per-episode", type=int, default=1, help="llama-server slots")
    parser.add_argument("--delay", type=float, default=0.0, help="scripted: seconds/generation")
    parser.add_argument(
        "--task-timeout",
        type=float,
        default=2400.0,
        help="seconds one episode may take; a level waits 60 s plus this per wave of episodes",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds per level")
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=Path("episodes-run"))
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if set(ENGINES) & set(args.backends) and not (args.start or args.engine_url):
        parser.error("the openai backend needs --start or --engine-url")
    if args.tasks < max(args.levels):
        print(
            f"note: {args.tasks} tasks per level: at most {args.tasks} run at once", file=sys.stderr
        )

    import sqlalchemy as sa

    from tests.support.cli import umiq
    from worker.settings import Settings
    from worker.world import load_world

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    world = load_world("acme")
    settings = Settings()
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    started = time.monotonic()
    with fresh_database(args.keep) as url, world.start(out / "acme", seed=args.seed) as office:
        env = worker_env(args, out / "data", url, office)
        done = umiq(env, "db", "upgrade")
        if done.returncode:
            raise SystemExit(done.stderr)
        engine = sa.create_engine(url)
        ctx = {
            "args": args,
            "out": out,
            "tag": uuid.uuid4().hex[:6],
            "env": env,
            "url": url,
            "engine": engine,
            "world": world,
            "systems": office.systems,
            "settings": settings,
            "tasks": choose_tasks(args, world, office),
        }
        try:
            for backend in args.backends:
                for level in args.levels:
                    print(f"{backend} at {level} episodes at once…", file=sys.stderr, flush=True)
                    rows.append(run_level(ctx, backend, level, args.engine_url))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            engine.dispose()
    load_after = os.getloadavg()

    found = {b: weight_files(b, settings) for b in args.backends}
    table = markdown_table(rows)
    notes = "\n".join(n for n in (ratio_lines(rows), weights_lines(found)) if n)
    print("\n" + table + ("\n" + notes if notes else ""))
    run = {
        "argv": sys.argv[1:],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": {"before": load_before[0], "after": load_after[0]},
        "wall_s": round(time.monotonic() - started, 1),
        "tasks": [{"uid": i.uid, "family": i.family} for i, _ in ctx["tasks"]],
        "weights": found,
        "rows": rows,
    }
    (out / "episodes.json").write_text(json.dumps(run, indent=1, default=str))
    (out / "episodes.md").write_text(table + ("\n" + notes if notes else ""))
    plot(rows, out / "episodes.png")
    print(f"written under {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

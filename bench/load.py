"""Load run: many tasks through real workers on RabbitMQ + Postgres + the Acme ERP.

    nice -n 19 python bench/load.py --tasks 1000 --workers 2 --concurrency 2

Starts the Acme ERP on loopback, a fresh Postgres database (dropped afterwards unless
``--keep``) and ``--workers`` ``umiq worker`` processes with the scripted role model
(``tests.support.scripted``: no model time, so what a step costs is the framework's:
policies, minimization, the audit chain, the broker, the connector). It publishes every
task at once to a fresh queue and waits until each has its outcome, then prints the
throughput and, from the audit log, per step kind: the time from the previous commit to
this one, the part spent in the model or the connector (``latency_ms``) and the rest,
the framework overhead (the connector's HTTP call is inside the gap of the
``policy:minimization`` step that follows it). Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402
from common import AMQP, fresh_database  # noqa: E402
from kombu import Connection  # noqa: E402

from examples.acme.serve import start_erp  # noqa: E402
from tests.support.cli import bare_env, umiq  # noqa: E402
from worker.celery_app import TASK_NAME, create_app, task_queue  # noqa: E402
from worker.process import WorkerProcess  # noqa: E402
from worker.settings import Settings  # noqa: E402


def envelope(task_id: str, invoice_id: str, write: bool) -> dict[str, Any]:
    """Read an invoice; every fourth task also credits it 0.01 (a write)."""
    script: list[dict[str, Any]] = [
        {"tool": "get_invoice", "arguments": {"invoice_id": invoice_id}}
    ]
    query = f"What is the status of invoice {invoice_id}?"
    if write:
        credit = {"invoice_id": invoice_id, "amount": 0.01, "reason": f"Load run {task_id}."}
        script.append({"tool": "create_credit_note", "arguments": credit})
        query = f"Record a credit note of 0.01 on invoice {invoice_id}."
    return {
        "task_id": task_id,
        "department": "finance",
        "query": query,
        "requested_by": "load-bench",
        "context": {"script": script},
    }


def outcomes(engine: sa.Engine, prefix: str) -> int:
    query = sa.text("SELECT count(*) FROM step WHERE kind = 'outcome' AND task_id LIKE :p")
    with engine.connect() as conn:
        return int(conn.execute(query, {"p": prefix + "%"}).scalar_one())


def step_table(engine: sa.Engine, prefix: str) -> tuple[list[list[Any]], dict[str, float]]:
    """Per step kind: count, mean gap since the previous commit, mean model/connector
    time, mean and p95 overhead (gap minus that time), in ms; and per-task totals."""
    with engine.connect() as conn:
        tasks = {
            r.task_id: datetime.fromisoformat(r.received_at)
            for r in conn.execute(
                sa.text("SELECT task_id, received_at FROM task WHERE task_id LIKE :p"),
                {"p": prefix + "%"},
            )
        }
        steps = conn.execute(
            sa.text(
                "SELECT task_id, kind, details, latency_ms, created_at FROM step "
                "WHERE task_id LIKE :p ORDER BY seq"
            ),
            {"p": prefix + "%"},
        ).all()
    gaps: dict[str, list[tuple[float, float]]] = defaultdict(list)
    per_task: dict[str, float] = defaultdict(float)
    last: dict[str, Any] = {}
    durations = []
    for row in steps:
        before = last.get(row.task_id, tasks.get(row.task_id))
        if before is None:
            continue
        created = datetime.fromisoformat(row.created_at)
        gap = (created - before).total_seconds() * 1000
        spent = float(row.latency_ms or 0)
        details = row.details if isinstance(row.details, dict) else json.loads(row.details)
        kind = row.kind if row.kind != "policy" else f"policy:{details.get('policy', '?')}"
        gaps[kind].append((gap, spent))
        per_task[row.task_id] += gap - spent
        last[row.task_id] = created
        if row.kind == "outcome":
            durations.append((created - tasks[row.task_id]).total_seconds() * 1000)
    framework = list(per_task.values())
    table = []
    for kind in sorted(gaps, key=lambda k: -len(gaps[k])):
        pairs = gaps[kind]
        over = sorted(g - s for g, s in pairs)
        table.append([
            kind, len(pairs), statistics.fmean(g for g, _ in pairs),
            statistics.fmean(s for _, s in pairs), statistics.fmean(over),
            over[min(len(over) - 1, int(0.95 * len(over)))],
        ])  # fmt: skip
    all_steps = [p for pairs in gaps.values() for p in pairs]
    totals = {
        "steps": len(all_steps),
        "task_ms": statistics.fmean(durations) if durations else 0.0,
        "framework_ms_per_task": statistics.fmean(framework) if framework else 0.0,
        "overhead_ms_per_step": statistics.fmean(g - s for g, s in all_steps),
    }
    return table, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="threads per worker")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    opts = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    queue, dead = f"umiq.bench.{tag}", f"umiq.bench.{tag}.dead"
    workers: list[WorkerProcess] = []
    with (
        fresh_database(opts.keep) as url,
        tempfile.TemporaryDirectory(prefix="umiq-load-") as tmp,
        start_erp(Path(tmp)) as erp,
    ):
        env = bare_env()
        env.update({
            "UMIQ_DATA_DIR": str(Path(tmp) / "data"),
            "UMIQ_BROKER_URL": AMQP,
            "UMIQ_DATABASE_URL": url,
            "UMIQ_QUEUE": queue,
            "UMIQ_DEAD_LETTER_QUEUE": dead,
            "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
            "UMIQ_DEPARTMENTS": json.dumps({"finance": {
                "mode": "auto", "tools": ["erp:*"], "may_write": True, "approvals": []}}),
            "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
            "UMIQ_LOG_FORMAT": "json",
        })  # fmt: skip
        done = umiq(env, "db", "upgrade")
        if done.returncode:
            raise SystemExit(done.stderr)
        settings = Settings(data_dir=Path(tmp) / "client", broker_url=AMQP, database_url=url,
                            queue=queue, dead_letter_queue=dead)  # fmt: skip
        client = create_app(settings)
        engine = sa.create_engine(url)
        load_before = os.getloadavg()
        try:
            for n in range(opts.workers):
                args = ("--loglevel", "INFO", "--hostname", f"load{n}-{tag}@%h",
                        "--concurrency", str(opts.concurrency))  # fmt: skip
                worker = WorkerProcess(env, Path(tmp) / f"worker{n}.log", args, cwd=ROOT)
                worker.start()
                workers.append(worker)
            invoices = [f"INV-{1001 + n}" for n in range(12)]
            prefix = f"load-{tag}-"
            started = time.monotonic()
            for n in range(opts.tasks):
                task_id = f"{prefix}{n:05d}"
                client.send_task(TASK_NAME, args=[envelope(task_id, invoices[n % 12], n % 4 == 0)])
            published = time.monotonic() - started
            ended, shown = 0, 0
            while ended < opts.tasks:
                time.sleep(1)
                ended = outcomes(engine, prefix)
                if not all(w.alive for w in workers):
                    raise SystemExit("a worker died; see its log")
                if ended - shown >= opts.tasks / 10:
                    print(f"{ended}/{opts.tasks} ended", file=sys.stderr, flush=True)
                    shown = ended
            wall = time.monotonic() - started
            served = [w.log_text().count('"task.finished"') for w in workers]
            load_after = os.getloadavg()
            table, totals = step_table(engine, prefix)
        finally:
            for worker in workers:
                worker.stop()
            client.close()
            engine.dispose()
            with Connection(AMQP) as conn:
                for name in (queue, dead):
                    task_queue(settings, name)(conn.default_channel).delete()
    print(
        f"\n{opts.tasks} tasks, {opts.workers} workers x {opts.concurrency} threads, "
        f"scripted model, {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after"
    )
    print(
        f"published in {published:.1f} s; all ended after {wall:.1f} s; tasks per worker: {served}"
    )
    print(
        f"throughput: {opts.tasks / wall:.2f} tasks/s, {totals['steps'] / wall:.1f} steps/s; "
        f"mean task {totals['task_ms']:.0f} ms from start to outcome, of which framework "
        f"{totals['framework_ms_per_task']:.0f} ms"
    )
    print(f"framework overhead per step: {totals['overhead_ms_per_step']:.1f} ms (mean)")
    print(
        "gap: from the previous commit of the task (or its start) to this step's commit; "
        "model: the step's latency_ms; overhead: the rest. The connector's HTTP call falls "
        "in the gap of the policy:minimization step that follows it.\n"
    )
    header = ["step", "count", "gap ms", "model ms", "overhead ms", "overhead p95"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for kind, count, gap, spent, over, p95 in table:
        print(f"| {kind} | {count} | {gap:.1f} | {spent:.1f} | {over:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()

"""Ten worker processes appending to one Postgres chain at once, as ``umiq_worker``."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest
from sqlalchemy import create_engine, select, text

from worker.audit import AuditLog, upgrade
from worker.audit.tables import CHAIN_TABLES

pytestmark = pytest.mark.integration

PROCESSES = 10
TASKS = 3
ROWS_PER_TASK = 10  # task, 6 steps, 3 tool calls
ROWS = PROCESSES * TASKS * ROWS_PER_TASK
ROLE = "umiq_worker"


def _writer(url: str, name: str, barrier: object) -> None:
    """Append TASKS tasks of ROWS_PER_TASK rows, as umiq_worker, starting with the others."""
    log = AuditLog.from_url(url, role=ROLE)
    with log.engine.connect() as conn:  # connect before the barrier: start at the same time
        assert conn.execute(text("SELECT current_user")).scalar() == ROLE
    barrier.wait()  # type: ignore[attr-defined]
    for t in range(TASKS):
        task_id = f"{name}-t{t}"
        log.append_task(task_id=task_id, department="finance", query="q", requested_by=name)
        for i in range(1, 10):
            if i % 3 == 0:
                log.append_tool_call(
                    task_id=task_id,
                    step=i,
                    idempotency_key=f"{task_id}:{i}",
                    tool="erp",
                    effect="read",
                    request={"writer": name, "i": i},
                    ok=True,
                )
            else:
                log.append_step(task_id=task_id, index=i, kind="planner", output=f"{name} {i}")
    log.close()


def test_ten_processes_form_one_chain(postgres_url: str) -> None:
    """Ten processes appending 30 rows each give one chain: seqs 1..300, no fork, all rows."""
    upgrade(postgres_url)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    names = [f"w{n}" for n in range(PROCESSES)]
    procs = [ctx.Process(target=_writer, args=(postgres_url, name, barrier)) for name in names]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES

    log = AuditLog.from_url(postgres_url)
    report = log.verify()
    assert (report.ok, report.rows, report.first_broken) == (True, ROWS, None)
    assert log.head()[0] == ROWS

    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        rows = [
            (name, row)
            for name, model in CHAIN_TABLES.items()
            for row in conn.execute(select(model.__table__)).mappings()  # type: ignore[attr-defined]
        ]
    engine.dispose()
    log.close()

    assert sorted(row["seq"] for _, row in rows) == list(range(1, ROWS + 1))  # no gap, no dup
    prev_hashes = Counter(row["prev_hash"] for _, row in rows)
    assert prev_hashes.most_common(1)[0][1] == 1  # no two rows after the same link: no fork
    per_writer = Counter(row["task_id"].split("-")[0] for _, row in rows)
    assert per_writer == dict.fromkeys(names, TASKS * ROWS_PER_TASK)
    for name in names:
        mine = [(table, row) for table, row in rows if row["task_id"].startswith(f"{name}-")]
        assert Counter(table for table, _ in mine) == {
            "task": TASKS,
            "step": TASKS * 6,
            "tool_call": TASKS * 3,
        }
        outputs = {row["output"] for table, row in mine if table == "step"}
        assert outputs == {f"{name} {i}" for i in range(1, 10) if i % 3}

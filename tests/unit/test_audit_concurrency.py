"""Writers in separate processes share one SQLite audit file without forking the chain."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from worker.audit import AuditLog, ensure_schema

PROCESSES = 2
APPENDS = 40


def _writer(url: str, name: str, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    ensure_schema(url)  # both processes migrate the fresh file at once, too
    log = AuditLog.from_url(url)
    log.append_task(task_id=name, department="finance", query="q", requested_by=name)
    for i in range(APPENDS):
        if i % 4 == 3:
            log.append_tool_call(
                task_id=name,
                step=i,
                idempotency_key=f"{name}:{i}",
                tool="erp",
                effect="read",
                request={"i": i},
                ok=True,
            )
        else:
            log.append_step(task_id=name, index=i, kind="planner", output=f"{name} {i}")
    log.close()


def test_processes_appending_at_once_form_one_valid_chain(tmp_path: Path) -> None:
    """Two processes appending concurrently to one file give a valid chain with no duplicate seq."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_writer, args=(url, f"w{i}", barrier)) for i in range(PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES

    log = AuditLog.from_url(url)
    report = log.verify()
    assert report.ok, report.first_broken
    assert report.rows == PROCESSES * (APPENDS + 1)
    seqs = [
        r.seq
        for name in (f"w{i}" for i in range(PROCESSES))
        for r in (log.task(name), *log.steps(name), *log.tool_calls(name))
        if r is not None
    ]
    assert sorted(seqs) == list(range(1, PROCESSES * (APPENDS + 1) + 1))
    log.close()

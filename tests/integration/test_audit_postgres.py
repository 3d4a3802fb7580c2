"""The audit log on a real Postgres: migrations, append/verify, tampering, concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from worker.audit import AuditLog, current_revision, ensure_schema, head_revision, upgrade
from worker.audit.verify import HASH_MISMATCH
from worker.errors import AuditError

pytestmark = pytest.mark.integration

THREADS = 8
APPENDS = 15


def _psycopg(url: str) -> psycopg.Connection:
    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))


@pytest.fixture
def log(postgres_url: str) -> Iterator[AuditLog]:
    upgrade(postgres_url)
    audit = AuditLog.from_url(postgres_url)
    yield audit
    audit.close()


def _episode(log: AuditLog, task_id: str) -> None:
    log.append_task(
        task_id=task_id,
        department="finance",
        query="pay INV-1",
        requested_by="ana",
        context={"amount": 1250.5},
    )
    log.append_step(
        task_id=task_id,
        index=1,
        kind="planner",
        output="Next: Caller",
        details={"next": "caller"},
        latency_ms=7,
    )
    log.append_tool_call(
        task_id=task_id,
        step=2,
        idempotency_key=f"{task_id}:2",
        tool="erp",
        effect="write",
        request={"amount": 1250.5},
        response={"id": 7},
        ok=True,
    )
    log.append_step(
        task_id=task_id,
        index=3,
        kind="outcome",
        output="Paid.",
        details={"outcome": "done", "reason": "answered"},
    )


def test_upgrade_then_append_and_verify(postgres_url: str, log: AuditLog) -> None:
    """After upgrade() a Postgres audit log appends rows that read back exactly and verify."""
    assert current_revision(postgres_url) == head_revision()
    _episode(log, "t-1")
    task = log.task("t-1")
    assert task is not None and task.context == {"amount": 1250.5}
    assert [s.kind for s in log.steps("t-1")] == ["planner", "outcome"]
    assert log.tool_call_by_key("t-1:2") is not None
    report = log.verify()
    assert (report.ok, report.rows) == (True, 4)


def test_updates_are_refused_by_the_database(postgres_url: str, log: AuditLog) -> None:
    """A plain UPDATE of an audit row is refused by the append-only trigger."""
    _episode(log, "t-1")
    with _psycopg(postgres_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE step SET output = 'forged' WHERE seq = 2")


def test_tampering_by_raw_update_is_named(postgres_url: str, log: AuditLog) -> None:
    """An UPDATE made with the triggers bypassed is named by verify (table and seq)."""
    _episode(log, "t-1")
    with _psycopg(postgres_url) as conn:
        conn.execute("SET session_replication_role = replica")  # a superuser skips triggers
        conn.execute("""UPDATE tool_call SET request = '{"amount":99999}' WHERE seq = 3""")
    report = log.verify()
    assert report.first_broken is not None
    broken = report.first_broken
    assert (report.ok, broken.table, broken.seq, broken.reason) == (
        False,
        "tool_call",
        3,
        HASH_MISMATCH,
    )


def test_concurrent_writers_form_one_chain(log: AuditLog) -> None:
    """Eight threads appending at once give one valid chain with no fork or duplicate seq."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            log.append_task(task_id=f"t-{n}", department="finance", query="q", requested_by="ana")
            for i in range(APPENDS):
                log.append_step(task_id=f"t-{n}", index=i, kind="planner", output=str(i))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    report = log.verify()
    assert (report.ok, report.rows) == (True, THREADS * (APPENDS + 1))
    seqs = sorted(s.seq for n in range(THREADS) for s in log.steps(f"t-{n}"))
    seqs += [t.seq for t in log.tasks(limit=THREADS)]
    assert sorted(seqs) == list(range(1, THREADS * (APPENDS + 1) + 1))
    assert log.head()[0] == THREADS * (APPENDS + 1)


def test_ensure_schema_refuses_a_database_not_upgraded(postgres_url: str) -> None:
    """ensure_schema on an empty Postgres database says to run `umiq db upgrade`."""
    with pytest.raises(AuditError, match=rf"expected {head_revision()}: run `umiq db upgrade`"):
        ensure_schema(postgres_url)
    assert current_revision(postgres_url) is None


def test_ensure_schema_accepts_an_upgraded_database(postgres_url: str) -> None:
    """ensure_schema on a Postgres database at head returns quietly."""
    upgrade(postgres_url)
    ensure_schema(postgres_url)

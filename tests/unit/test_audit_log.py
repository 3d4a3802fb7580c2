"""AuditLog on the embedded SQLite database: appending, reading back, schema."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.audit import (
    GENESIS,
    AuditLog,
    current_revision,
    digest,
    ensure_schema,
    head_revision,
    row_hash,
)
from worker.errors import AuditError


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'data' / 'audit.sqlite'}"
    ensure_schema(url)
    return url


@pytest.fixture
def log(url: str) -> Iterator[AuditLog]:
    audit = AuditLog.from_url(url)
    yield audit
    audit.close()


def _task(log: AuditLog, task_id: str = "t-1") -> None:
    log.append_task(task_id=task_id, department="finance", query="pay INV-1", requested_by="ana")


def test_ensure_schema_creates_the_embedded_database_at_head(tmp_path: Path) -> None:
    """ensure_schema on a missing SQLite file creates it at the newest revision."""
    url = f"sqlite:///{tmp_path / 'new' / 'audit.sqlite'}"
    ensure_schema(url)
    assert current_revision(url) == head_revision()


def test_ensure_schema_twice_is_harmless(url: str) -> None:
    """Running ensure_schema on an up-to-date database changes nothing."""
    ensure_schema(url)
    assert current_revision(url) == head_revision()


def test_append_without_schema_says_to_upgrade(tmp_path: Path) -> None:
    """Appending to a database without the audit schema raises AuditError."""
    log = AuditLog.from_url(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(AuditError):
        _task(log)
    log.close()


def test_first_row_links_to_genesis(log: AuditLog) -> None:
    """The first row has seq 1 and GENESIS as its prev_hash."""
    task = log.append_task(
        task_id="t-1", department="finance", query="q", requested_by="ana", context={"a": 1}
    )
    assert (task.seq, task.prev_hash) == (1, GENESIS)
    payload = {k: v for k, v in task.as_dict().items() if k not in ("prev_hash", "hash")}
    assert task.hash == row_hash(GENESIS, "task", payload)


def test_seq_is_shared_by_all_tables(log: AuditLog) -> None:
    """Task, step and tool_call rows take consecutive seqs from one chain."""
    _task(log)
    step = log.append_step(task_id="t-1", index=1, kind="planner", output="Next: Caller")
    call = log.append_tool_call(
        task_id="t-1",
        step=2,
        idempotency_key="t-1:2",
        tool="erp",
        effect="read",
        request={},
        ok=True,
    )
    assert (step.seq, call.seq) == (2, 3)
    assert call.prev_hash == step.hash
    assert log.head() == (3, call.hash)


def test_rows_read_back_equal_the_rows_returned(log: AuditLog) -> None:
    """What append returns is exactly what the reads give back, JSON and times included."""
    task = log.append_task(
        task_id="t-1",
        department="finance",
        query="q",
        requested_by="ana",
        context={"amount": 1250.5, "tags": ("a", "b")},
        received_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    step = log.append_step(
        task_id="t-1",
        index=1,
        kind="caller",
        role="caller",
        prompt_digest=digest("prompt"),
        output='{"name": "erp"}',
        details={"call": {"x": [1, 2.5]}},
        latency_ms=12,
        model="smollm2-135m",
        adapter="caller@v3",
    )
    call = log.append_tool_call(
        task_id="t-1",
        step=1,
        idempotency_key="t-1:1",
        tool="erp",
        effect="write",
        request={"invoice": "INV-1"},
        response=[{"paid": True}],
        ok=True,
    )
    assert log.task("t-1") == task
    assert task.context == {"amount": 1250.5, "tags": ["a", "b"]}
    assert log.steps("t-1") == [step]
    assert log.tool_calls("t-1") == [call]
    assert log.tool_call_by_key("t-1:1") == call


def test_unknown_keys_read_as_none(log: AuditLog) -> None:
    """Reading a task or tool call that was never recorded gives None."""
    assert log.task("nope") is None
    assert log.tool_call_by_key("nope:1") is None


def test_tasks_lists_newest_first(log: AuditLog) -> None:
    """tasks(limit) returns the most recent tasks first."""
    for i in range(3):
        _task(log, f"t-{i}")
    assert [t.task_id for t in log.tasks(limit=2)] == ["t-2", "t-1"]


def test_a_task_is_recorded_once(log: AuditLog) -> None:
    """A second append_task with the same task id is refused and the chain is unchanged."""
    _task(log)
    head = log.head()
    with pytest.raises(AuditError, match="already in the audit log"):
        _task(log)
    assert log.head() == head


def test_idempotency_keys_are_unique(log: AuditLog) -> None:
    """A second tool call with the same idempotency key is refused and not recorded."""
    _task(log)
    kwargs = dict(
        task_id="t-1",
        step=2,
        idempotency_key="t-1:2",
        tool="erp",
        effect="write",
        request={"amount": 10},
        ok=True,
    )
    first = log.append_tool_call(**kwargs)
    with pytest.raises(AuditError, match="idempotency key 't-1:2'"):
        log.append_tool_call(**kwargs)
    assert log.tool_calls("t-1") == [first]
    assert log.head() == (first.seq, first.hash)


def test_idempotency_key_unique_in_the_database_too(url: str, log: AuditLog) -> None:
    """The database itself refuses a second row with the same idempotency key."""
    _task(log)
    log.append_tool_call(
        task_id="t-1", step=2, idempotency_key="k", tool="erp", effect="read", request={}, ok=True
    )
    with (
        sqlite3.connect(url.removeprefix("sqlite:///")) as db,
        pytest.raises(sqlite3.IntegrityError),
    ):
        db.execute(
            "INSERT INTO tool_call (seq, task_id, step, idempotency_key, tool, effect, request,"
            " ok, created_at, prev_hash, hash) VALUES (99, 't-1', 3, 'k', 'erp', 'read', '{}',"
            " 1, 'x', 'x', 'x')"
        )


def test_unknown_step_kind_is_refused(log: AuditLog) -> None:
    """A step kind outside planner/caller/summarizer/tool/policy/rejected/outcome is refused."""
    with pytest.raises(AuditError, match="kind 'thinking'"):
        log.append_step(task_id="t-1", index=1, kind="thinking")


def test_a_raw_prompt_is_refused_as_digest(log: AuditLog) -> None:
    """Passing the prompt itself where its digest belongs is refused."""
    with pytest.raises(AuditError, match="never the prompt itself"):
        log.append_step(task_id="t-1", index=1, kind="planner", prompt_digest="Pay V-0042 now")


def test_rejected_messages_need_no_task_row(log: AuditLog) -> None:
    """A refused message is recorded as a step of a task that was never received."""
    step = log.append_step(task_id="rejected-1", index=0, kind="rejected", output="bad field")
    assert log.steps("rejected-1") == [step]


def test_outcome_is_read_from_the_outcome_step(log: AuditLog) -> None:
    """outcome() reports how a finished task ended and None while it is open."""
    _task(log)
    log.append_step(task_id="t-1", index=1, kind="planner", output="Next: Conclusion")
    assert log.outcome("t-1") is None
    log.append_step(
        task_id="t-1",
        index=2,
        kind="outcome",
        output="Paid.",
        details={"outcome": "done", "reason": "answered"},
    )
    finished = log.outcome("t-1")
    assert finished is not None
    assert (finished["outcome"], finished["answer"], len(finished["steps"])) == ("done", "Paid.", 2)


def test_rows_cannot_be_updated_in_the_database(url: str, log: AuditLog) -> None:
    """A plain UPDATE of an audit row is refused by the database."""
    _task(log)
    with (
        sqlite3.connect(url.removeprefix("sqlite:///")) as db,
        pytest.raises(sqlite3.IntegrityError, match="append-only"),
    ):
        db.execute("UPDATE task SET query = 'forged' WHERE seq = 1")


def test_importing_the_audit_log_never_imports_torch() -> None:
    """Importing worker.audit (and its migrations' models) leaves torch unimported."""
    code = "import sys, worker.audit; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

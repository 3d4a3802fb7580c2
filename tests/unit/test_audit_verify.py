"""verify() on the embedded SQLite database: a clean chain passes, each tampering is named.

Tampering is done the way someone holding the database file would: with the sqlite3
module, after dropping the append-only triggers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.audit import AuditLog, digest, ensure_schema, row_hash
from worker.audit.chain import parse_iso_utc
from worker.audit.verify import (
    BEYOND_HEAD,
    DUPLICATE_SEQ,
    HASH_MISMATCH,
    HEAD_MISMATCH,
    PREV_MISMATCH,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.sqlite"


@pytest.fixture
def log(path: Path) -> Iterator[AuditLog]:
    """A chain of six rows: task 1, steps 2 and 3, tool_call 4, steps 5 and 6."""
    url = f"sqlite:///{path}"
    ensure_schema(url)
    audit = AuditLog.from_url(url)
    audit.append_task(task_id="t-1", department="finance", query="pay", requested_by="ana")
    audit.append_step(
        task_id="t-1",
        index=1,
        kind="planner",
        role="planner",
        prompt_digest=digest("p1"),
        output="Next: Caller",
        latency_ms=5,
    )
    audit.append_step(
        task_id="t-1",
        index=2,
        kind="caller",
        role="caller",
        prompt_digest=digest("p2"),
        output='{"name": "erp"}',
        details={"call": {"name": "erp", "arguments": {"amount": 1250}}},
    )
    audit.append_tool_call(
        task_id="t-1",
        step=2,
        idempotency_key="t-1:2",
        tool="erp",
        effect="write",
        request={"amount": 1250},
        response={"ok": 1},
        ok=True,
    )
    audit.append_step(task_id="t-1", index=3, kind="tool", output="paid", details={"ok": True})
    audit.append_step(
        task_id="t-1",
        index=4,
        kind="outcome",
        output="Paid.",
        details={"outcome": "done", "reason": "answered"},
    )
    yield audit
    audit.close()


def _tamper(path: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    with sqlite3.connect(path) as db:
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall():
            db.execute(f"DROP TRIGGER {name}")
        for sql in statements:
            db.execute(sql, params if "?" in sql else ())


def _broken(log: AuditLog) -> tuple[str, int, str]:
    report = log.verify()
    assert not report.ok and report.first_broken is not None
    return report.first_broken.table, report.first_broken.seq, report.first_broken.reason


def test_clean_chain_verifies(log: AuditLog) -> None:
    """An untouched chain verifies and counts every row of every table."""
    report = log.verify()
    assert (report.ok, report.rows, report.first_broken) == (True, 6, None)


def test_empty_chain_verifies(tmp_path: Path) -> None:
    """A freshly created audit log verifies with zero rows."""
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    ensure_schema(url)
    assert AuditLog.from_url(url).verify().ok


def test_edited_field_is_named(log: AuditLog, path: Path) -> None:
    """Editing a step's output is reported as a hash mismatch at that step."""
    _tamper(path, "UPDATE step SET output = 'Next: Conclusion' WHERE seq = 3")
    assert _broken(log) == ("step", 3, HASH_MISMATCH)


def test_edited_json_field_is_named(log: AuditLog, path: Path) -> None:
    """Editing an amount inside a tool call's JSON request is reported at that row."""
    _tamper(path, """UPDATE tool_call SET request = '{"amount":99999}' WHERE seq = 4""")
    assert _broken(log) == ("tool_call", 4, HASH_MISMATCH)


def test_unreadable_content_is_named(log: AuditLog, path: Path) -> None:
    """A JSON column edited into invalid JSON is reported as a hash mismatch, not a crash."""
    _tamper(path, "UPDATE step SET details = '{not json' WHERE seq = 3")
    assert _broken(log) == ("step", 3, HASH_MISMATCH)


def test_edited_and_rehashed_row_breaks_the_next_link(log: AuditLog, path: Path) -> None:
    """A row edited with its own hash recomputed is caught by the next row's prev_hash."""
    with sqlite3.connect(path) as db:
        seq, prev, task_id, index, kind, created = db.execute(
            'SELECT seq, prev_hash, task_id, "index", kind, created_at FROM step WHERE seq = 5'
        ).fetchone()
    forged = {
        "seq": seq,
        "task_id": task_id,
        "index": index,
        "kind": kind,
        "role": None,
        "prompt_digest": None,
        "output": "not paid",
        "details": {"ok": True},
        "latency_ms": None,
        "model": None,
        "adapter": None,
        "created_at": parse_iso_utc(created),
    }
    new_hash = row_hash(prev, "step", forged)
    _tamper(path, "UPDATE step SET output = 'not paid', hash = ? WHERE seq = 5", params=(new_hash,))
    assert _broken(log) == ("step", 6, PREV_MISMATCH)


def test_deleted_middle_row_is_named(log: AuditLog, path: Path) -> None:
    """Deleting a middle row is reported at the row after it."""
    _tamper(path, "DELETE FROM step WHERE seq = 3")
    assert _broken(log) == ("tool_call", 4, PREV_MISMATCH)


def test_forged_row_with_a_taken_seq_is_named(log: AuditLog, path: Path) -> None:
    """A forged row that reuses a seq of another table, correctly hashed, is named."""
    with sqlite3.connect(path) as db:
        (prev,) = db.execute("SELECT hash FROM step WHERE seq = 3").fetchone()
    payload = {
        "seq": 4,
        "task_id": "t-1",
        "index": 3,
        "kind": "policy",
        "role": None,
        "prompt_digest": None,
        "output": "allowed",
        "details": {},
        "latency_ms": None,
        "model": None,
        "adapter": None,
        "created_at": "2024-05-01T12:00:00.000000Z",
    }
    forged_hash = row_hash(prev, "step", payload)
    _tamper(
        path,
        'INSERT INTO step (seq, task_id, "index", kind, output, details, created_at,'
        " prev_hash, hash) VALUES (4, 't-1', 3, 'policy', 'allowed', '{}',"
        f" '2024-05-01T12:00:00.000000Z', '{prev}', ?)",
        params=(forged_hash,),
    )
    assert _broken(log) == ("step", 4, DUPLICATE_SEQ)


def test_forged_row_after_the_head_is_named(log: AuditLog, path: Path) -> None:
    """A correctly linked row appended behind the chain head's back is named."""
    last_seq, last_hash = log.head()
    payload = {
        "seq": last_seq + 1,
        "task_id": "t-1",
        "index": 5,
        "kind": "outcome",
        "role": None,
        "prompt_digest": None,
        "output": "Refunded.",
        "details": {},
        "latency_ms": None,
        "model": None,
        "adapter": None,
        "created_at": "2024-05-01T12:00:00.000000Z",
    }
    _tamper(
        path,
        'INSERT INTO step (seq, task_id, "index", kind, output, details, created_at,'
        f" prev_hash, hash) VALUES ({last_seq + 1}, 't-1', 5, 'outcome', 'Refunded.',"
        f" '{{}}', '2024-05-01T12:00:00.000000Z', '{last_hash}', ?)",
        params=(row_hash(last_hash, "step", payload),),
    )
    assert _broken(log) == ("step", 7, BEYOND_HEAD)


def test_truncated_tail_is_named(log: AuditLog, path: Path) -> None:
    """Deleting the last rows is reported against the chain head, which still names them."""
    _tamper(path, "DELETE FROM step WHERE seq >= 5")
    assert _broken(log) == ("chain_head", 6, HEAD_MISMATCH)


def test_swapped_contents_are_named(log: AuditLog, path: Path) -> None:
    """Swapping two steps' outputs is reported at the earlier of the two."""
    _tamper(
        path,
        "UPDATE step SET output = CASE seq WHEN 2 THEN (SELECT output FROM step WHERE seq = 3)"
        " ELSE (SELECT output FROM step WHERE seq = 2) END WHERE seq IN (2, 3)",
    )
    assert _broken(log) == ("step", 2, HASH_MISMATCH)


def test_only_the_first_broken_row_is_named(log: AuditLog, path: Path) -> None:
    """With two rows edited, verify names the one earlier in the chain."""
    _tamper(
        path,
        "UPDATE step SET output = 'x' WHERE seq = 5",
        "UPDATE task SET query = 'y' WHERE seq = 1",
    )
    assert _broken(log) == ("task", 1, HASH_MISMATCH)


def test_rows_read_before_the_break_are_counted(log: AuditLog, path: Path) -> None:
    """The report counts the rows read up to and including the first broken one."""
    _tamper(path, "UPDATE step SET output = 'x' WHERE seq = 3")
    assert log.verify().rows == 3

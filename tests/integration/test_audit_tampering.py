"""Tampering with a real Postgres log, as a superuser bypassing the triggers, is caught.

Each case changes a log of three tasks (21 rows, written by ``umiq_worker``) the way a
database superuser could (``session_replication_role = replica`` switches the
append-only triggers off), then runs the real ``umiq audit verify`` as a subprocess.
Edits, deletions, forged rows and reordering break the chain, and verify names the first
bad row. Truncating and rebuilding a consistent chain from genesis fools the chain
walk, so the signed checkpoint taken before has to catch it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, insert, select, text, update

from tests.support.cli import umiq
from worker.audit import GENESIS, AuditLog, digest, row_hash, upgrade
from worker.audit.checkpoint import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, write_keypair
from worker.audit.tables import CHAIN_TABLES, ChainHead, content_columns

pytestmark = pytest.mark.integration

TASKS = 3
ROWS_PER_TASK = 7  # task, planner, caller, policy, tool_call, tool, outcome
ROWS = TASKS * ROWS_PER_TASK

Row = tuple[str, dict[str, Any]]


def _episode(log: AuditLog, n: int) -> None:
    task_id = f"t-{n}"
    log.append_task(
        task_id=task_id,
        department="finance",
        query=f"pay INV-{n}",
        requested_by="ana",
        context={"amount": 100 * n},
    )
    log.append_step(
        task_id=task_id,
        index=1,
        kind="planner",
        role="planner",
        prompt_digest=digest(f"plan {n}"),
        output="Next: Caller",
        details={"next": "caller"},
        latency_ms=9,
    )
    log.append_step(
        task_id=task_id,
        index=2,
        kind="caller",
        role="caller",
        prompt_digest=digest(f"call {n}"),
        output='{"name": "erp.pay"}',
        details={"tool": "erp.pay", "arguments": {"amount": 100 * n}},
    )
    log.append_step(
        task_id=task_id,
        index=3,
        kind="policy",
        output="allowed",
        details={"policy": "access", "allowed": True, "reasons": ["finance may pay"]},
    )
    log.append_tool_call(
        task_id=task_id,
        step=2,
        idempotency_key=f"{task_id}:2",
        tool="erp.pay",
        effect="write",
        request={"amount": 100 * n},
        response={"payment": n},
        ok=True,
    )
    log.append_step(task_id=task_id, index=4, kind="tool", output=f'{{"payment": {n}}}')
    log.append_step(
        task_id=task_id,
        index=5,
        kind="outcome",
        output="Paid.",
        details={"outcome": "answered", "reason": "the summarizer answered"},
    )


def _rows(conn: Connection) -> list[Row]:
    """Every chain row, decoded, in seq order."""
    rows = [
        (name, dict(row))
        for name, model in CHAIN_TABLES.items()
        for row in conn.execute(select(model.__table__)).mappings()  # type: ignore[attr-defined]
    ]
    return sorted(rows, key=lambda item: item[1]["seq"])


def _rehashed(name: str, row: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """``row`` relinked after ``prev_hash`` with its own hash computed correctly."""
    payload = {column: row[column] for column in content_columns(name)}
    return {**row, "prev_hash": prev_hash, "hash": row_hash(prev_hash, name, payload)}


def _insert(conn: Connection, name: str, row: dict[str, Any]) -> None:
    conn.execute(insert(CHAIN_TABLES[name].__table__).values(**row))  # type: ignore[attr-defined]


# -- the tamperings: each returns the (table, seq) verify must name, or None -------------


def edit_output(conn: Connection) -> tuple[str, int] | None:
    conn.execute(text("UPDATE step SET output = 'Next: Give up' WHERE seq = 9"))
    return "step", 9


def edit_request(conn: Connection) -> tuple[str, int] | None:
    forged = '{"amount":99999}'
    conn.execute(text("UPDATE tool_call SET request = :forged WHERE seq = 12"), {"forged": forged})
    return "tool_call", 12


def delete_row(conn: Connection) -> tuple[str, int] | None:
    conn.execute(text("DELETE FROM tool_call WHERE seq = 12"))
    return "step", 13  # the first row that no longer follows its predecessor


def insert_duplicate_seq(conn: Connection) -> tuple[str, int] | None:
    """A forged tool observation at seq 12, linked after seq 11 and correctly hashed."""
    rows = dict((row["seq"], (name, row)) for name, row in _rows(conn))
    forged = {**rows[13][1], "seq": 12, "output": '{"payment": 2, "refund": 500}'}
    _insert(conn, "step", _rehashed("step", forged, rows[11][1]["hash"]))
    return "step", 12


def insert_beyond_head(conn: Connection) -> tuple[str, int] | None:
    """A forged second payment appended after the last row, the head left where it was."""
    rows = _rows(conn)
    last = rows[-1][1]
    template = next(row for table, row in rows if table == "tool_call")
    forged = {**template, "seq": ROWS + 1, "idempotency_key": "t-3:99", "task_id": "t-3"}
    _insert(conn, "tool_call", _rehashed("tool_call", forged, last["hash"]))
    return "tool_call", ROWS + 1


def swap_same_table(conn: Connection) -> tuple[str, int] | None:
    """The planner and caller steps of task 2 change places."""
    conn.execute(text("UPDATE step SET seq = -9 WHERE seq = 9"))
    conn.execute(text("UPDATE step SET seq = 9 WHERE seq = 10"))
    conn.execute(text("UPDATE step SET seq = 10 WHERE seq = -9"))
    return "step", 9


def swap_across_tables(conn: Connection) -> tuple[str, int] | None:
    """Task 2's payment moves after the observation of its result."""
    conn.execute(text("UPDATE tool_call SET seq = 13 WHERE seq = 12"))
    conn.execute(text("UPDATE step SET seq = 12 WHERE seq = 13"))
    return "step", 12


def _rebuild(conn: Connection, keep: Callable[[dict[str, Any]], bool], edit: Any) -> None:
    """TRUNCATE the chain and write the kept rows back, edited, renumbered, from genesis."""
    rows = _rows(conn)
    conn.execute(text("TRUNCATE task, step, tool_call"))
    prev, seq = GENESIS, 0
    for name, row in rows:
        if keep(row):
            seq += 1
            relinked = _rehashed(name, edit({**row, "seq": seq}), prev)
            _insert(conn, name, relinked)
            prev = relinked["hash"]
    conn.execute(update(ChainHead).values(last_seq=seq, last_hash=prev))


def truncate_and_rebuild_shorter(conn: Connection) -> tuple[str, int] | None:
    """Task 2 erased: a consistent chain of 14 rows, re-hashed from genesis."""
    _rebuild(conn, keep=lambda row: row["task_id"] != "t-2", edit=lambda row: row)
    return None


def truncate_and_rebuild_edited(conn: Connection) -> tuple[str, int] | None:
    """Same length, task 1's amount changed: a consistent chain of 21 rows from genesis."""
    _rebuild(
        conn,
        keep=lambda row: True,
        edit=lambda row: {**row, "context": {"amount": 1}} if "context" in row else row,
    )
    return None


@dataclass(frozen=True)
class Case:
    tamper: Callable[[Connection], tuple[str, int] | None]
    checkpoint_says: str


CASES = {
    "edit-text-field": Case(edit_output, "audit chain BROKEN"),
    "edit-json-field": Case(edit_request, "audit chain BROKEN"),
    "delete-row": Case(delete_row, "audit chain BROKEN"),
    "insert-forged-duplicate-seq": Case(insert_duplicate_seq, "audit chain BROKEN"),
    "insert-forged-beyond-head": Case(insert_beyond_head, "audit chain BROKEN"),
    "reorder-same-table": Case(swap_same_table, "audit chain BROKEN"),
    "reorder-across-tables": Case(swap_across_tables, "audit chain BROKEN"),
    "truncate-rebuild-shorter": Case(
        truncate_and_rebuild_shorter,
        f"the chain ends at seq={ROWS - ROWS_PER_TASK} but the checkpoint is at seq={ROWS}: "
        "the log was truncated after the checkpoint",
    ),
    "truncate-rebuild-edited": Case(
        truncate_and_rebuild_edited,
        f"row seq={ROWS} no longer has the checkpointed hash: "
        "the log was rewritten after the checkpoint",
    ),
}


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def env(postgres_url: str, tmp_path: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop("UMIQ_DATABASE_ROLE", None)
    environment.update(UMIQ_DATABASE_URL=postgres_url, UMIQ_DATA_DIR=str(tmp_path / "data"))
    return environment


@pytest.fixture
def superuser(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def checkpoint(postgres_url: str, env: dict[str, str], tmp_path: Path) -> tuple[Path, Path]:
    """The log of three tasks, written as umiq_worker, and a checkpoint of it (CLI-made)."""
    upgrade(postgres_url)
    log = AuditLog.from_url(postgres_url, role="umiq_worker")
    for n in range(1, TASKS + 1):
        _episode(log, n)
    assert log.head()[0] == ROWS
    log.close()
    keys = tmp_path / "auditor"
    write_keypair(keys)
    path = tmp_path / "checkpoint.json"
    made = umiq(env, "audit", "checkpoint", "--key", keys / PRIVATE_KEY_FILE, "--out", path)
    assert made.returncode == 0, made.stdout + made.stderr
    return path, keys / PUBLIC_KEY_FILE


def test_the_untouched_log_verifies_against_its_checkpoint(
    env: dict[str, str], checkpoint: tuple[Path, Path]
) -> None:
    """Before any tampering, verify --checkpoint passes on the 21-row log."""
    path, public = checkpoint
    result = umiq(env, "audit", "verify", "--checkpoint", path, "--public-key", public)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"audit chain OK: {ROWS} rows verified" in result.stdout
    assert f"checkpoint seq={ROWS} OK" in result.stdout


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_tampering_is_caught(
    case: Case, env: dict[str, str], superuser: Engine, checkpoint: tuple[Path, Path]
) -> None:
    """A superuser's change fails verify, naming the first bad row, or fails the checkpoint."""
    with superuser.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        first_bad = case.tamper(conn)

    verify = umiq(env, "audit", "verify")
    path, public = checkpoint
    against = umiq(env, "audit", "verify", "--checkpoint", path, "--public-key", public)

    if first_bad is None:  # a consistent chain: only the checkpoint can tell
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "audit chain OK" in verify.stdout
    else:
        table, seq = first_bad
        assert verify.returncode == 1, verify.stdout + verify.stderr
        assert f"audit chain broken at {table} row seq={seq}:" in verify.stdout
    assert against.returncode == 1, against.stdout + against.stderr
    assert case.checkpoint_says in against.stdout

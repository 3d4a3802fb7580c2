"""Sealed audit fields on a real Postgres: nothing in clear, moved envelopes, rotation, grants."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from policies._crypto import KeyRing, SealError, new_key
from worker.audit import AuditLog, make_engine, upgrade
from worker.audit.keyring import rotated
from worker.audit.sealing import Sealer, rewrap_all, rotate_keys
from worker.audit.verify import HASH_MISMATCH
from worker.errors import AuditError

pytestmark = pytest.mark.integration

IBAN = "DE89370400440532013000"
EMAIL = "jane.doe@example.org"


def _psycopg(url: str) -> psycopg.Connection:
    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({"k1": new_key()}, "k1")


@pytest.fixture
def log(postgres_url: str, ring: KeyRing) -> Iterator[AuditLog]:
    upgrade(postgres_url)
    audit = AuditLog.from_url(postgres_url, sealer=Sealer(ring), role=None)
    yield audit
    audit.close()


def _pay(log: AuditLog, task_id: str) -> None:
    log.append_task(task_id=task_id, department="finance", query="pay", requested_by="ana")
    log.append_tool_call(
        task_id=task_id,
        step=2,
        idempotency_key=f"{task_id}:2",
        tool="erp.pay",
        effect="write",
        request={"iban": IBAN, "notify": EMAIL, "amount": 1250.5},
        response={"paid_to": IBAN, "receipt_to": EMAIL},
        ok=True,
    )
    log.append_step(
        task_id=task_id,
        index=3,
        kind="tool",
        output="paid <IBAN_1>",
        sealed={"tokens": {"<IBAN_1>": IBAN, "<EMAIL_1>": EMAIL}},
    )


def _every_value(url: str) -> list[str]:
    """Every column of every row of every table of the database, as text (a dump)."""
    values: list[str] = []
    with _psycopg(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ).fetchall()
        assert {t for t, _ in columns} >= {"task", "step", "tool_call", "sealed_key"}
        for table, column in columns:
            query = sql.SQL("SELECT {}::text FROM {}").format(
                sql.Identifier(column), sql.Identifier(table)
            )
            values.extend(v for (v,) in conn.execute(query) if v is not None)
    return values


def test_sealed_values_are_nowhere_in_clear(postgres_url: str, log: AuditLog) -> None:
    """An IBAN and an email in a sealed tool call and step appear in no column of any table."""
    _pay(log, "t-1")
    values = _every_value(postgres_url)
    assert any("tool_call/t-1:2/request" in v for v in values)  # the dump did see the rows
    leaks = [v for v in values if IBAN in v or EMAIL in v or "jane.doe" in v]
    assert leaks == []


def test_unseal_returns_the_values(log: AuditLog) -> None:
    """unseal opens the stored tool call and step to the values appended."""
    _pay(log, "t-1")
    call = log.unseal(log.tool_call_by_key("t-1:2"))
    assert call.request == {"iban": IBAN, "notify": EMAIL, "amount": 1250.5}
    assert call.response == {"paid_to": IBAN, "receipt_to": EMAIL}
    [step] = log.unseal(log.steps("t-1"))
    assert step.details["tokens"] == {"<IBAN_1>": IBAN, "<EMAIL_1>": EMAIL}
    assert log.verify().ok


def test_envelope_moved_by_a_superuser_does_not_open(postgres_url: str, log: AuditLog) -> None:
    """An envelope moved to another row with triggers bypassed fails to open, clearly."""
    _pay(log, "t-1")
    _pay(log, "t-2")
    with _psycopg(postgres_url) as conn:
        conn.execute("SET session_replication_role = replica")  # a superuser skips triggers
        conn.execute(
            "UPDATE tool_call SET response = (SELECT response FROM tool_call "
            "WHERE idempotency_key = 't-1:2') WHERE idempotency_key = 't-2:2'"
        )
    moved = log.tool_call_by_key("t-2:2")
    with pytest.raises(
        SealError,
        match=r"^cannot open tool_call/t-2:2/response: the ciphertext was altered or belongs "
        r"to another record",
    ):
        log.unseal(moved)
    assert log.unseal(log.tool_call_by_key("t-1:2")).response["paid_to"] == IBAN
    report = log.verify()
    assert report.first_broken is not None
    assert (report.first_broken.table, report.first_broken.reason) == ("tool_call", HASH_MISMATCH)


def test_envelope_moved_with_its_ref_rewritten_does_not_open(
    postgres_url: str, log: AuditLog
) -> None:
    """Rewriting the moved envelope's ref to its new row still fails the AES-GCM tag."""
    _pay(log, "t-1")
    _pay(log, "t-2")
    with _psycopg(postgres_url) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "UPDATE tool_call SET response = replace((SELECT response FROM tool_call "
            "WHERE idempotency_key = 't-1:2'), 't-1:2', 't-2:2') WHERE idempotency_key = 't-2:2'"
        )
    with pytest.raises(SealError, match=r"\(AES-GCM tag mismatch\)$"):
        log.unseal(log.tool_call_by_key("t-2:2"))


def test_rotation_keeps_old_records_open(postgres_url: str, log: AuditLog, ring: KeyRing) -> None:
    """After rotating with the old key retired, old records open and the chain verifies."""
    _pay(log, "t-1")
    saved: list[KeyRing] = []
    engine = make_engine(postgres_url, role=None)
    try:
        rotation = rotate_keys(engine, ring, rotated(ring), saved.append, retire_old=True)
    finally:
        engine.dispose()
    assert (rotation.rewrapped, rotation.removed) == (3, ("k1",))
    assert saved[-1] is rotation.keyring and "k1" not in rotation.keyring.keys

    after = AuditLog.from_url(postgres_url, sealer=Sealer(rotation.keyring), role=None)
    assert after.unseal(after.tool_call_by_key("t-1:2")).request["iban"] == IBAN
    _pay(after, "t-2")
    with _psycopg(postgres_url) as conn:
        kids = {k for (k,) in conn.execute("SELECT DISTINCT kid FROM sealed_key")}
        rewrapped = conn.execute(
            "SELECT count(*) FROM sealed_key WHERE rewrapped_at IS NOT NULL"
        ).fetchone()
    assert kids == {rotation.new_kid} and rewrapped == (3,)
    assert after.verify().ok
    after.close()


def test_worker_role_may_insert_and_read_keys_but_not_rewrap(
    postgres_url: str, log: AuditLog, ring: KeyRing
) -> None:
    """umiq_worker seals and opens through sealed_key but cannot update or delete it."""
    with _psycopg(postgres_url) as conn:
        grants = conn.execute(
            "SELECT has_table_privilege('umiq_worker', 'sealed_key', p) "
            "FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p"
        ).fetchall()
    assert [g for (g,) in grants] == [True, True, False, False, False]

    worker = AuditLog.from_url(postgres_url, sealer=Sealer(ring), role="umiq_worker")
    _pay(worker, "t-1")
    assert worker.unseal(worker.tool_call_by_key("t-1:2")).response["receipt_to"] == EMAIL
    with pytest.raises(
        AuditError, match=r"permission denied for table sealed_key \(.*run it as the owner"
    ):
        rewrap_all(worker.engine, rotated(ring))
    worker.close()

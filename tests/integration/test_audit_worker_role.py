"""The ``umiq_worker`` role on a real Postgres: it appends, and its grants refuse the rest.

Every refusal is checked with the append-only triggers switched off by a superuser, so
what refuses is the role's privileges, not the triggers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from worker.audit import (
    AuditLog,
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    upgrade,
)
from worker.audit.verify import BEYOND_HEAD, HEAD_MISMATCH
from worker.errors import ConfigError
from worker.settings import get_settings

pytestmark = pytest.mark.integration

ROLE = "umiq_worker"
CONTENT_TABLES = ("task", "step", "tool_call")
REFUSED = {
    "UPDATE": "UPDATE {table} SET task_id = 'forged'",
    "DELETE": "DELETE FROM {table}",
    "TRUNCATE": "TRUNCATE {table}",
}


def _psycopg(url: str, role: str | None = None) -> psycopg.Connection:
    conn = psycopg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(False), autocommit=True
    )
    if role is not None:
        conn.execute(f"SET ROLE {role}")
    return conn


@pytest.fixture
def log(postgres_url: str) -> Iterator[AuditLog]:
    """A log at head with one task, written as umiq_worker; the triggers switched off."""
    upgrade(postgres_url)
    audit = AuditLog.from_url(postgres_url, role=ROLE)
    audit.append_task(task_id="t-1", department="finance", query="pay", requested_by="ana")
    audit.append_step(task_id="t-1", index=1, kind="planner", output="Next: Caller")
    audit.append_tool_call(
        task_id="t-1",
        step=1,
        idempotency_key="t-1:1",
        tool="erp",
        effect="write",
        request={"amount": 10},
        ok=True,
    )
    with _psycopg(postgres_url) as admin:
        for table in (*CONTENT_TABLES, "chain_head"):
            admin.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    yield audit
    audit.close()


def test_the_migration_creates_a_role_that_cannot_log_in(log: AuditLog, postgres_url: str) -> None:
    """Revision 0002 is part of head and leaves umiq_worker as a NOLOGIN role."""
    assert current_revision(postgres_url) == head_revision()
    with _psycopg(postgres_url) as admin:
        row = admin.execute(
            "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s", (ROLE,)
        ).fetchone()
    assert row == (False, False)


def test_the_engine_takes_the_role_on_every_connection(log: AuditLog) -> None:
    """With role=umiq_worker every pooled connection runs as umiq_worker, after a rollback too."""
    for _ in range(3):
        with log.engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == ROLE
            conn.rollback()


def test_the_worker_role_appends_and_verifies(log: AuditLog) -> None:
    """umiq_worker appends to the chain, moves its head and verifies it."""
    log.append_step(task_id="t-1", index=2, kind="outcome", output="Paid.")
    assert log.head()[0] == 4
    report = log.verify()
    assert (report.ok, report.rows) == (True, 4)


def test_the_worker_role_passes_ensure_schema(postgres_url: str, log: AuditLog) -> None:
    """umiq_worker may read alembic_version, so a worker can check the schema is at head."""
    engine = make_engine(postgres_url, role=ROLE)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            head_revision()
        )
    engine.dispose()


@pytest.mark.parametrize("table", CONTENT_TABLES)
@pytest.mark.parametrize("verb", sorted(REFUSED))
def test_the_worker_role_cannot_change_or_remove_rows(
    log: AuditLog, postgres_url: str, table: str, verb: str
) -> None:
    """UPDATE, DELETE and TRUNCATE of a chain table fail for lack of privilege, triggers off."""
    with (
        _psycopg(postgres_url, role=ROLE) as conn,
        pytest.raises(
            psycopg.errors.InsufficientPrivilege, match=f"permission denied for table {table}"
        ),
    ):
        conn.execute(REFUSED[verb].format(table=table))
    assert log.verify().ok


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM chain_head",
        "TRUNCATE chain_head",
        "INSERT INTO chain_head VALUES ('forged', 0, repeat('0', 64))",
        "UPDATE chain_head SET chain = 'renamed'",
    ],
)
def test_the_worker_role_can_only_move_the_head(
    log: AuditLog, postgres_url: str, statement: str
) -> None:
    """The role may update the head's seq and hash, but not add, rename or remove a chain."""
    with (
        _psycopg(postgres_url, role=ROLE) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
    ):
        conn.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SET session_replication_role = replica",
        "ALTER TABLE step DISABLE TRIGGER ALL",
        "DROP TABLE step",
        "CREATE TABLE step_copy (seq bigint)",
    ],
)
def test_the_worker_role_cannot_get_round_the_rules(
    postgres_url: str, log: AuditLog, statement: str
) -> None:
    """The role can neither switch triggers off nor drop or add tables."""
    with (
        _psycopg(postgres_url, role=ROLE) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


@pytest.mark.parametrize(
    ("move", "reason"),
    [
        ("last_seq = last_seq - 1", BEYOND_HEAD),
        ("last_seq = last_seq + 1", HEAD_MISMATCH),
        ("last_hash = repeat('f', 64)", HEAD_MISMATCH),
    ],
)
def test_a_head_moved_by_hand_is_detected(
    log: AuditLog, postgres_url: str, move: str, reason: str
) -> None:
    """The role may move the head, but verify names a head that is not the last row's."""
    with _psycopg(postgres_url, role=ROLE) as conn:
        conn.execute(f"UPDATE chain_head SET {move}")
    report = log.verify()
    assert not report.ok and report.first_broken is not None
    assert report.first_broken.reason == reason


@pytest.fixture
def role_from_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("UMIQ_DATABASE_ROLE", ROLE)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("role_from_settings")
def test_umiq_database_role_sets_the_role_of_the_default_engine(postgres_url: str) -> None:
    """UMIQ_DATABASE_ROLE makes AuditLog.from_url run as that role; upgrade runs as the owner."""
    upgrade(postgres_url)  # needs the owner's rights: the setting must not apply
    ensure_schema(postgres_url)
    log = AuditLog.from_url(postgres_url)
    with log.engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == ROLE
    log.append_task(task_id="t-1", department="hr", query="q", requested_by="bob")
    assert log.verify().ok
    log.close()


@pytest.mark.usefixtures("role_from_settings")
def test_umiq_database_role_is_refused_for_sqlite(tmp_path: Path) -> None:
    """A database role set for the embedded SQLite database is refused with the reason."""
    with pytest.raises(ConfigError, match="applies to Postgres only"):
        make_engine(f"sqlite:///{tmp_path}/audit.sqlite")


def test_a_noinherit_login_gets_the_grants_only_through_the_setting(
    log: AuditLog, postgres_url: str
) -> None:
    """A NOINHERIT login that is a member of umiq_worker can append only after SET ROLE."""
    login = f"umiq_app_{uuid.uuid4().hex[:8]}"
    with _psycopg(postgres_url) as admin:
        admin.execute(f"CREATE ROLE {login} LOGIN NOINHERIT")
        admin.execute(f"GRANT {ROLE} TO {login}")
    as_login = make_url(postgres_url).set(username=login).render_as_string(False)
    try:
        bare = make_engine(as_login, role=None)
        with bare.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("SELECT count(*) FROM task"))
        bare.dispose()
        worker = AuditLog.from_url(as_login, role=ROLE)
        worker.append_step(task_id="t-1", index=2, kind="outcome", output="Paid.")
        assert worker.verify().ok
        worker.close()
    finally:
        with _psycopg(postgres_url) as admin:
            admin.execute(f"DROP ROLE {login}")

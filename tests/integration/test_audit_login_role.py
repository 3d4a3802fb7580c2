"""The worker's own login role on a real Postgres (`umiq db login-role`): it logs in with
``umiq_worker``'s grants only, so no ``RESET ROLE`` or ``SET ROLE`` gives it more.

The refusals are checked with the append-only triggers switched off by a superuser, so
what refuses is the login's privileges, not the triggers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.support.cli import umiq
from worker.audit import AuditLog, make_engine, upgrade
from worker.audit.login import create_login_role, login_rights
from worker.errors import ConfigError

pytestmark = pytest.mark.integration

TABLES = ("task", "step", "tool_call")


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(False)


@pytest.fixture
def login(postgres_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A login role made by `umiq db login-role` on a database at head: (name, its URL)."""
    upgrade(postgres_url)
    name = f"umiq_login_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, UMIQ_DATABASE_URL=postgres_url, UMIQ_DATA_DIR=str(tmp_path))
    env.pop("UMIQ_DATABASE_ROLE", None)
    done = umiq(env, "db", "login-role", name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"created login role {name}" in done.stdout
    url = make_url(postgres_url).set(username=name, password=None).render_as_string(False)
    try:
        yield name, url
    finally:
        with psycopg.connect(_libpq(postgres_url), autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_the_login_appends_and_verifies(login: tuple[str, str]) -> None:
    """Connected as the login role (no SET ROLE), the worker appends to the chain."""
    _, url = login
    audit = AuditLog.from_url(url, role=None)
    try:
        audit.append_task(task_id="t-1", department="finance", query="pay", requested_by="ana")
        audit.append_step(task_id="t-1", index=1, kind="outcome", output="Paid.")
        report = audit.verify()
        assert (report.ok, report.rows) == (True, 2)
        with audit.engine.connect() as conn:
            rights = login_rights(conn)
    finally:
        audit.close()
    assert rights.least_privilege and not rights.superuser and rights.can_change == ()


def test_a_superuser_login_is_named_as_such(postgres_url: str) -> None:
    """The same check on a superuser login says it may change every row."""
    upgrade(postgres_url)
    engine = make_engine(postgres_url, role="umiq_worker")  # SET ROLE: the login still counts
    try:
        with engine.connect() as conn:
            rights = login_rights(conn)
    finally:
        engine.dispose()
    assert rights.superuser and not rights.least_privilege
    assert rights.can_change == ("UPDATE", "DELETE", "TRUNCATE")


@pytest.mark.parametrize("escape", ["", "RESET ROLE", "SET ROLE NONE"])
@pytest.mark.parametrize(
    "statement", ["UPDATE {t} SET task_id = 'forged'", "DELETE FROM {t}", "TRUNCATE {t}"]
)
def test_the_login_cannot_change_rows_even_after_resetting_its_role(
    login: tuple[str, str], postgres_url: str, escape: str, statement: str
) -> None:
    """UPDATE, DELETE, TRUNCATE of each chain table fail, after RESET ROLE too (triggers off)."""
    _, url = login
    audit = AuditLog.from_url(url, role=None)
    audit.append_task(task_id="t-1", department="finance", query="pay", requested_by="ana")
    audit.close()
    with psycopg.connect(_libpq(postgres_url), autocommit=True) as admin:
        for table in TABLES:
            admin.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        if escape:
            conn.execute(escape)
        for table in TABLES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.format(t=table))


@pytest.mark.parametrize(
    "statement",
    ["SET ROLE postgres", "SET session_replication_role = replica", "CREATE TABLE x (a int)"],
)
def test_the_login_cannot_take_other_rights(login: tuple[str, str], statement: str) -> None:
    """The login cannot become the superuser, switch triggers off or create tables."""
    _, url = login
    with (
        psycopg.connect(_libpq(url), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_a_superuser_cannot_be_made_the_worker_login(postgres_url: str) -> None:
    """create_login_role refuses an existing superuser and the worker role itself."""
    upgrade(postgres_url)
    engine = make_engine(postgres_url, role=None)
    try:
        with pytest.raises(ConfigError, match="superuser"):
            create_login_role(engine, "postgres")
        with pytest.raises(ConfigError, match="must not be umiq_worker"):
            create_login_role(engine, "umiq_worker")
    finally:
        engine.dispose()

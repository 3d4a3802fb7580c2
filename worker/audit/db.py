"""Engines and schema: SQLite that really serializes writers, and the Alembic migrations.

``upgrade(url)`` applies ``migrations/`` programmatically (no ``alembic.ini`` needed).
``ensure_schema(url)`` upgrades the embedded SQLite file on its own and refuses a Postgres
database that is behind: there a person runs ``umiq db upgrade`` with the owner's rights.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

import worker
from worker.errors import AuditError

WRITE = "umiq_audit_write"
"""Execution option of a connection that writes: on SQLite it begins ``IMMEDIATE``."""

SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long a SQLite writer waits for another process's write lock before failing."""

_MIGRATION_LOCK = 0x756D6971  # 'umiq': the Postgres advisory lock held while migrating


def migrations_dir() -> Path:
    """The repository's ``migrations`` directory."""
    return Path(worker.__file__).resolve().parents[1] / "migrations"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the audit database at ``url``.

    On SQLite, pysqlite's own transaction handling is switched off and every transaction
    begins explicitly: ``BEGIN IMMEDIATE`` for connections with the ``WRITE`` execution
    option, so a writer takes the database's write lock before it reads the chain head and
    writers in other processes wait for it; plain ``BEGIN`` for readers. WAL lets readers
    run beside a writer.
    """
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, **kwargs)

    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see "begin")
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        _use_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN"
        )

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the database file to WAL (once: the mode is stored in the file).

    The switch needs a moment alone with the file and SQLite answers "database is locked"
    at once, without its busy handler, while another process holds a lock: retry.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # ConfigParser interpolation would choke on a '%' in a password
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision in ``migrations/versions``."""
    head = ScriptDirectory.from_config(_config("sqlite://")).get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (None when it has no audit schema)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations to the database at ``url`` up to ``revision``.

    All of it runs in one transaction that first takes a lock (SQLite's write lock, a
    Postgres advisory lock), so processes that start together migrate once.
    """
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                config = _config(url)
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
    finally:
        engine.dispose()


def ensure_schema(url: str) -> None:
    """Make sure the audit schema at ``url`` is at the newest revision.

    The embedded SQLite database is upgraded in place; any other database must already be
    at head, else ``AuditError`` says to run ``umiq db upgrade``.
    """
    if is_sqlite(url):
        upgrade(url)
        return
    expected = head_revision()
    actual = current_revision(url)
    if actual != expected:
        raise AuditError(
            f"the audit schema is at revision {actual or 'none (empty database)'}, "
            f"expected {expected}: run `umiq db upgrade`"
        )

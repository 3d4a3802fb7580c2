"""Engines and schema: SQLite that really serializes writers, and the Alembic migrations.

``upgrade(url)`` applies ``migrations/`` programmatically (no ``alembic.ini`` needed).
``ensure_schema(url)`` upgrades the embedded SQLite file on its own and refuses a Postgres
database that is behind: there a person runs ``umiq db upgrade`` with the owner's rights.
``make_engine`` on Postgres takes ``UMIQ_DATABASE_ROLE`` (``SET ROLE``) on every connection,
so a worker holds only the grants of ``umiq_worker`` (migration 0002); ``upgrade`` never does.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

import worker
from worker.errors import AuditError, ConfigError

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


class _Default(enum.Enum):
    FROM_SETTINGS = "from settings"


FROM_SETTINGS = _Default.FROM_SETTINGS
"""``make_engine``'s default role: ``UMIQ_DATABASE_ROLE`` (``Settings.database_role``)."""


def make_engine(url: str, *, role: str | _Default | None = FROM_SETTINGS, **kwargs: Any) -> Engine:
    """An engine for the audit database at ``url``.

    On Postgres, when ``role`` is set (by default ``UMIQ_DATABASE_ROLE``), every new
    connection runs ``SET ROLE <role>`` before anything else, so the engine has only that
    role's grants (``umiq_worker``: SELECT and INSERT on the chain tables, see migration
    0002) whatever the login user may do. ``role=None`` keeps the login user's rights, as
    migrations need. Its pool holds ``UMIQ_DATABASE_POOL_SIZE`` connections (and as many
    again beside them when all are busy) unless ``kwargs`` choose the pool.

    On SQLite, pysqlite's own transaction handling is switched off and every transaction
    begins explicitly: ``BEGIN IMMEDIATE`` for connections with the ``WRITE`` execution
    option, so a writer takes the database's write lock before it reads the chain head and
    writers in other processes wait for it; plain ``BEGIN`` for readers. WAL lets readers
    run beside a writer.
    """
    if role is FROM_SETTINGS:
        from worker.settings import get_settings

        role = get_settings().database_role
    if not is_sqlite(url):
        if "pool_size" not in kwargs and "poolclass" not in kwargs:
            from worker.settings import get_settings

            size = get_settings().database_pool_size
            if size is not None:
                kwargs.update(pool_size=size, max_overflow=size)
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
        if role:
            _set_role_on_connect(engine, role)
        return engine
    if role:
        raise ConfigError(
            f"database role {role!r} (UMIQ_DATABASE_ROLE) applies to Postgres only; "
            "unset it for the embedded SQLite audit database"
        )

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


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection inside one read transaction that sees a single state of the database.

    On Postgres the transaction is REPEATABLE READ (one snapshot for every query); on
    SQLite a plain ``BEGIN`` already reads one state of the file.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _set_role_on_connect(engine: Engine, role: str) -> None:
    statement = f"SET SESSION ROLE {engine.dialect.identifier_preparer.quote_identifier(role)}"

    # insert=True: before the dialect's own first queries. In autocommit, so that the
    # rollback the pool issues when a connection is returned cannot undo the SET.
    @event.listens_for(engine, "connect", insert=True)
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()
        finally:
            dbapi_connection.autocommit = autocommit


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
    engine = make_engine(url, role=None)  # the owner's rights, never UMIQ_DATABASE_ROLE's
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

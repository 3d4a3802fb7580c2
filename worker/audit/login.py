"""The worker's own Postgres login: a role that can log in with ``umiq_worker``'s grants
and nothing else, so no ``RESET ROLE`` gives it more.

``UMIQ_DATABASE_ROLE=umiq_worker`` makes a superuser (or any richer) login run ``SET
ROLE umiq_worker`` on each connection; whoever runs code in the worker can ``RESET
ROLE`` and have the login's rights back. A login role that *is* only a member of
``umiq_worker`` has nothing to reset to: :func:`create_login_role` makes one (``umiq db
login-role NAME``), and :func:`login_rights` says what the current connection's login
can do, for a check that the worker is not running as a superuser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.errors import ConfigError

WORKER_ROLE = "umiq_worker"
"""The NOLOGIN role migration 0002 creates: SELECT and INSERT on the chain tables."""
_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"


@dataclass(frozen=True)
class LoginRights:
    """What the login of a connection may do to the audit rows."""

    login: str
    superuser: bool
    worker_member: bool
    can_change: tuple[str, ...]
    """Of UPDATE, DELETE, TRUNCATE on ``step``: what the login itself may do."""

    @property
    def least_privilege(self) -> bool:
        """A member of ``umiq_worker`` that is no superuser and cannot change a step."""
        return self.worker_member and not self.superuser and not self.can_change


def create_login_role(engine: Any, name: str, password: str | None = None) -> bool:
    """Create (or bring back in line) login role ``name``: it logs in, inherits
    ``umiq_worker``'s grants and holds no other attribute. True when it was created.

    ``engine`` must be an admin's (one that may create roles). ConfigError when the
    database has no ``umiq_worker`` role yet (run ``umiq db upgrade`` first) or ``name``
    is a superuser or the worker role itself.
    """
    from psycopg import sql

    if name == WORKER_ROLE:
        raise ConfigError(f"the login role must not be {WORKER_ROLE} itself; pick another name")
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (WORKER_ROLE,))
            if cur.fetchone() is None:
                raise ConfigError(
                    f"the database has no {WORKER_ROLE} role: run `umiq db upgrade` first"
                )
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (name,))
            found = cur.fetchone()
            if found is not None and found[0]:
                raise ConfigError(
                    f"role {name!r} is a superuser: a worker login must not be one; "
                    "pick another name"
                )
            verb = "ALTER" if found is not None else "CREATE"
            statement = sql.SQL(f"{verb} ROLE {{}} {_ATTRIBUTES}").format(sql.Identifier(name))
            if password is not None:
                statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
            cur.execute(statement)
            cur.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(WORKER_ROLE), sql.Identifier(name))
            )
        raw.commit()
    return found is None


def login_rights(conn: Any) -> LoginRights:
    """What the session's login (not a ``SET ROLE``'s role) of SQLAlchemy ``conn`` may do."""
    from sqlalchemy import text

    row = conn.execute(
        text(
            "SELECT session_user, r.rolsuper, "
            "pg_has_role(session_user, :worker, 'MEMBER'), "
            "has_table_privilege(session_user, 'step', 'UPDATE'), "
            "has_table_privilege(session_user, 'step', 'DELETE'), "
            "has_table_privilege(session_user, 'step', 'TRUNCATE') "
            "FROM pg_roles r WHERE r.rolname = session_user"
        ),
        {"worker": WORKER_ROLE},
    ).one()
    login, superuser, member, update, delete, truncate = row
    changes = tuple(
        verb
        for verb, allowed in (("UPDATE", update), ("DELETE", delete), ("TRUNCATE", truncate))
        if allowed or superuser
    )
    return LoginRights(str(login), bool(superuser), bool(member), changes)

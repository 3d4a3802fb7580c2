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
    """What the login of a connection may do to the audit rows, through any role it can
    take on (``SET ROLE`` to a role it is a member of, inherited or not)."""

    login: str
    superuser: bool
    worker_member: bool
    can_change: tuple[str, ...]
    """Of UPDATE, DELETE, TRUNCATE on ``step``: what the login may do, as any of its roles."""
    via: tuple[str, ...] = ()
    """The roles it can take on that are superusers, may create roles or bypass row
    security (the login itself included)."""

    @property
    def least_privilege(self) -> bool:
        """A member of ``umiq_worker`` that cannot become a superuser, make roles or change
        a step."""
        return self.worker_member and not self.superuser and not self.can_change and not self.via

    def verdict(self, set_role: str | None = None) -> tuple[bool, str]:
        """``(fine, what an operator reads)``: a worker's login judged, with the fix."""
        if self.least_privilege:
            return True, (
                f"the worker logs in as {self.login}: a member of {WORKER_ROLE} with no other "
                "rights (least privilege)"
            )
        itself = self.login in self.via
        others = [role for role in self.via if role != self.login]
        what = []
        if itself:
            what.append("a superuser" if self.superuser else "a role with CREATEROLE or BYPASSRLS")
        if others and not (itself and self.superuser):  # a superuser is a member of all
            what.append(f"able to become {', '.join(others)}")
        if self.can_change and not self.superuser:
            what.append(f"allowed to {'/'.join(self.can_change)} audit steps")
        if not self.worker_member:
            what.append(f"no member of {WORKER_ROLE}")
        if self.superuser or self.via or self.can_change:
            why = "whoever runs code in the worker can change or delete audit rows"
            if set_role:
                why += f" (UMIQ_DATABASE_ROLE={set_role} is no limit: RESET ROLE undoes it)"
        else:
            why = "it cannot append to the audit log"
        return False, (
            f"the worker logs in as {self.login}, {', '.join(what)}: {why}. Give it its own "
            "login: `umiq db login-role NAME` as an admin, then UMIQ_DATABASE_URL with that login "
            "and no UMIQ_DATABASE_ROLE (docs/security.md, control 16)"
        )


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
    """What the session's login (not a ``SET ROLE``'s role) of SQLAlchemy ``conn`` may do,
    counting every role it is a member of: a ``NOINHERIT`` login can still ``SET ROLE``."""
    from sqlalchemy import text

    row = conn.execute(
        text(
            "SELECT session_user, bool_or(r.rolsuper), "
            "EXISTS (SELECT 1 FROM pg_roles w WHERE w.rolname = :worker "
            "        AND pg_has_role(session_user, w.oid, 'MEMBER')), "
            "bool_or(has_table_privilege(r.oid, 'step', 'UPDATE')), "
            "bool_or(has_table_privilege(r.oid, 'step', 'DELETE')), "
            "bool_or(has_table_privilege(r.oid, 'step', 'TRUNCATE')), "
            "array_remove(array_agg(CASE WHEN r.rolsuper OR r.rolcreaterole OR r.rolbypassrls "
            "                      THEN r.rolname END ORDER BY r.rolname), NULL) "
            "FROM pg_roles r WHERE pg_has_role(session_user, r.oid, 'MEMBER')"
        ),
        {"worker": WORKER_ROLE},
    ).one()
    login, superuser, member, update, delete, truncate, via = row
    changes = tuple(
        verb
        for verb, allowed in (("UPDATE", update), ("DELETE", delete), ("TRUNCATE", truncate))
        if allowed or superuser
    )
    return LoginRights(str(login), bool(superuser), bool(member), changes, tuple(via or ()))

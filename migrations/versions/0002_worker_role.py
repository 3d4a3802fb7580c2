"""The ``umiq_worker`` role: what a worker may do to the audit tables, and nothing more.

Revision ID: 0002
Revises: 0001
Create Date: 2024-12-02

On Postgres only (SQLite has no roles; its triggers from 0001 are all it has).

The role may read the chain and append to it:

- ``task``, ``step``, ``tool_call``: SELECT, INSERT. No UPDATE, DELETE or TRUNCATE: the
  triggers of 0001 refuse those too, but a superuser can switch triggers off
  (``session_replication_role = replica``, ``ALTER TABLE … DISABLE TRIGGER``) and a
  privilege cannot be switched off that way: both defences hold on their own.
- ``chain_head``: SELECT and UPDATE of ``last_seq`` and ``last_hash`` only. An append
  must move the head (and ``SELECT … FOR UPDATE`` on it, which serializes the writers,
  needs an UPDATE privilege); it cannot rename a chain, add one or delete one. A head
  moved by hand is detected: ``umiq audit verify`` checks that the head names the last
  row of the chain (``HEAD_MISMATCH``) and that no row lies beyond it (``BEYOND_HEAD``).
- ``alembic_version``: SELECT, so that a worker can check the schema is at head.

Everything else on these tables is revoked from the role first, so re-running the
migration on a database where someone granted more brings it back to this set.

The role is created NOLOGIN (roles are per cluster: an existing one is reused, and the
grants are made per database). An operator gives the worker a way in, either

- a login of its own that *is* the role::

      ALTER ROLE umiq_worker LOGIN PASSWORD '…';
      -- UMIQ_DATABASE_URL=postgresql+psycopg://umiq_worker:…@host/db

- or, better, a login user that is a member of the role and takes it on connect::

      CREATE ROLE umiq_app LOGIN PASSWORD '…' NOINHERIT;
      GRANT umiq_worker TO umiq_app;
      -- UMIQ_DATABASE_URL=postgresql+psycopg://umiq_app:…@host/db
      -- UMIQ_DATABASE_ROLE=umiq_worker   (the engine runs SET ROLE umiq_worker)

Migrations (``umiq db upgrade``) run as the owner of the tables, never as this role.
Downgrading revokes the grants in this database and keeps the role, which other
databases of the cluster may use; ``DROP OWNED BY umiq_worker; DROP ROLE umiq_worker``
in each of them removes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "umiq_worker"
CONTENT_TABLES = ("task", "step", "tool_call")
TABLES = (*CONTENT_TABLES, "chain_head", "alembic_version")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Two databases of one cluster migrating at once may both see no role: the loser of
    # the race gets duplicate_object or unique_violation, and the role exists either way.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END
        $$
        """
    )
    op.execute(
        f"DO $$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %I TO {ROLE}', "
        "current_schema()); END $$"
    )
    op.execute(f"REVOKE ALL ON {', '.join(TABLES)} FROM {ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON {', '.join(CONTENT_TABLES)} TO {ROLE}")
    op.execute(f"GRANT SELECT, UPDATE (last_seq, last_hash) ON chain_head TO {ROLE}")
    op.execute(f"GRANT SELECT ON alembic_version TO {ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"REVOKE ALL ON {', '.join(TABLES)} FROM {ROLE}")
    op.execute(
        f"DO $$ BEGIN EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {ROLE}', "
        "current_schema()); END $$"
    )

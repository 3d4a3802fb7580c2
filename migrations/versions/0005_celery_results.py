"""Celery's result tables, made by the admin and granted to ``umiq_worker``.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-20

With results in the audit database (the default: ``db+`` + ``UMIQ_DATABASE_URL``) the
worker writes each task's state and result to Celery's ``celery_taskmeta`` and makes the
table at start when it is missing. A worker that logs in as its own role (``umiq db
login-role``) may create nothing, so it could neither start nor store a result. Here the
admin makes the tables, as Celery itself would (its own SQLAlchemy models, so the columns
are the ones the installed Celery writes), and the worker role gets what storing a
result needs: SELECT, INSERT and UPDATE (a task's row goes from STARTED to SUCCESS) on
``celery_taskmeta`` and ``celery_tasksetmeta``, USAGE on their id sequences. No DELETE:
expiring old results is an admin's job. Results hold tokens only (``result_extended``
is off), never the request.

On Postgres only: SQLite has no roles, and Celery makes its tables there itself. A
result backend in another database gets nothing from this migration; grant the same
there by hand (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "umiq_worker"
TABLES = ("celery_taskmeta", "celery_tasksetmeta")
SEQUENCES = ("task_id_sequence", "taskset_id_sequence")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    import celery.backends.database.models  # noqa: F401  (registers the tables)
    from celery.backends.database.session import ResultModelBase

    ResultModelBase.metadata.create_all(bind, checkfirst=True)
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                REVOKE ALL ON {", ".join(TABLES)} FROM {ROLE};
                GRANT SELECT, INSERT, UPDATE ON {", ".join(TABLES)} TO {ROLE};
                GRANT USAGE ON SEQUENCE {", ".join(SEQUENCES)} TO {ROLE};
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # The tables keep their results (Celery would make them again); only the grants go.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                REVOKE ALL ON {", ".join(TABLES)} FROM {ROLE};
                REVOKE ALL ON SEQUENCE {", ".join(SEQUENCES)} FROM {ROLE};
            END IF;
        END
        $$
        """
    )

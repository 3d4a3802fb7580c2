"""``rollout_change``: department rollout settings as a link of the audit chain.

Revision ID: 0004
Revises: 0003
Create Date: 2024-12-10

Each row is one change of one department's rollout settings (mode, percentage, kill
switch, tools, approval rules…): who made it, when, why, the settings before and after.
The department's latest row is the live copy that workers read on every task, so a change
takes effect on the next task without a restart. Department ``*`` holds the global
settings (the global kill switch). Append-only like the other chain tables; the worker
role may SELECT and INSERT.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "umiq_worker"
TABLE = "rollout_change"
MESSAGE = "the audit log is append-only"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.UniqueConstraint("department", "version", name="rollout_change_version_key"),
    )
    op.create_index("ix_rollout_change_department", TABLE, ["department"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION umiq_audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION umiq_audit_append_only()"
        )
        op.execute(
            f"""
            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                    REVOKE ALL ON {TABLE} FROM {ROLE};
                    GRANT SELECT, INSERT ON {TABLE} TO {ROLE};
                END IF;
            END
            $$
            """
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {verb} on {TABLE} refused'); END"
            )


def downgrade() -> None:
    op.drop_index("ix_rollout_change_department", table_name=TABLE)
    op.drop_table(TABLE)  # its triggers and grants go with it

"""The audit tables: task, step, tool_call and chain_head, append-only.

Revision ID: 0001
Revises:
Create Date: 2024-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
CONTENT_TABLES = ("task", "step", "tool_call")
STEP_KINDS = ("planner", "caller", "summarizer", "tool", "policy", "rejected", "outcome")
MESSAGE = "the audit log is append-only"


def _seq() -> sa.Column:
    return sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False)


def _links() -> list[sa.Column]:
    return [
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "task",
        _seq(),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
        *_links(),
        sa.UniqueConstraint("task_id", name="task_task_id_key"),
    )
    op.create_index("ix_task_received_at", "task", ["received_at"])
    kinds = ", ".join(f"'{k}'" for k in STEP_KINDS)
    op.create_table(
        "step",
        _seq(),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column("prompt_digest", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("adapter", sa.Text(), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        *_links(),
        sa.CheckConstraint(f"kind IN ({kinds})", name="ck_step_kind"),
    )
    op.create_index("ix_step_task_id", "step", ["task_id"])
    op.create_table(
        "tool_call",
        _seq(),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("tool", sa.Text(), nullable=False),
        sa.Column("effect", sa.Text(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        *_links(),
        sa.UniqueConstraint("idempotency_key", name="tool_call_idempotency_key_key"),
    )
    op.create_index("ix_tool_call_task_id", "tool_call", ["task_id"])
    chain_head = op.create_table(
        "chain_head",
        sa.Column("chain", sa.Text(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.Text(), nullable=False),
    )
    op.bulk_insert(chain_head, [{"chain": "main", "last_seq": 0, "last_hash": GENESIS}])

    # Append-only in the database too: content rows refuse UPDATE and DELETE, every
    # table refuses TRUNCATE, and the chain head can move but not disappear.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION umiq_audit_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{MESSAGE}: % on % refused', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        for table in CONTENT_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION umiq_audit_append_only()"
            )
        op.execute(
            "CREATE TRIGGER chain_head_keep BEFORE DELETE ON chain_head "
            "FOR EACH ROW EXECUTE FUNCTION umiq_audit_append_only()"
        )
        for table in (*CONTENT_TABLES, "chain_head"):
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION umiq_audit_append_only()"
            )
    else:
        for table in CONTENT_TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {verb} on {table} refused'); END"
                )
        op.execute(
            "CREATE TRIGGER chain_head_keep BEFORE DELETE ON chain_head "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE on chain_head refused'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*CONTENT_TABLES, "chain_head"):
            op.execute(f"DROP TABLE {table} CASCADE")
        op.execute("DROP FUNCTION umiq_audit_append_only()")
    else:
        for table in (*CONTENT_TABLES, "chain_head"):
            op.drop_table(table)

"""``sealed_key``: the wrapped data keys of sealed audit values, outside the chain.

Revision ID: 0003
Revises: 0002
Create Date: 2024-12-03

A sealed value sits in a chained row as an AES-GCM envelope that is never rewritten;
its data key, wrapped by a key of the key ring, sits here so that ``umiq keys rotate``
can re-wrap it under a new key (the one UPDATE in umiq, made by an admin).

On Postgres the worker role ``umiq_worker`` (migration 0002), when it exists, may SELECT
and INSERT (a worker seals and an auditor's worker opens) but neither UPDATE nor DELETE:
a worker can neither re-wrap a key nor destroy one. Everything else is revoked first, as
in 0002. SQLite has no roles: the table is all it gets.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "umiq_worker"


def upgrade() -> None:
    op.create_table(
        "sealed_key",
        sa.Column("ref", sa.Text(), primary_key=True),
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("rewrapped_at", sa.String(32), nullable=True),
    )
    op.create_index("ix_sealed_key_kid", "sealed_key", ["kid"])  # rotation finds keys by kid
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            DO $$
            BEGIN
                IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{ROLE}') THEN
                    REVOKE ALL ON sealed_key FROM {ROLE};
                    GRANT SELECT, INSERT ON sealed_key TO {ROLE};
                END IF;
            END
            $$
            """
        )


def downgrade() -> None:
    op.drop_index("ix_sealed_key_kid", table_name="sealed_key")
    op.drop_table("sealed_key")  # its grants go with it

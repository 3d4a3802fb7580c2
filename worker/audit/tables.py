"""The audit tables: append-only, every row a link of one hash chain.

Rows are never updated: a change of state is a new row. ``seq`` is shared by the
content tables (one chain, ``main``), so the chain is all their rows ordered by ``seq``.
``chain_head`` holds the last link; locking it serializes the writers. The schema itself
is created by the Alembic migration in ``migrations/versions``; these models describe it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Text
from sqlmodel import Field, SQLModel

from worker.audit._types import CanonicalJSON, UtcTimestamp
from worker.audit.events import STEP_KIND_NAMES

CHAIN = "main"
"""The one chain that every audit row belongs to."""

STEP_KINDS = STEP_KIND_NAMES
"""What a ``step`` row records: the step kinds of ``worker.audit.events`` (the column's
check; migration 0001 keeps its own copy, as written then)."""

_STEP_KIND_CHECK = "kind IN (" + ", ".join(f"'{k}'" for k in STEP_KINDS) + ")"


class Task(SQLModel, table=True):
    """A task as received; its history is in ``step`` and ``tool_call``."""

    __tablename__ = "task"

    seq: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    task_id: str = Field(sa_type=Text, unique=True)
    department: str = Field(sa_type=Text)
    query: str = Field(sa_type=Text)
    requested_by: str = Field(sa_type=Text)
    context: dict[str, Any] = Field(default_factory=dict, sa_type=CanonicalJSON, nullable=False)
    received_at: datetime = Field(sa_type=UtcTimestamp, index=True)
    prev_hash: str = Field(sa_type=Text)
    hash: str = Field(sa_type=Text)


class Step(SQLModel, table=True):
    """One step of an episode: a role's output, a tool observation, a policy decision…"""

    __tablename__ = "step"
    __table_args__ = (CheckConstraint(_STEP_KIND_CHECK, name="ck_step_kind"),)

    seq: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    task_id: str = Field(sa_type=Text, index=True)
    index: int
    kind: str = Field(sa_type=Text)
    role: str | None = Field(default=None, sa_type=Text)
    prompt_digest: str | None = Field(default=None, sa_type=Text)
    output: str = Field(default="", sa_type=Text)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=CanonicalJSON, nullable=False)
    latency_ms: int | None = None
    model: str | None = Field(default=None, sa_type=Text)
    adapter: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UtcTimestamp)
    prev_hash: str = Field(sa_type=Text)
    hash: str = Field(sa_type=Text)


class ToolCall(SQLModel, table=True):
    """A connector call and its result, under the idempotency key ``task_id:step``."""

    __tablename__ = "tool_call"

    seq: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    task_id: str = Field(sa_type=Text, index=True)
    step: int
    idempotency_key: str = Field(sa_type=Text, unique=True)
    tool: str = Field(sa_type=Text)
    effect: str = Field(sa_type=Text)
    request: dict[str, Any] = Field(default_factory=dict, sa_type=CanonicalJSON, nullable=False)
    response: Any = Field(default=None, sa_type=CanonicalJSON, nullable=True)
    ok: bool
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UtcTimestamp)
    prev_hash: str = Field(sa_type=Text)
    hash: str = Field(sa_type=Text)


class RolloutChange(SQLModel, table=True):
    """A change of one department's rollout settings (DESIGN §8): who, when, why, before
    and after. The department's latest row is the live copy every worker reads per task;
    department ``*`` holds the global settings (the global kill switch)."""

    __tablename__ = "rollout_change"

    seq: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    department: str = Field(sa_type=Text, index=True)
    version: int
    """The department's settings version: 1 for its first change, then one more each."""
    changed_by: str = Field(sa_type=Text)
    reason: str = Field(default="", sa_type=Text)
    before: dict[str, Any] | None = Field(default=None, sa_type=CanonicalJSON, nullable=True)
    after: dict[str, Any] = Field(default_factory=dict, sa_type=CanonicalJSON, nullable=False)
    created_at: datetime = Field(sa_type=UtcTimestamp)
    prev_hash: str = Field(sa_type=Text)
    hash: str = Field(sa_type=Text)


class ChainHead(SQLModel, table=True):
    """The last link of a chain: its ``seq`` and ``hash`` (``0`` and GENESIS when empty)."""

    __tablename__ = "chain_head"

    chain: str = Field(sa_type=Text, primary_key=True)
    last_seq: int = Field(sa_type=BigInteger)
    last_hash: str = Field(sa_type=Text)


class SealedKeyRow(SQLModel, table=True):
    """A sealed value's data key, wrapped by key ``kid`` of the key ring; outside the chain.

    The envelope in the chained row never changes; rotation re-wraps this row instead
    (``rewrapped_at``), the one UPDATE umiq makes, by an admin (``umiq keys rotate``).
    """

    __tablename__ = "sealed_key"

    ref: str = Field(sa_type=Text, primary_key=True)
    kid: str = Field(sa_type=Text, index=True)
    wrapped: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UtcTimestamp)
    rewrapped_at: datetime | None = Field(default=None, sa_type=UtcTimestamp, nullable=True)


CHAIN_TABLES: dict[str, type[SQLModel]] = {
    "task": Task,
    "step": Step,
    "tool_call": ToolCall,
    "rollout_change": RolloutChange,
}
"""The tables whose rows are links of the chain, by name."""

UNHASHED = frozenset({"prev_hash", "hash"})
"""Columns of a chain table that the row hash does not cover (it covers all others)."""


def content_columns(table: str) -> list[str]:
    """The columns of chain table ``table`` that its row hash covers, ``seq`` first."""
    return [c.name for c in CHAIN_TABLES[table].__table__.columns if c.name not in UNHASHED]  # type: ignore[attr-defined]

"""Audit rows as read back: frozen, detached from any session."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class _Record:
    seq: int
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class TaskRecord(_Record):
    """A ``task`` row."""

    task_id: str
    department: str
    query: str
    requested_by: str
    context: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True, kw_only=True)
class StepRecord(_Record):
    """A ``step`` row."""

    task_id: str
    index: int
    kind: str
    role: str | None
    prompt_digest: str | None
    output: str
    details: dict[str, Any]
    latency_ms: int | None
    model: str | None
    adapter: str | None
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class ToolCallRecord(_Record):
    """A ``tool_call`` row."""

    task_id: str
    step: int
    idempotency_key: str
    tool: str
    effect: str
    request: dict[str, Any]
    response: Any
    ok: bool
    error: str | None
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class RolloutChangeRecord(_Record):
    """A ``rollout_change`` row."""

    department: str
    version: int
    changed_by: str
    reason: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    created_at: datetime

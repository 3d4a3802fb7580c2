"""``AuditLogProtocol``: what the worker, the human gates and the review ask of an audit log.

``worker.audit.AuditLog`` (SQL, one hash chain) implements it, and so do the wrappers
around it (``worker.metrics.MeteredAuditLog``) and the fakes of the tests. Code that
takes an audit log annotates it with this protocol rather than ``Any``. Step ``details``
are typed by ``worker.audit.events``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from worker.audit.records import RolloutChangeRecord, StepRecord, TaskRecord, ToolCallRecord
from worker.audit.verify import VerifyReport


class AuditLogProtocol(Protocol):
    """Append a task's events to the chain and read them back."""

    def append_task(
        self,
        *,
        task_id: str,
        department: str,
        query: str,
        requested_by: str,
        context: Mapping[str, Any] | None = None,
        received_at: datetime | None = None,
        sealed_context: Mapping[str, Any] | None = None,
    ) -> TaskRecord: ...

    def append_step(
        self,
        *,
        task_id: str,
        index: int,
        kind: str,
        role: str | None = None,
        prompt_digest: str | None = None,
        output: str = "",
        details: Mapping[str, Any] | None = None,
        latency_ms: int | None = None,
        model: str | None = None,
        adapter: str | None = None,
        sealed: Mapping[str, Any] | None = None,
    ) -> StepRecord: ...

    def append_tool_call(
        self,
        *,
        task_id: str,
        step: int,
        idempotency_key: str,
        tool: str,
        effect: str,
        request: Mapping[str, Any],
        response: Any = None,
        ok: bool,
        error: str | None = None,
    ) -> ToolCallRecord: ...

    def append_rollout_change(
        self,
        *,
        department: str,
        version: int,
        changed_by: str,
        reason: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any],
    ) -> RolloutChangeRecord: ...

    def rollout_changes(
        self, department: str | None = None, *, latest_only: bool = False
    ) -> list[RolloutChangeRecord]: ...

    def rollout_latest(self, departments: Sequence[str]) -> dict[str, RolloutChangeRecord]: ...

    def task(self, task_id: str) -> TaskRecord | None: ...

    def tasks(self, limit: int = 50) -> list[TaskRecord]: ...

    def steps(self, task_id: str) -> list[StepRecord]: ...

    def tool_calls(self, task_id: str) -> list[ToolCallRecord]: ...

    def tool_call_by_key(self, idempotency_key: str) -> ToolCallRecord | None: ...

    def outcome(self, task_id: str) -> dict[str, Any] | None: ...

    def unseal(self, value: Any, *, ref: str | None = None) -> Any: ...

    def head(self) -> tuple[int, str]: ...

    def verify(self) -> VerifyReport: ...

"""The audit log: every task's event history as a tamper-evident hash chain.

    log = AuditLog.from_url(url)          # after ensure_schema(url)
    log.append_task(task_id=..., department=..., query=..., requested_by=...)
    log.append_step(task_id=..., index=1, kind="planner", output=...)
    log.verify()                          # VerifyReport(ok, rows, first_broken)

Importing this package never imports torch.
"""

from worker.audit.chain import GENESIS, canonical_json, digest, row_hash
from worker.audit.db import current_revision, ensure_schema, head_revision, make_engine, upgrade
from worker.audit.log import AuditLog
from worker.audit.protocol import AuditLogProtocol
from worker.audit.records import StepRecord, TaskRecord, ToolCallRecord
from worker.audit.tables import CHAIN, STEP_KINDS, ChainHead, Step, Task, ToolCall
from worker.audit.verify import VerifyReport

__all__ = [
    "CHAIN",
    "GENESIS",
    "STEP_KINDS",
    "AuditLog",
    "AuditLogProtocol",
    "ChainHead",
    "Step",
    "StepRecord",
    "Task",
    "TaskRecord",
    "ToolCall",
    "ToolCallRecord",
    "VerifyReport",
    "canonical_json",
    "current_revision",
    "digest",
    "ensure_schema",
    "head_revision",
    "make_engine",
    "row_hash",
    "upgrade",
]

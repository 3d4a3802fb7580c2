"""Refusing a message: a reason, an audit record, and the message kept in the DLQ."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from worker.envelope import safe_task_id
from worker.letters import LETTER_TYPE, Original, seal_letter

if TYPE_CHECKING:
    from worker.audit.protocol import AuditLogProtocol

log = structlog.get_logger("umiq.deadletter")


def _as_bytes(body: Any) -> bytes:
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    try:
        return json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):
        return repr(body).encode("utf-8")


#: Headers this module adds to a dead letter (replay takes them off again).
REASON, FIELD, SHA256, TASK, REFUSED_AT, AUDITED, SEALED, TRUNCATED = (
    "x-umiq-reason",
    "x-umiq-field",
    "x-umiq-sha256",
    "x-umiq-task-id",
    "x-umiq-refused-at",
    "x-umiq-audited",
    "x-umiq-sealed",
    "x-umiq-truncated",
)
OWN_HEADERS = (REASON, FIELD, SHA256, TASK, REFUSED_AT, AUDITED, SEALED, TRUNCATED)
#: Bytes a dead letter keeps of a body over ``UMIQ_MAX_MESSAGE_BYTES``: enough to tell what
#: it was; the whole body's SHA-256 and size are in its headers and the audit record.
KEPT_HEAD = 64 * 1024
#: AMQP properties a dead letter keeps, so that a replay's result reaches the producer.
KEPT_PROPERTIES = ("correlation_id", "reply_to", "priority")
_AUDIT_TRIES = 3


def refuse(
    app: Any,
    body: Any,
    *,
    reason: str,
    field: str | None,
    audit: AuditLogProtocol,
    delivery_id: str | None = None,
    content_type: str = "application/json",
    content_encoding: str | None = None,
    headers: Mapping[str, Any] | None = None,
    properties: Mapping[str, Any] | None = None,
    task_id: str | None = None,
    own: bool = False,
) -> dict[str, Any]:
    """Dead-letter ``body`` sealed, with ``reason`` in its headers, and audit the refusal.

    ``body`` is best the message's raw bytes: they are kept as they came, with the
    message's own ``headers`` (a replay sends them back as they were), but sealed with
    the audit key ring in a letter (``worker.letters``): the broker holds no personal
    data of the request, only umiq's headers beside the letter, the reason with what the
    detector finds masked (``<IBAN>``). The raw body never goes to the logs or the audit
    log either. The audit record keeps its SHA-256 so the two can be matched.

    The refusal is recorded under the task id the message claims (``task_id``, else the
    envelope's), unless that task is already in the audit log and this is not its own
    ending (``own``): a malformed message cannot change another task's status, so it is
    recorded as ``rejected-<delivery>`` with the id it claimed.

    A body over ``UMIQ_MAX_MESSAGE_BYTES`` is kept as its first :data:`KEPT_HEAD` bytes
    (its letter would pass the broker's message size limit, and the worker's memory), with
    ``x-umiq-truncated`` giving its size; the SHA-256 is the whole body's. Such a letter is
    not replayed.
    """
    from worker.celery_app import dead_letter_queue
    from worker.settings import get_settings

    settings = get_settings()
    raw = _as_bytes(body)
    sha = hashlib.sha256(raw).hexdigest()
    size = len(raw)
    if size > settings.max_message_bytes:
        raw = raw[: min(KEPT_HEAD, settings.max_message_bytes)]
        reason += f" (the dead letter keeps the first {len(raw):,} of its {size:,} bytes)"
    # A reason may quote a value of the message (a schema error, an exception's text).
    raw_reason, reason = reason, _mask(settings).redact_text(reason)
    fresh = f"rejected-{delivery_id or uuid.uuid4()}"
    claimed = task_id or safe_task_id(body if isinstance(body, dict) else None, "") or None
    queue = dead_letter_queue(settings)
    details: dict[str, Any] = {
        "field": field,
        "message_sha256": sha,
        "dead_letter_queue": queue.name,
    }
    audited, record_id = _audit(audit, claimed, fresh, own, reason, details)
    if content_encoding is None:
        content_encoding = (
            "utf-8" if content_type.startswith(("application/json", "text")) else "binary"
        )
    original = Original(
        body=raw,
        content_type=content_type,
        content_encoding=content_encoding,
        headers={k: v for k, v in dict(headers or {}).items() if k not in OWN_HEADERS},
        reason=raw_reason,
    )
    keyring = _keyring(audit, settings)
    letter = seal_letter(keyring, original, f"dead-letter/{sha}")
    out_headers = {
        REASON: reason[:2000],
        FIELD: field or "",
        SHA256: sha,
        TASK: record_id,
        REFUSED_AT: datetime.now(UTC).isoformat(),
        AUDITED: audited,
        SEALED: keyring.primary,
    }
    if len(raw) < size:
        out_headers[TRUNCATED] = size
    kept = {k: v for k, v in dict(properties or {}).items() if k in KEPT_PROPERTIES and v}
    with app.producer_or_acquire() as producer:
        producer.publish(
            letter,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            content_type=LETTER_TYPE,
            content_encoding="utf-8",
            headers=out_headers,
            delivery_mode=2,
            retry=True,
            **kept,
        )
    log.warning(
        "message.refused",
        task_id=record_id,
        reason=reason,
        field=field,
        message_sha256=sha,
        dead_letter_queue=queue.name,
        audited=audited,
    )
    return {
        "task_id": record_id,
        "outcome": "rejected",
        "answer": "",
        "reason": reason,
        "steps": [],
        "tokens": 0,
    }


def _mask(settings: Any) -> Any:
    """The redactor of personal data in a reason (kind labels, as in the logs)."""
    from policies import RedactingProcessor
    from worker.agent.guard import detector_from

    return RedactingProcessor(detector_from(settings))


def _keyring(audit: AuditLogProtocol, settings: Any) -> Any:
    """The audit's key ring (its sealer's), else the one the settings name."""
    sealer = getattr(audit, "sealer", None)
    if sealer is not None:
        return sealer.keyring
    from worker.audit.keyring import load_keyring

    return load_keyring(settings)


def _audit(
    audit: AuditLogProtocol,
    claimed: str | None,
    fresh: str,
    own: bool,
    reason: str,
    details: dict[str, Any],
) -> tuple[str, str]:
    """Append the ``rejected`` step; ``("yes" | "no: why", the task id it is under)``.

    An audit database that stays down does not keep the message: it is dead-lettered
    anyway, marked as not audited (``umiq dlq list`` shows it).
    """
    from worker.errors import AuditError

    record_id = claimed or fresh
    last: Exception | None = None
    for attempt in range(_AUDIT_TRIES):
        try:
            if claimed and not own and audit.task(claimed) is not None:
                record_id = fresh
                details = {**details, "claimed_task_id": claimed}
            audit.append_step(
                task_id=record_id,
                index=0,
                kind="rejected",
                role=None,
                prompt_digest=None,
                output=reason,
                details=details,
                latency_ms=None,
                model=None,
                adapter=None,
            )
            return "yes", record_id
        except AuditError as exc:
            last = exc
            time.sleep(0.5 * 2**attempt)
    log.error("message.refusal_not_audited", task_id=record_id, error=str(last))
    return f"no: {last}"[:500], record_id

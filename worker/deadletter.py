"""Refusing a message: a reason, an audit record, and the message kept in the DLQ."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import structlog

from worker.envelope import safe_task_id

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


def refuse(
    app: Any,
    body: Any,
    *,
    reason: str,
    field: str | None,
    audit: Any,
    delivery_id: str | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """Dead-letter ``body`` unchanged with ``reason`` in its headers, and audit the refusal.

    The raw body goes only to the dead-letter queue (where operators can inspect and
    replay it), never to the logs or the audit log: it may carry personal data. The audit
    record keeps its SHA-256 so the two can be matched.
    """
    from worker.celery_app import dead_letter_queue
    from worker.settings import get_settings

    settings = get_settings()
    raw = _as_bytes(body)
    sha = hashlib.sha256(raw).hexdigest()
    task_id = safe_task_id(
        body if isinstance(body, dict) else None, f"rejected-{delivery_id or uuid.uuid4()}"
    )
    queue = dead_letter_queue(settings)
    with app.producer_or_acquire() as producer:
        producer.publish(
            raw,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            content_type=content_type,
            content_encoding="utf-8"
            if content_type.startswith(("application/json", "text"))
            else "binary",
            headers={"x-umiq-reason": reason, "x-umiq-field": field or "", "x-umiq-sha256": sha},
            delivery_mode=2,
            retry=True,
        )
    audit.append_step(
        task_id=task_id,
        index=0,
        kind="rejected",
        role=None,
        prompt_digest=None,
        output=reason,
        details={"field": field, "message_sha256": sha, "dead_letter_queue": queue.name},
        latency_ms=None,
        model=None,
        adapter=None,
    )
    log.warning(
        "message.refused",
        task_id=task_id,
        reason=reason,
        field=field,
        message_sha256=sha,
        dead_letter_queue=queue.name,
    )
    return {
        "task_id": task_id,
        "outcome": "rejected",
        "answer": "",
        "reason": reason,
        "steps": [],
        "tokens": 0,
    }

"""Dead letters the broker makes itself, sealed like the worker's own.

RabbitMQ dead-letters a message of a work queue without asking the worker: a quorum
queue's delivery limit reached (the worker died on it each time), a reject without
requeue, an expired ``expiration``, a length limit. It cannot seal anything, so it must
not put such a message where dead letters are kept. The work queues dead-letter through
``umiq.dlx`` with routing key ``UMIQ_DEAD_LETTER_QUEUE`` (their arguments, unchanged), and
that key now leads to an *intake* queue, ``<dead-letter queue>.unsealed``; the
dead-letter queue itself is reached only through the default exchange, by the worker.
Every worker on RabbitMQ consumes the intake (:class:`SealBrokerDeadLetters`) and passes
each message to ``worker.deadletter.refuse``: sealed with the audit key ring, audited,
kept in the dead-letter queue, then acked. A message the worker cannot seal stays unacked
in the intake (it comes back when the worker reconnects): nothing is lost.

A raw message sits in the intake only while no worker runs. Deployments from before the
intake had the dead-letter queue bound to ``umiq.dlx``: each worker removes that binding
when it starts (:func:`declare_dead_letter_path`).
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from celery import bootsteps
from kombu import Consumer, Exchange, Queue

from worker.envelope import safe_task_id
from worker.settings import Settings

log = structlog.get_logger("umiq.deadletter")

INTAKE_SUFFIX = ".unsealed"


def intake_queue(settings: Settings) -> Queue:
    """Where the broker's own dead letters wait for a worker to seal them."""
    from worker.celery_app import DEAD_LETTER_EXCHANGE

    return Queue(
        settings.dead_letter_queue + INTAKE_SUFFIX,
        Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True),
        routing_key=settings.dead_letter_queue,
        durable=True,
    )


def declare_dead_letter_path(channel: Any, settings: Settings) -> Queue:
    """Declare the intake and the dead-letter queue, and remove the binding that sent the
    broker's dead letters straight into the dead-letter queue; return the bound intake."""
    from worker.celery_app import DEAD_LETTER_EXCHANGE, dead_letter_queue

    intake = intake_queue(settings)(channel)
    intake.declare()
    dead_letter_queue(settings)(channel).declare()
    channel.queue_unbind(
        queue=settings.dead_letter_queue,
        exchange=DEAD_LETTER_EXCHANGE,
        routing_key=settings.dead_letter_queue,
    )
    return intake


def broker_reason(headers: dict[str, Any]) -> str:
    """Why and from where the broker dead-lettered a message (its ``x-death`` record)."""
    deaths = headers.get("x-death") or []
    death = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    why = death.get("reason") or headers.get("x-first-death-reason") or "unknown"
    queue = death.get("queue") or headers.get("x-first-death-queue") or "unknown"
    return f"dead-lettered by the broker ({why}) from queue {queue}"


def claimed_task_id(body: bytes) -> str | None:
    """The task id of the envelope inside a Celery message body (or a bare envelope)."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(decoded, list) and decoded and isinstance(decoded[0], list) and decoded[0]:
        decoded = decoded[0][0]
    return safe_task_id(decoded, "") or None


def seal_broker_letter(app: Any, message: Any) -> None:
    """Seal one message from the intake into the dead-letter queue, then ack it."""
    from worker import runtime
    from worker.consumer import raw_body
    from worker.deadletter import refuse
    from worker.settings import get_settings

    settings = get_settings()
    try:
        headers = message.headers if isinstance(message.headers, dict) else {}
        body = raw_body(message)
        raw = body if isinstance(body, bytes) else bytes(body)
        refuse(
            app,
            raw,
            reason=broker_reason(headers),
            field="<message>",
            audit=runtime.audit_log(),
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or None,
            headers=headers,
            properties=message.properties,
            # A body over the size limit is not parsed for the id it claims.
            task_id=claimed_task_id(raw) if len(raw) <= settings.max_message_bytes else None,
        )
    except Exception:
        # Left unacked: it stays in the intake and comes back on the next connection.
        log.exception("dead_letter.not_sealed")
        return
    message.ack()


class SealBrokerDeadLetters(bootsteps.ConsumerStep):  # type: ignore[misc]
    """A worker's consumer of the intake: every broker dead letter sealed as it comes."""

    app: Any = None

    def start(self, c: Any) -> None:
        self.app = c.app
        super().start(c)

    def get_consumers(self, channel: Any) -> list[Consumer]:
        from worker.consumer import keep_bytes
        from worker.settings import get_settings

        keep_bytes(channel)  # sealed as the bytes that came, not as py-amqp decoded them
        intake = declare_dead_letter_path(channel, get_settings())
        return [
            Consumer(
                channel,
                queues=[intake],
                on_message=lambda message: seal_broker_letter(self.app, message),
                # One at a time: a broker dead letter may be as large as RabbitMQ allows
                # (128 MiB before 4.0), and each one held unacked is held in memory.
                prefetch_count=1,
            )
        ]

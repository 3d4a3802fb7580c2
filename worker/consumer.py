"""A Celery consumer that never drops a message it cannot run.

Celery acks undecodable messages and rejects unknown ones (which a broker without a
dead-letter exchange simply deletes). Here every such message is dead-lettered with its
reason and audited. A plain JSON envelope without Celery's headers (a producer in
another language) is accepted and run as ``umiq.run_task``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from celery.worker.consumer import Consumer

from worker.celery_app import TASK_NAME


class UmiqConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with refusals that keep the message and say why."""

    def _refuse(self, message: Any, body: Any, reason: str) -> None:
        from worker import runtime
        from worker.deadletter import refuse

        refuse(
            self.app,
            body,
            reason=reason,
            field="<message>",
            audit=runtime.audit_log(),
            delivery_id=str(message.delivery_tag),
            content_type=message.content_type or "application/octet-stream",
        )
        message.ack()

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._refuse(
            message,
            message.body,
            f"refusing to decode content of type {message.content_type!r}: {exc}",
        )

    def on_unknown_message(self, body: Any, message: Any) -> None:
        if isinstance(body, bytes | str):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                body = json.loads(body)
        if isinstance(body, dict):
            # A plain JSON envelope: run it as a task (validation happens there).
            self.app.send_task(TASK_NAME, args=[body], queue=self.app.conf.task_default_queue)
            message.ack()
            return
        self._refuse(message, body, "not a Celery task message and not a JSON envelope")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = message.headers.get("task") if message.headers else None
        self._refuse(message, body, f"unknown task {name!r}: only {TASK_NAME!r} runs here")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._refuse(message, body, f"invalid task message: {exc}")

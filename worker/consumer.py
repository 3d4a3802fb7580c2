"""A Celery consumer that never drops, loops on or dies of a message it cannot run.

Celery trusts its own message format: some malformed messages stop the worker on every
start, some leave it holding the message forever, and others are acked and lost. Here
every message from the task queue is first checked (``worker.messages.check_message``);
one that Celery's task protocol or umiq's tasks cannot take is dead-lettered with its
original body, headers and the reason, audited and acked, before Celery sees it. A plain
JSON envelope without Celery's headers (a producer in another language) is accepted and
run as ``umiq.run_task``. Should Celery still fail on a message, the same happens.
"""

from __future__ import annotations

import contextlib
import inspect
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from celery.worker.consumer import Consumer
from kombu.exceptions import MessageStateError
from kombu.transport import pyamqp

from worker.celery_app import TASK_NAME
from worker.messages import PlainEnvelope, Refusal, check_message
from worker.task_repr import redact_headers

log = structlog.get_logger("umiq.consumer")


def served_tasks(app: Any) -> dict[str, Callable[..., Any]]:
    """The umiq tasks this app serves, each as a function of its arguments (no ``self``)."""
    found: dict[str, Callable[..., Any]] = {}
    for name, task in app.tasks.items():
        if not name.startswith("umiq."):
            continue
        run = task.run
        params = list(inspect.signature(run).parameters.values())
        if params and params[0].name == "self":  # a bound task's function, unbound
            run = _without_first(run)
        found[name] = run
    return found


def _without_first(fn: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())[1:]

    def call(*args: Any, **kwargs: Any) -> Any:  # pragma: no cover - only its signature is used
        raise NotImplementedError

    call.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return call


class UmiqConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with a check before Celery sees a message, and refusals that
    keep the message and say why."""

    def connect(self) -> Any:
        """The broker connection, its task channel handing bodies over as the bytes that
        came (py-amqp would decode them by their declared encoding), compressed bodies
        inflated no further than the size limit (``worker.inflate``)."""
        from worker import inflate
        from worker.settings import get_settings

        # kombu inflates a compressed body as it builds the message: bound it first
        inflate.bound(get_settings().max_message_bytes)
        connection = super().connect()
        keep_bytes(connection.default_channel)
        return connection

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        celery_handler = super().create_task_handler(*args, **kwargs)
        tasks = served_tasks(self.app)

        def on_task_received(message: Any) -> Any:
            try:
                verdict = self._check(message, tasks)
            except Exception as exc:  # a check that fails must not take the worker down
                log.exception("message.check_failed")
                verdict = Refusal("<message>", f"cannot be checked: {type(exc).__name__}")
            if isinstance(verdict, Refusal):
                return self._refuse(message, str(verdict), verdict.field, verdict.task_id)
            if isinstance(verdict, PlainEnvelope):
                return self._run_plain(message, verdict.envelope)
            # Whoever sent it, Celery logs and passes on only the redacted reprs.
            _redact_reprs(message)
            try:
                return celery_handler(message)
            except self.connection_errors:
                raise  # the broker is gone: Celery reconnects and the message comes back
            except Exception as exc:
                log.exception("message.celery_failed")
                return self._refuse(
                    message, f"the worker could not take this message: {exc!r}"[:500], None
                )

        return on_task_received

    def _check(self, message: Any, tasks: dict[str, Callable[..., Any]]) -> Any:
        from worker.settings import get_settings

        settings = get_settings()
        headers = message.headers if isinstance(message.headers, dict) else {}
        count = headers.get("x-delivery-count", 0)
        return check_message(
            headers,
            message.body,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            tasks=tasks,
            delivery_count=count if type(count) is int else 0,
            max_redeliveries=settings.max_redeliveries,
            max_bytes=settings.max_message_bytes,
        )

    def _run_plain(self, message: Any, envelope: dict[str, Any]) -> None:
        # A plain JSON envelope: run it as a task (validation happens there), on its
        # department's queue (the router's choice).
        self.app.send_task(TASK_NAME, args=[envelope])
        message.ack()

    def _refuse(
        self, message: Any, reason: str, field: str | None, task_id: str | None = None
    ) -> None:
        try:
            self._dead_letter(message, reason, field, task_id)
        except self.connection_errors:
            raise  # the broker is gone: the message comes back after the reconnect
        except Exception:
            # The refusal itself failed (a value it cannot keep, say): the broker
            # dead-letters the message as it came (the queue's dead-letter exchange),
            # rather than the worker dying of it on every start.
            log.exception("message.refusal_failed", field=field)
            with contextlib.suppress(MessageStateError):
                message.reject(requeue=False)

    def _dead_letter(
        self, message: Any, reason: str, field: str | None, task_id: str | None
    ) -> None:
        from worker import runtime
        from worker.deadletter import refuse

        refuse(
            self.app,
            raw_body(message),
            reason=reason,
            field=field or "<message>",
            audit=runtime.audit_log(),
            delivery_id=_delivery_id(message),
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or None,
            headers=message.headers if isinstance(message.headers, dict) else None,
            properties=message.properties,
            task_id=task_id,
        )
        with contextlib.suppress(MessageStateError):  # Celery may have acked it already
            message.ack()

    # Celery's own refusals, should one still be reached: the same dead letter.
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._refuse(message, f"cannot be decoded: {exc}", "body")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._refuse(message, "not a Celery task message and not a JSON envelope", "<message>")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = message.headers.get("task") if isinstance(message.headers, dict) else None
        self._refuse(
            message, f"unknown task {name!r}: only {TASK_NAME!r} runs here", "headers.task"
        )

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._refuse(message, f"invalid task message: {exc}", "<message>")


class _RawBodyMessage(pyamqp.Message):  # type: ignore[misc]
    """kombu's AMQP message, which also keeps the body as it came (``raw_body``): kombu
    replaces ``body`` by its decompression when the message names a ``compression``."""

    def __init__(self, msg: Any, channel: Any = None, **kwargs: Any) -> None:
        super().__init__(msg, channel=channel, **kwargs)
        self.raw_body = msg.body


def keep_bytes(channel: Any) -> None:
    """Have a py-amqp ``channel`` hand message bodies over as the bytes that came.

    py-amqp decodes a body by its declared ``content_encoding`` when it can, and
    decoding then encoding again is not the identity for every codec: a UTF-16 or UTF-32
    body loses, gains or flips its byte-order mark, ``utf-8-sig`` gains one. kombu
    decompresses a compressed one. A refused message must be dead-lettered as the bytes
    that came, with their SHA-256; Celery and kombu decode bytes themselves. Other
    transports have no such switch and are left as they are.
    """
    if isinstance(channel, pyamqp.Channel):
        channel.auto_decode = False
        channel.Message = _RawBodyMessage


def raw_body(message: Any) -> Any:
    """The message's body as the bytes that came.

    The worker's task channel keeps them (:func:`keep_bytes`); a body that comes as text
    from another channel or transport is encoded back by its declared encoding, which
    gives the bytes that came for UTF-8 and the single-byte codecs.
    """
    kept = getattr(message, "raw_body", None)
    if isinstance(kept, bytes | bytearray):
        return bytes(kept)
    body = message.body
    if isinstance(body, str):
        try:
            return body.encode(message.content_encoding or "utf-8")
        except (LookupError, UnicodeError):
            return body.encode("utf-8")
    return body


def _redact_reprs(message: Any) -> None:
    """Replace a checked message's ``argsrepr``/``kwargsrepr`` by ``worker.task_repr``'s."""
    try:
        body = message.decode()
    except Exception:  # checked already: a body that does not decode has no args to show
        body = None
    redact_headers(message.headers, body)


def _delivery_id(message: Any) -> str:
    # Not the message's own id: it may be anything, and it names an audit record.
    return str(uuid.uuid4())

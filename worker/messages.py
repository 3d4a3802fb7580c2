"""What a message on the task queue must be before Celery is given it.

Celery trusts its own message format: a message without an ``id`` header, a ``task``
header that is a list, a body that is not ``[args, kwargs, embed]`` or a ``timelimit``
of the wrong type stops the worker (``Unrecoverable error``) or leaves it holding the
message forever, and arguments that do not fit the task are acked and lost.
:func:`check_message` is the pure check the consumer (``worker.consumer``) runs first: it
returns a :class:`Refusal` (what is wrong, in which part) for anything Celery's task
protocol 2 or umiq's tasks cannot take, a :class:`PlainEnvelope` for a bare JSON envelope
from a producer without Celery, and ``None`` for a message Celery may run.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.envelope import parse_envelope, safe_task_id, text_fault
from worker.errors import EnvelopeError

#: The content types the worker decodes (the Celery app accepts JSON only).
JSON_TYPES = ("application/json",)
#: Parts of a task's ``embed`` that would make the worker run or signal other tasks.
_LINKS = ("callbacks", "errbacks", "chain", "chord")
_OPTIONAL_TEXT_HEADERS = (
    "root_id",
    "parent_id",
    "group",
    "shadow",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "lang",
)
_COUNT_HEADERS = ("retries", "replaced_task_nesting")
MAX_ID = 255


@dataclass(frozen=True)
class Refusal:
    """Why a message cannot run: ``field`` names the part (``headers.id``, ``args``…)."""

    field: str
    reason: str
    task_id: str | None = None
    """The task id the message claims (its envelope's), when it has a well-formed one."""
    what: str = "invalid task message"

    def __str__(self) -> str:
        return f"{self.what}: {self.field}: {self.reason}"


@dataclass(frozen=True)
class PlainEnvelope:
    """A bare JSON object without Celery's headers: an envelope to run as ``umiq.run_task``."""

    envelope: dict[str, Any]


def decode_json(body: Any, content_type: str | None, content_encoding: str | None) -> Any:
    """The JSON value of a raw body; ValueError saying why it is not one."""
    if content_type not in JSON_TYPES:
        raise ValueError(
            f"refusing content of type {content_type!r}: only application/json is accepted"
        )
    # Checked for text bodies too: py-amqp decodes a body by its declared encoding when it
    # can, so a latin-1 message would otherwise pass when decodable and fail when not.
    encoding = (content_encoding or "utf-8").lower()
    if encoding not in ("utf-8", "utf8", "binary"):
        raise ValueError(f"refusing content encoding {content_encoding!r}: only utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not isinstance(body, str):
        raise ValueError(f"a body of type {type(body).__name__} is not JSON text")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at char {exc.pos}") from exc


def _when(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 text, not {type(value).__name__}")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name} {value[:64]!r} is not an ISO 8601 time") from exc
    # Celery's app runs in UTC (enable_utc): a time without an offset is UTC.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _check_headers(headers: Mapping[str, Any], now: datetime) -> Refusal | None:
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id.strip():
        return Refusal("headers.id", f"must be a non-empty text, not {_kind(task_id)}")
    if len(task_id) > MAX_ID:
        return Refusal("headers.id", f"longer than {MAX_ID} characters")
    for name in ("id", *_OPTIONAL_TEXT_HEADERS):
        value = headers.get(name)
        if value is not None and not isinstance(value, str):
            return Refusal(f"headers.{name}", f"must be a text or null, not {_kind(value)}")
        # Celery stores these with the result (Postgres): a text it cannot hold would
        # fail there, after the run, with the message left unacked.
        fault = text_fault(value)
        if fault is not None:
            return Refusal(f"headers.{name}", fault)
    for name in _COUNT_HEADERS:
        count = headers.get(name)
        if count is not None and (type(count) is not int or count < 0):
            return Refusal(f"headers.{name}", f"must be a whole number ≥ 0, not {_kind(count)}")
    limit = headers.get("timelimit")
    if limit is not None:
        if not isinstance(limit, list | tuple) or len(limit) != 2:
            return Refusal("headers.timelimit", f"must be [hard, soft], not {_kind(limit)}")
        for part in limit:
            if part is not None and (
                isinstance(part, bool) or not isinstance(part, int | float) or part < 0
            ):
                return Refusal(
                    "headers.timelimit", f"limits must be seconds ≥ 0 or null, not {_kind(part)}"
                )
    ignore = headers.get("ignore_result")
    if ignore is not None and not isinstance(ignore, bool):
        return Refusal("headers.ignore_result", f"must be true, false or null, not {_kind(ignore)}")
    for name in ("stamped_headers", "stamps"):
        value = headers.get(name)
        if value is not None and not isinstance(value, list | dict):
            return Refusal(
                f"headers.{name}", f"must be a list, an object or null, not {_kind(value)}"
            )
    for name in ("eta", "expires"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            when = _when(value, name)
        except ValueError as exc:
            return Refusal(f"headers.{name}", str(exc))
        if name == "expires" and when <= now:
            return Refusal("headers.expires", f"expired at {when.isoformat()}")
    return None


def _kind(value: Any) -> str:
    """A value's JSON kind for a reason, without the value (it may be personal data)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "an empty text" if not value.strip() else "a text"
    if isinstance(value, list | tuple):
        return f"a {len(value)}-item list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_arguments(
    name: str, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> Refusal | None:
    signature = inspect.signature(fn)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        params = ", ".join(signature.parameters)
        return Refusal("args", f"do not fit {name}({params}): {exc}")
    for param, value in bound.arguments.items():
        wanted = signature.parameters[param].annotation
        if wanted in ("str", str) and not isinstance(value, str):
            return Refusal(f"args.{param}", f"must be a text, not {_kind(value)}")
    return None


def check_message(
    headers: Mapping[str, Any] | None,
    body: Any,
    *,
    content_type: str | None,
    content_encoding: str | None,
    tasks: Mapping[str, Callable[..., Any]],
    now: datetime | None = None,
    delivery_count: int = 0,
    max_redeliveries: int | None = None,
    max_bytes: int | None = None,
) -> Refusal | PlainEnvelope | None:
    """Check one raw message from the task queue against Celery's protocol 2 and umiq.

    ``tasks`` maps each task name served here to its function (without ``self``), whose
    signature the arguments must fit. ``delivery_count`` is how often the broker has
    redelivered the message (``x-delivery-count``); above ``max_redeliveries`` it is refused.
    A body longer than ``max_bytes`` is refused before it is decoded.
    """
    now = now or datetime.now(UTC)
    headers = dict(headers or {})
    size = len(body) if isinstance(body, bytes | bytearray | memoryview | str) else 0
    if max_bytes is not None and size > max_bytes:
        return Refusal(
            "body",
            f"{size:,} bytes, over the limit of {max_bytes:,} (UMIQ_MAX_MESSAGE_BYTES): "
            "not decoded; send large documents by reference, not in the message",
            what="message too large",
        )
    try:
        payload = decode_json(body, content_type, content_encoding)
    except ValueError as exc:
        return Refusal("body", str(exc))
    claimed = _claimed_task_id(payload)
    if "task" not in headers:
        if isinstance(payload, dict) and "task" not in payload:
            # Checked here, not by the task it becomes: refused now, the dead letter is
            # this message (its bytes and headers), not a re-sent copy of its envelope.
            try:
                parse_envelope(payload)
            except EnvelopeError as exc:
                return Refusal(exc.field, exc.reason, claimed, "invalid envelope")
            return PlainEnvelope(payload)
        if isinstance(payload, dict):
            return Refusal(
                "headers.task",
                "missing; a 'task' field in the body is Celery's protocol 1, which this "
                "worker does not accept (send with Celery ≥ 4 or a bare JSON envelope)",
                claimed,
            )
        return Refusal(
            "headers.task",
            f"missing, and the body is {_kind(payload)}, not a JSON envelope",
            claimed,
        )
    name = headers["task"]
    if not isinstance(name, str):
        return Refusal("headers.task", f"must be a task name, not {_kind(name)}", claimed)
    if name not in tasks:
        served = ", ".join(sorted(tasks))
        return Refusal(
            "headers.task", f"unknown task {name[:100]!r}: only {served} run here", claimed
        )
    if max_redeliveries is not None and delivery_count > max_redeliveries:
        return Refusal(
            "delivery",
            f"redelivered {delivery_count} times without finishing (at most "
            f"{max_redeliveries}): the worker crashed or lost its connection on each run",
            claimed,
        )
    refusal = _check_headers(headers, now)
    if refusal is not None:
        return Refusal(refusal.field, refusal.reason, claimed)
    if not isinstance(payload, list) or len(payload) != 3:
        return Refusal("body", f"must be [args, kwargs, embed], not {_kind(payload)}", claimed)
    args, kwargs, embed = payload
    if not isinstance(args, list):
        return Refusal("args", f"must be a list, not {_kind(args)}", claimed)
    if not isinstance(kwargs, dict):
        return Refusal("kwargs", f"must be an object, not {_kind(kwargs)}", claimed)
    if embed is not None and not isinstance(embed, dict):
        return Refusal("embed", f"must be an object or null, not {_kind(embed)}", claimed)
    for link in _LINKS:
        if (embed or {}).get(link):
            return Refusal(
                f"embed.{link}",
                "umiq tasks take no callbacks, errbacks, chains or chords; read the result",
                claimed,
            )
    refusal = _check_arguments(name, tasks[name], args, kwargs)
    if refusal is not None:
        return Refusal(refusal.field, refusal.reason, claimed)
    if name == "umiq.run_task":
        envelope = bound_envelope(tasks[name], args, kwargs)
        try:
            parse_envelope(envelope)
        except EnvelopeError as exc:
            return Refusal(exc.field, exc.reason, claimed, "invalid envelope")
    return None


def bound_envelope(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The ``envelope`` argument of a ``run_task`` call whose arguments fit ``fn``."""
    return inspect.signature(fn).bind(*args, **kwargs).arguments.get("envelope")


def _claimed_task_id(payload: Any) -> str | None:
    """The envelope task id a payload claims: a bare envelope's, or ``args[0]``'s."""
    if isinstance(payload, dict):
        found = safe_task_id(payload, "")
        return found or None
    if isinstance(payload, list) and payload and isinstance(payload[0], list) and payload[0]:
        first = payload[0][0]
        found = safe_task_id(first, "") if isinstance(first, dict) else ""
        if not found and isinstance(first, str):  # resume_task(task_id, key)
            found = safe_task_id({"task_id": first}, "")
        return found or None
    return None

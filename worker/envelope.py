"""The task envelope: the one message format a producer puts on the queue."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.errors import EnvelopeError

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
_DEPARTMENT = r"^[a-z][a-z0-9_\-]{0,63}$"


class Envelope(BaseModel):
    """A back-office task: who asks, for which department, what to do.

    ``task_id`` is the producer's idempotency key for the whole task: a task id seen
    twice is the same task (redelivery), never a second task.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    task_id: str = Field(pattern=_ID)
    department: str = Field(pattern=_DEPARTMENT)
    query: str = Field(min_length=1, max_length=4000)
    requested_by: str = Field(min_length=1, max_length=200)
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("query", "requested_by", "context", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # Postgres text holds neither NUL nor a lone surrogate (a JSON "\ud800" decodes to
        # one): refused here as bad input, never retried as an outage of the audit database.
        fault = text_fault(value)
        if fault is not None:
            raise ValueError(fault)
        return value


NUL_REASON = "contains a NUL character (\\x00), which a task's text may not hold"
SURROGATE_REASON = (
    "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text a task may hold"
)


_SURROGATE = re.compile("[\ud800-\udfff]")


def text_fault(value: Any) -> str | None:
    """Why ``value`` (a text, or a JSON value holding texts) cannot be stored as text:
    :data:`NUL_REASON`, :data:`SURROGATE_REASON`, or None when it can."""
    if isinstance(value, str):
        if "\x00" in value:
            return NUL_REASON
        if _SURROGATE.search(value):
            return SURROGATE_REASON
        return None
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    for item in items:
        fault = text_fault(item)
        if fault is not None:
            return fault
    return None


def parse_envelope(raw: Any) -> Envelope:
    """Validate ``raw`` (a dict, or JSON text/bytes of one) into an Envelope.

    Raises EnvelopeError naming the first bad field and why, e.g.
    ``invalid envelope: department: missing``.
    """
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError("<message>", f"not UTF-8 text ({exc.reason})") from exc
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EnvelopeError("<message>", f"not JSON: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(raw, dict):
        raise EnvelopeError("<message>", f"expected a JSON object, got {type(raw).__name__}")
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(_field_name(p) for p in first["loc"]) or "<message>"
        kind = first["type"]
        if kind == "missing":
            reason = "missing"
        elif kind == "extra_forbidden":
            reason = "unknown field (allowed: task_id, department, query, requested_by, context)"
        elif kind == "string_pattern_mismatch":
            reason = f"does not match {first['ctx']['pattern']}"
        elif kind == "value_error":
            reason = str(first["ctx"]["error"])
        else:
            reason = first["msg"]
        raise EnvelopeError(field, reason) from exc


def _field_name(part: Any) -> str:
    """A part of a refused field's path as the refusal may name it: an envelope field or
    an index as it is; any other key (the sender's text, which may be personal data:
    ``{"Wouter Verbeek": …}``) only by a short digest, so the dead letter's header, the
    audit step and the log can tell keys apart without holding them."""
    if isinstance(part, int) or part in Envelope.model_fields:
        return str(part)
    digest = hashlib.sha256(str(part).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"<unknown key {digest}>"


_SAFE = re.compile(_ID)


def safe_task_id(raw: Any, fallback: str) -> str:
    """The task id of a possibly malformed message, if it has a well-formed one."""
    if isinstance(raw, dict):
        candidate = raw.get("task_id")
        if isinstance(candidate, str) and _SAFE.match(candidate):
            return candidate
    return fallback

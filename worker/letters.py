"""Sealed dead letters: a refused message kept for replay without its personal data in
the broker.

A refused message must be kept whole (``umiq dlq replay`` sends it back as it came),
but its body and headers may hold a request's personal data, and the dead-letter queue
is read by whoever operates the broker. So the worker stores a *sealed letter* instead:
the original body, content type, encoding, headers and refusal reason sealed with the
audit key ring (``policies.seal``: AES-256-GCM under a fresh data key, wrapped by the
ring's primary key, bound to the letter's ``ref``), as JSON of content type
:data:`LETTER_TYPE`::

    {"umiq_letter": 1, "ref": "dead-letter/<sha256>", "kid": KID, "wrapped": B64,
     "sealed": {"$sealed": {...}}}

Only the holder of the key ring opens it (:func:`open_letter`); :func:`redacted` is the
view ``umiq dlq show`` prints unless asked to reveal: every value the personal-data
detector finds replaced by its kind (``<IBAN>``).
"""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from policies import Detector, KeyRing, RedactingProcessor, SealedKey, SealError, open_sealed, seal

LETTER_TYPE = "application/vnd.umiq.sealed-letter+json"
"""The content type of a sealed letter in the dead-letter queue."""
VERSION = 1


@dataclass(frozen=True)
class Original:
    """A refused message as it came: what a replay publishes again."""

    body: bytes
    content_type: str
    content_encoding: str
    headers: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


_TAG = "$amqp"


def _jsonable(value: Any) -> Any:
    """An AMQP header value as JSON that :func:`_from_jsonable` turns back into it.

    A field table holds bytes (not always UTF-8), times and decimals too; they are
    tagged (``{"$amqp": "bytes", "value": B64}``), as is a table that has the tag's key
    itself, so that a replay sends every header back with its type and value.
    """
    if isinstance(value, Mapping):
        table = {str(k): _jsonable(v) for k, v in value.items()}
        return {_TAG: "table", "value": table} if _TAG in table else table
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {_TAG: "bytes", "value": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {_TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "value": str(value)}
    return str(value)


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag == "bytes":
        return base64.b64decode(value["value"])
    if tag == "datetime":
        return datetime.fromisoformat(value["value"])
    if tag == "decimal":
        return Decimal(value["value"])
    if tag == "table":
        value = value["value"]
    return {k: _from_jsonable(v) for k, v in value.items()}


def seal_letter(keyring: KeyRing, original: Original, ref: str) -> bytes:
    """The body of the sealed letter that keeps ``original`` as record ``ref``."""
    value = {
        "body": base64.b64encode(original.body).decode("ascii"),
        "content_type": original.content_type,
        "content_encoding": original.content_encoding,
        "headers": _jsonable(original.headers),
        "reason": original.reason,
    }
    # ASCII: a header may hold a lone surrogate (py-amqp reads them), escaped losslessly.
    plaintext = json.dumps(value, sort_keys=True).encode("ascii")
    envelope, key = seal(keyring, plaintext, ref)
    letter = {"umiq_letter": VERSION, "ref": ref, "kid": key.kid, "wrapped": key.wrapped,
              "sealed": envelope}  # fmt: skip
    return json.dumps(letter, sort_keys=True).encode("ascii")


def is_letter(content_type: str | None) -> bool:
    """Whether a dead letter of ``content_type`` is sealed."""
    return content_type == LETTER_TYPE


def letter_kid(body: bytes) -> str | None:
    """The key id a sealed letter's data key is wrapped under (None if it is not one)."""
    try:
        kid = json.loads(body).get("kid")
    except (ValueError, AttributeError):
        return None
    return kid if isinstance(kid, str) else None


def open_letter(keyring: KeyRing, body: bytes) -> Original:
    """The message sealed in letter ``body``; SealError says why it cannot be opened."""
    try:
        letter = json.loads(body)
    except ValueError:
        raise SealError("not a sealed letter: its body is not JSON") from None
    if not isinstance(letter, dict) or letter.get("umiq_letter") != VERSION:
        raise SealError(f"not a sealed letter of version {VERSION}")
    key = SealedKey(str(letter.get("ref")), str(letter.get("kid")), str(letter.get("wrapped")))
    value = json.loads(open_sealed(keyring, letter.get("sealed"), key))
    return Original(
        body=base64.b64decode(value["body"]),
        content_type=value["content_type"],
        content_encoding=value["content_encoding"],
        headers=_from_jsonable(dict(value.get("headers") or {})),
        reason=str(value.get("reason") or ""),
    )


def body_text(original: Original) -> str:
    """The body as text: decoded by its declared encoding when that is a text codec the
    body decodes in (UTF-16 with its byte-order mark, latin-1…), else as UTF-8 with each
    byte that is not shown as ``\\xNN``."""
    try:
        if codecs.lookup(original.content_encoding)._is_text_encoding:
            return original.body.decode(original.content_encoding)
    except (LookupError, UnicodeError, TypeError):
        pass
    return original.body.decode("utf-8", errors="backslashreplace")


def redacted(detector: Detector, original: Original) -> Original:
    """``original`` with the personal data the detector finds replaced by its kind, in
    the body (JSON walked value by value, other text as text), headers and reason. The
    body is read by its declared encoding (:func:`body_text`) and given as UTF-8 text."""
    mask = RedactingProcessor(detector)
    text = body_text(original)
    try:
        shown = json.dumps(mask.redact(json.loads(text)), ensure_ascii=False)
    except ValueError:
        shown = mask.redact_text(text)
    return Original(
        body=shown.encode("utf-8", errors="backslashreplace"),
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        headers=mask.redact(original.headers),
        reason=mask.redact_text(original.reason),
    )

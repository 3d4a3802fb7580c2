"""Chain hashing, pure: canonical JSON and the hash that links each row to the one before.

``hash = sha256(prev_hash ‖ canonical_json({"table": table, "seq": seq, <content columns>}))``
where ``prev_hash`` is the lowercase hex hash of the previous row of the chain (``GENESIS``
for the first). Nothing here touches a database, so a chain can be re-verified from an
export with these functions alone.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

GENESIS = "0" * 64
"""The ``prev_hash`` of the first row of a chain."""

_HEX = frozenset("0123456789abcdef")


def iso_utc(value: datetime) -> str:
    """``value`` as ISO-8601 in UTC with microseconds, e.g. ``2024-05-01T12:00:00.000000Z``.

    Naive datetimes are refused: a time without a zone cannot be hashed stably.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone; use an aware one")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_utc(text: str) -> datetime:
    """The aware UTC datetime that ``iso_utc`` wrote as ``text``."""
    return datetime.fromisoformat(text).astimezone(UTC)


def _plain(value: Any) -> Any:
    """``value`` as JSON-native data; refuses what has no stable JSON form."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no JSON form")
        return value  # repr() of a float is the shortest round-trip form: stable
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            out[key] = _plain(item)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(obj: Any) -> bytes:
    """``obj`` as canonical JSON: sorted keys, no whitespace, UTF-8, UTC ISO-8601 times.

    Floats are written in their shortest round-trip form, NaN and infinities are refused,
    tuples become lists; the same data always gives the same bytes.
    """
    return json.dumps(
        _plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def normalize_json(obj: Any) -> Any:
    """``obj`` as it reads back after a canonical JSON round trip (tuples → lists, times → text)."""
    return json.loads(canonical_json(obj))


def digest(text: str) -> str:
    """The SHA-256 hex digest of ``text`` (UTF-8); the audit log stores prompts only this way."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_digest(value: str) -> bool:
    """Whether ``value`` looks like a SHA-256 hex digest (64 lowercase hex characters)."""
    return len(value) == 64 and set(value) <= _HEX


def row_hash(prev_hash: str, table: str, payload: Mapping[str, Any]) -> str:
    """The hash of a row of ``table`` whose content columns (``seq`` included) are ``payload``.

    ``payload`` holds every column except ``prev_hash`` and ``hash``.
    """
    if not is_digest(prev_hash):
        raise ValueError(
            f"prev_hash must be a 64-character lowercase hex digest, not {prev_hash!r}"
        )
    if "seq" not in payload:
        raise ValueError("payload must contain the row's seq")
    if "table" in payload or "prev_hash" in payload or "hash" in payload:
        raise ValueError("payload must not contain 'table', 'prev_hash' or 'hash'")
    body = canonical_json({"table": table, **payload})
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()

"""The pure chain functions: canonical JSON and row hashes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.audit import GENESIS, canonical_json, digest, row_hash


def test_keys_are_sorted_and_whitespace_dropped() -> None:
    """Canonical JSON sorts keys at every depth and writes no whitespace."""
    assert (
        canonical_json({"b": 1, "a": {"d": [1, 2], "c": None}})
        == b'{"a":{"c":null,"d":[1,2]},"b":1}'
    )


def test_same_data_same_bytes_whatever_the_insertion_order() -> None:
    """Two dicts with the same items give the same bytes."""
    assert canonical_json({"x": 1, "y": [True, "z"]}) == canonical_json({"y": [True, "z"], "x": 1})


def test_text_is_utf8_not_escaped() -> None:
    """Non-ASCII text is written as UTF-8, not as \\u escapes."""
    assert canonical_json({"name": "Zoë €"}) == '{"name":"Zoë €"}'.encode()


def test_floats_are_written_in_their_shortest_round_trip_form() -> None:
    """Floats are stable: 0.1 stays 0.1 and 1e-07 keeps its exact value."""
    assert canonical_json([0.1, 1.0, 1e-07, 12345.678]) == b"[0.1,1.0,1e-07,12345.678]"


def test_non_finite_floats_are_refused() -> None:
    """NaN has no JSON form and is refused."""
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_datetimes_are_written_in_utc() -> None:
    """An aware datetime in any zone is written as ISO-8601 UTC with microseconds."""
    cet = timezone(timedelta(hours=1))
    when = datetime(2024, 5, 1, 13, 0, 0, tzinfo=cet)
    assert canonical_json({"at": when}) == b'{"at":"2024-05-01T12:00:00.000000Z"}'
    assert canonical_json(when) == canonical_json(when.astimezone(UTC))


def test_naive_datetimes_are_refused() -> None:
    """A datetime without a zone cannot be hashed stably and is refused."""
    with pytest.raises(ValueError, match="naive"):
        canonical_json(datetime(2024, 5, 1))


def test_tuples_are_lists() -> None:
    """A tuple is written as the list it reads back as."""
    assert canonical_json((1, "a")) == canonical_json([1, "a"])


def test_row_hash_is_sha256_of_prev_hash_and_canonical_row() -> None:
    """The row hash is sha256(prev_hash ‖ canonical JSON of table, seq and content)."""
    payload = {"seq": 1, "task_id": "t-1", "output": "ok"}
    expected = hashlib.sha256(
        GENESIS.encode() + b'{"output":"ok","seq":1,"table":"step","task_id":"t-1"}'
    ).hexdigest()
    assert row_hash(GENESIS, "step", payload) == expected


def test_row_hash_depends_on_the_table() -> None:
    """The same content in two tables hashes differently."""
    payload = {"seq": 1, "task_id": "t-1"}
    assert row_hash(GENESIS, "step", payload) != row_hash(GENESIS, "task", payload)


def test_row_hash_depends_on_the_previous_hash() -> None:
    """The same row after a different predecessor hashes differently."""
    payload = {"seq": 2, "task_id": "t-1"}
    assert row_hash(GENESIS, "step", payload) != row_hash(digest("other"), "step", payload)


def test_row_hash_requires_the_seq() -> None:
    """A payload without its seq is refused."""
    with pytest.raises(ValueError, match="seq"):
        row_hash(GENESIS, "step", {"task_id": "t-1"})

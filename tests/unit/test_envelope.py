"""The task envelope and the reasons it gives for refusing a message."""

from __future__ import annotations

import pytest

from worker.envelope import Envelope, parse_envelope
from worker.errors import EnvelopeError

GOOD = {"task_id": "t-1", "department": "finance", "query": "Pay INV-1001", "requested_by": "alice"}


def test_valid_envelope_parses() -> None:
    """A complete envelope becomes an Envelope with an empty context."""
    env = parse_envelope(GOOD)
    assert env == Envelope(**GOOD)
    assert env.context == {}


def test_json_text_and_bytes_parse() -> None:
    """JSON text and UTF-8 bytes are accepted as well as dicts."""
    import json

    assert parse_envelope(json.dumps(GOOD)).task_id == "t-1"
    assert parse_envelope(json.dumps(GOOD).encode()).department == "finance"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"department": None}, "department", "missing"),
        ({"query": ""}, "query", "at least 1"),
        ({"task_id": "has space"}, "task_id", "does not match"),
        ({"department": "Finance!"}, "department", "does not match"),
        ({"colour": "red"}, "<unknown key d6838c35>", "unknown field"),
        ({"context": "not a dict"}, "context", "dictionary"),
    ],
)
def test_bad_field_is_named(change: dict, field: str, reason: str) -> None:
    """A bad envelope is refused with an error naming the field and the reason."""
    raw = {**GOOD, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(raw)
    assert info.value.field == field
    assert reason in info.value.reason
    assert field in str(info.value)


def test_an_unknown_key_is_named_by_a_digest_never_by_its_text() -> None:
    """A sender's unknown key may be personal data ({"Wouter Verbeek": …}): the refusal
    (dead-letter header, audit step, log) names it by a digest, and two keys differ."""
    refused = []
    for key in ("Wouter Verbeek", "wouter.verbeek@example.com"):
        with pytest.raises(EnvelopeError) as info:
            parse_envelope({**GOOD, key: "x"})
        assert "Wouter" not in str(info.value) and "wouter" not in str(info.value)
        assert info.value.field.startswith("<unknown key ")
        refused.append(info.value.field)
    assert refused[0] != refused[1]


@pytest.mark.parametrize("raw", [b"\xff\xfe", "{not json", "[1, 2]", 42])
def test_not_an_object_is_refused(raw: object) -> None:
    """Non-UTF-8 bytes, broken JSON and non-objects are refused as a whole message."""
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(raw)
    assert info.value.field == "<message>"

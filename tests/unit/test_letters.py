"""Sealed dead letters: the refused message kept whole under the key ring, shown masked."""

from __future__ import annotations

import json

import pytest

from policies import Detector, KeyRing, SealError, new_key
from worker.letters import (
    Original,
    body_text,
    is_letter,
    letter_kid,
    open_letter,
    redacted,
    seal_letter,
)

BODY = json.dumps(
    [[{"task_id": "t-1", "query": "Pay NL91ABNA0417164300 for jan.smit@example.org"}], {}, {}]
).encode()
ORIGINAL = Original(
    body=BODY,
    content_type="application/json",
    content_encoding="utf-8",
    headers={"task": "umiq.run_task", "argsrepr": "[{'query': 'BSN 111222333'}]"},
    reason="invalid envelope: query: 'jan.smit@example.org' is not allowed",
)


def ring(kid: str = "k1") -> KeyRing:
    return KeyRing({kid: new_key()}, kid)


def test_a_letter_opens_to_the_message_byte_for_byte() -> None:
    """Opening a letter with its key ring gives back body, type, encoding, headers, reason."""
    keys = ring()
    assert open_letter(keys, seal_letter(keys, ORIGINAL, "dead-letter/abc")) == ORIGINAL


def test_a_letter_holds_no_raw_value() -> None:
    """The letter the broker keeps has none of the message's text in it."""
    letter = seal_letter(ring(), ORIGINAL, "dead-letter/abc")
    for raw in ("NL91ABNA0417164300", "jan.smit", "111222333", "umiq.run_task"):
        assert raw.encode() not in letter
    assert letter_kid(letter) == "k1"


def test_another_key_ring_cannot_open_a_letter() -> None:
    """A key ring without the letter's key is refused with the key id named."""
    letter = seal_letter(ring("k1"), ORIGINAL, "dead-letter/abc")
    with pytest.raises(SealError, match="k1"):
        open_letter(ring("k2"), letter)


def test_an_altered_letter_does_not_open() -> None:
    """A letter moved to another ref (or altered) fails its AES-GCM check."""
    keys = ring()
    letter = json.loads(seal_letter(keys, ORIGINAL, "dead-letter/abc"))
    letter["ref"] = "dead-letter/other"
    with pytest.raises(SealError):
        open_letter(keys, json.dumps(letter).encode())


def test_the_masked_view_replaces_personal_data_by_its_kind() -> None:
    """The view shown without --reveal masks the body, headers and reason by kind."""
    shown = redacted(Detector(), ORIGINAL)
    text = shown.body.decode() + json.dumps(shown.headers) + shown.reason
    assert "<IBAN>" in text and "<EMAIL>" in text and "<NATIONAL_ID>" in text
    for raw in ("NL91ABNA0417164300", "jan.smit@example.org", "111222333"):
        assert raw not in text
    assert json.loads(shown.body)[0][0]["task_id"] == "t-1"


def test_letters_are_told_by_their_content_type() -> None:
    """Only the sealed-letter content type is a sealed letter."""
    assert is_letter("application/vnd.umiq.sealed-letter+json")
    assert not is_letter("application/json")


def test_header_values_of_every_amqp_type_come_back_as_they_were() -> None:
    """Bytes (not UTF-8), lone surrogates, times, decimals and tables keep type and value."""
    from datetime import datetime
    from decimal import Decimal

    headers = {
        "x-raw": b"\xff\xfe\x00not utf-8",
        "x-surrogate": "a\ud800b",
        "x-when": datetime(2025, 3, 18, 9, 30, 5),
        "x-amount": Decimal("1250.50"),
        "x-table": {"$amqp": "bytes", "nested": [b"\x80", Decimal("1"), None, True, 1.5]},
        "x-list": [b"\x00", "caf\u00e9", 7],
    }
    original = Original(b"null", "application/json", "utf-8", headers, "body: not a list")
    keys = ring()
    opened = open_letter(keys, seal_letter(keys, original, "dead-letter/abc"))
    assert opened == original
    assert type(opened.headers["x-raw"]) is bytes
    assert type(opened.headers["x-amount"]) is Decimal


def test_a_utf16_body_is_shown_and_masked_as_its_text() -> None:
    """A body declared UTF-16 reads as its text (the byte-order mark taken by the codec),
    so the masked view finds and masks its personal data; undecodable bytes show as \\xNN."""
    text = BODY.decode()
    wide = Original(b"\xff\xfe" + text.encode("utf-16-le"), "application/json", "utf-16")
    assert body_text(wide) == text
    shown = redacted(Detector(), wide)
    assert "<IBAN>" in shown.body.decode() and "NL91ABNA0417164300" not in shown.body.decode()
    assert shown.content_encoding == "utf-16"  # what the message declared
    odd = Original(b"ok \xff", "application/octet-stream", "binary")
    assert body_text(odd) == "ok \\xff"
    assert body_text(Original(b"\xff\xfeA", "application/json", "utf-16")) == "\\xff\\xfeA"

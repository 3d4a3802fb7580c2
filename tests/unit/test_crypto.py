"""policies._crypto: AES-GCM envelope sealing, key ring, re-wrapping; pure, no database."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from typing import Any

import pytest

from policies._crypto import (
    ALG,
    SEALED,
    KeyRing,
    SealedKey,
    SealError,
    is_sealed,
    new_key,
    open_sealed,
    rewrap,
    seal,
)

VALUE = b'{"iban":"DE89370400440532013000"}'
REF = "tool_call/t-1:2/request"
OTHER = "tool_call/t-2:2/request"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({"k1": new_key()}, "k1")


def _flip(text: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode("ascii")


def test_round_trip(ring: KeyRing) -> None:
    """A sealed value opens to its exact bytes with the key ring and its sealed key."""
    envelope, key = seal(ring, VALUE, REF)
    assert open_sealed(ring, envelope, key) == VALUE


def test_envelope_shape(ring: KeyRing) -> None:
    """The envelope holds version, ref, algorithm, nonce and ciphertext, never the value."""
    envelope, key = seal(ring, VALUE, REF)
    body = envelope[SEALED]
    assert set(body) == {"v", "ref", "alg", "nonce", "ct"}
    assert (body["v"], body["ref"], body["alg"]) == (1, REF, ALG)
    assert len(base64.b64decode(body["nonce"])) == 12
    assert b"DE89" not in json.dumps(envelope).encode() + key.wrapped.encode()
    assert (key.ref, key.kid) == (REF, "k1")


def test_each_seal_uses_a_fresh_data_key_and_nonce(ring: KeyRing) -> None:
    """Sealing the same value twice gives different ciphertexts and wrapped keys."""
    (first, k1), (second, k2) = seal(ring, VALUE, REF), seal(ring, VALUE, REF)
    assert first[SEALED]["ct"] != second[SEALED]["ct"]
    assert first[SEALED]["nonce"] != second[SEALED]["nonce"]
    assert k1.wrapped != k2.wrapped


def test_tampered_ciphertext_is_refused(ring: KeyRing) -> None:
    """Flipping one bit of the ciphertext fails the AES-GCM tag check, with a clear error."""
    envelope, key = seal(ring, VALUE, REF)
    envelope[SEALED]["ct"] = _flip(envelope[SEALED]["ct"], 3)
    with pytest.raises(
        SealError,
        match=rf"^cannot open {REF}: the ciphertext was altered or belongs to another record "
        r"\(AES-GCM tag mismatch\)$",
    ):
        open_sealed(ring, envelope, key)


def test_tampered_nonce_is_refused(ring: KeyRing) -> None:
    """A changed nonce fails the tag check like a changed ciphertext."""
    envelope, key = seal(ring, VALUE, REF)
    envelope[SEALED]["nonce"] = _flip(envelope[SEALED]["nonce"])
    with pytest.raises(SealError, match="AES-GCM tag mismatch"):
        open_sealed(ring, envelope, key)


def test_envelope_moved_to_another_record_is_refused(ring: KeyRing) -> None:
    """An envelope opened as another record (that record's sealed key) does not open."""
    envelope, _ = seal(ring, VALUE, REF)
    _, other_key = seal(ring, b'"x"', OTHER)
    with pytest.raises(
        SealError,
        match=rf"^cannot open {OTHER}: the ciphertext was altered or belongs to another record",
    ):
        open_sealed(ring, envelope, other_key)


def test_moved_envelope_with_its_ref_rewritten_is_refused(ring: KeyRing) -> None:
    """Rewriting the moved envelope's ref to the new place still fails the tag check."""
    envelope, _ = seal(ring, VALUE, REF)
    _, other_key = seal(ring, b'"x"', OTHER)
    envelope[SEALED]["ref"] = OTHER
    with pytest.raises(
        SealError,
        match=rf"^cannot open {OTHER}: the ciphertext was altered or belongs to another record "
        r"\(AES-GCM tag mismatch\)$",
    ):
        open_sealed(ring, envelope, other_key)


def test_wrapped_key_moved_to_another_record_is_refused(ring: KeyRing) -> None:
    """A wrapped data key moved to another record's row does not unwrap there."""
    _, key = seal(ring, VALUE, REF)
    other_envelope, _ = seal(ring, b'"x"', OTHER)
    moved = SealedKey(OTHER, key.kid, key.wrapped)
    with pytest.raises(
        SealError,
        match=rf"^cannot open {OTHER}: its wrapped data key was altered or belongs to another "
        r"record \(AES-GCM tag mismatch under key k1\)$",
    ):
        open_sealed(ring, other_envelope, moved)


def test_tampered_wrapped_key_is_refused(ring: KeyRing) -> None:
    """A wrapped data key with one bit flipped does not unwrap."""
    envelope, key = seal(ring, VALUE, REF)
    bad = SealedKey(key.ref, key.kid, _flip(key.wrapped, 20))
    with pytest.raises(SealError, match="its wrapped data key was altered"):
        open_sealed(ring, envelope, bad)


def test_wrapped_key_relabelled_with_another_kid_is_refused() -> None:
    """A wrapped key claiming another key id of the ring fails (the kid is bound too)."""
    ring = KeyRing({"k1": new_key(), "k2": new_key()}, "k1")
    envelope, key = seal(ring, VALUE, REF)
    with pytest.raises(SealError, match="under key k2"):
        open_sealed(ring, envelope, SealedKey(key.ref, "k2", key.wrapped))


def test_unknown_key_id_is_named(ring: KeyRing) -> None:
    """A record sealed under a key the ring lacks names the record and the key."""
    envelope, key = seal(ring, VALUE, REF)
    other = KeyRing({"k9": new_key()}, "k9")
    with pytest.raises(
        SealError,
        match=rf"^record {REF} was sealed under key k1, which is not in the key ring",
    ):
        open_sealed(other, envelope, key)


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ("text", "not a sealed envelope"),
        ({"ct": "x"}, "not a sealed envelope"),
        ({SEALED: {"v": 1, "ref": REF}}, "must hold exactly alg, ct, nonce, ref, v"),
        ({SEALED: "abc"}, "not a sealed envelope"),
        ({SEALED: {"v": 2, "ref": REF, "alg": ALG, "nonce": "", "ct": ""}}, "version 2"),
        ({SEALED: {"v": 1, "ref": REF, "alg": "ROT13", "nonce": "", "ct": ""}}, "ROT13"),
        ({SEALED: {"v": 1, "ref": REF, "alg": ALG, "nonce": "***", "ct": ""}}, "not valid base64"),
    ],
)
def test_wrong_envelope_shape_is_named(ring: KeyRing, envelope: Any, message: str) -> None:
    """Something that is not a version-1 AES-256-GCM envelope is refused with what is wrong."""
    _, key = seal(ring, VALUE, REF)
    with pytest.raises(SealError, match=message):
        open_sealed(ring, envelope, key)


def test_rewrap_opens_under_the_new_key_only() -> None:
    """A re-wrapped key opens the untouched envelope after the old key leaves the ring."""
    old = KeyRing({"k1": new_key()}, "k1")
    envelope, key = seal(old, VALUE, REF)
    saved = copy.deepcopy(envelope)
    ring = old.with_primary("k2", new_key())
    fresh = rewrap(ring, key, "k2")
    assert (fresh.ref, fresh.kid) == (REF, "k2")
    assert fresh.wrapped != key.wrapped
    assert envelope == saved
    trimmed = ring.without(["k1"])
    assert open_sealed(trimmed, envelope, fresh) == VALUE
    with pytest.raises(SealError, match="sealed under key k1, which is not in the key ring"):
        open_sealed(trimmed, envelope, key)


def test_new_seals_use_the_primary_key() -> None:
    """After a new primary is added, new data keys are wrapped under it."""
    ring = KeyRing({"k1": new_key()}, "k1").with_primary("k2", new_key())
    assert seal(ring, VALUE, REF)[1].kid == "k2"
    assert ring.retired == ["k1"]


def test_key_ring_repr_holds_no_key_material() -> None:
    """repr(KeyRing) names the key ids and the primary, never a key."""
    key = new_key()
    ring = KeyRing({"k1": key}, "k1")
    text = repr(ring)
    assert "k1" in text
    assert base64.b64encode(key).decode() not in text and repr(key) not in text


@pytest.mark.parametrize(
    ("keys", "primary", "message"),
    [
        ({}, "k1", "at least one key"),
        ({"k1": b"short"}, "k1", "must be 32 bytes"),
        ({"k1": bytes(32)}, "k2", "primary key 'k2' is not in the key ring"),
        ({"bad kid": bytes(32)}, "bad kid", "is not valid"),
    ],
)
def test_invalid_key_rings_are_refused(keys: dict[str, bytes], primary: str, message: str) -> None:
    """A key ring without keys, with a short key, a foreign primary or a bad kid is refused."""
    with pytest.raises(ValueError, match=message):
        KeyRing(keys, primary)


def test_primary_cannot_be_removed() -> None:
    """Removing the primary key from the ring is refused."""
    ring = KeyRing({"k1": new_key()}, "k1")
    with pytest.raises(ValueError, match="primary key 'k1' cannot be removed"):
        ring.without(["k1"])


def test_key_ring_is_frozen_against_its_source_dict() -> None:
    """Mutating the dict a ring was built from does not change the ring."""
    keys = {"k1": new_key()}
    ring = KeyRing(keys, "k1")
    keys["k2"] = new_key()
    assert list(ring.keys) == ["k1"]


def test_is_sealed() -> None:
    """is_sealed is true for an object whose only key is $sealed."""
    assert is_sealed({SEALED: {}})
    assert not is_sealed({SEALED: {}, "x": 1})
    assert not is_sealed({"a": 1})
    assert not is_sealed("$sealed")


def test_crypto_imports_nothing_of_umiq() -> None:
    """policies._crypto loads neither worker, connectors nor torch."""
    code = (
        "import sys, policies._crypto\n"
        "print(','.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('worker', 'connectors', 'examples', 'torch'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

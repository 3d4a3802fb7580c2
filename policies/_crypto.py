"""Sealing sensitive values with AES-GCM envelope encryption, pure (no I/O, no umiq imports).

A value is sealed under a fresh random 256-bit data key (DEK) of its own; the DEK is
wrapped by the key ring's primary key-encryption key (KEK). Two things come out:

- the *envelope*, stored in place of the value (in a hash-chained audit row, never
  rewritten)::

      {"$sealed": {"v": 1, "ref": REF, "alg": "AES-256-GCM", "nonce": b64, "ct": b64}}

- the ``SealedKey(ref, kid, wrapped)``, stored apart (``sealed_key``, outside the chain),
  which rotation re-wraps under a new KEK without touching the envelope.

Both are bound to the record's identity ``REF`` by AES-GCM associated data, so a
ciphertext or a wrapped key moved to another record does not open:

- value: ``ct = AES-GCM(DEK, nonce, plaintext, aad=json(["umiq.sealed.v1", ref]))``
- DEK: ``wrapped = b64(nonce ‖ AES-GCM(KEK[kid], nonce, DEK, aad=json(["umiq.dek.v1", kid, ref])))``

where ``json`` is compact JSON (``ensure_ascii``), an unambiguous encoding of the parts.
Nonces are 96 random bits; each key encrypts one value (DEK) or a handful of DEKs per
record (KEK), far below the limits of random nonces.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALG = "AES-256-GCM"
"""The only algorithm of envelope version 1."""

VERSION = 1
"""The envelope format version."""

SEALED = "$sealed"
"""The one key of an envelope object."""

KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16
_KID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENVELOPE_FIELDS = frozenset({"v", "ref", "alg", "nonce", "ct"})


class SealError(Exception):
    """A sealed value that cannot be opened (or made), and why.

    Defined here because ``policies`` imports nothing of ``worker``; ``worker.errors``
    documents it beside umiq's own tree.
    """


def new_key() -> bytes:
    """A fresh random 256-bit key (for a key ring, or a data key)."""
    return AESGCM.generate_key(bit_length=256)


def new_nonce() -> bytes:
    """A fresh random 96-bit AES-GCM nonce."""
    return secrets.token_bytes(NONCE_BYTES)


def check_kid(kid: str) -> str:
    """``kid`` if it is a valid key id (1-64 of letters, digits, ``.``, ``_``, ``-``)."""
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise ValueError(
            f"key id {kid!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return kid


@dataclass(frozen=True, repr=False)
class KeyRing:
    """Key-encryption keys by key id, one of them primary (used to wrap new data keys).

    The others are *retired*: still used to open what they wrapped, never to wrap anew.
    ``created`` optionally records when each key was made (ISO-8601 text), for listings.
    The repr names the key ids only, never key material.
    """

    keys: Mapping[str, bytes]
    primary: str
    created: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring needs at least one key")
        for kid, key in self.keys.items():
            check_kid(kid)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ValueError(f"key {kid!r} must be {KEY_BYTES} bytes (AES-256)")
        if self.primary not in self.keys:
            raise ValueError(
                f"primary key {self.primary!r} is not in the key ring ({', '.join(self.keys)})"
            )
        # frozen copies: a caller mutating its dict afterwards cannot change the ring
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        created = {k: str(v) for k, v in self.created.items() if k in self.keys}
        object.__setattr__(self, "created", MappingProxyType(created))

    def __repr__(self) -> str:
        return f"KeyRing(primary={self.primary!r}, kids={list(self.keys)!r})"

    @property
    def retired(self) -> list[str]:
        """The key ids that open old records but wrap nothing new."""
        return [kid for kid in self.keys if kid != self.primary]

    def key(self, kid: str, ref: str) -> bytes:
        """The key ``kid``, which record ``ref`` needs; SealError if the ring lacks it."""
        try:
            return self.keys[kid]
        except KeyError:
            raise SealError(
                f"record {ref} was sealed under key {kid}, which is not in the key ring "
                f"(it holds {', '.join(self.keys)}): restore that key to open the record"
            ) from None

    def with_primary(self, kid: str, key: bytes, *, created: str | None = None) -> KeyRing:
        """This ring plus the new key ``kid``, which becomes primary (the old ones retire)."""
        if kid in self.keys:
            raise ValueError(f"key id {kid!r} is already in the key ring")
        stamps = dict(self.created)
        if created is not None:
            stamps[kid] = created
        return KeyRing({**self.keys, kid: key}, kid, stamps)

    def without(self, kids: Iterable[str]) -> KeyRing:
        """This ring less the retired keys ``kids`` (the primary cannot be removed)."""
        drop = set(kids)
        if self.primary in drop:
            raise ValueError(f"the primary key {self.primary!r} cannot be removed")
        keys = {k: v for k, v in self.keys.items() if k not in drop}
        return KeyRing(keys, self.primary, self.created)

    def describe(self) -> list[dict[str, Any]]:
        """One entry per key: ``kid``, ``primary``, ``created`` (no key material)."""
        return [
            {"kid": kid, "primary": kid == self.primary, "created": self.created.get(kid)}
            for kid in self.keys
        ]


@dataclass(frozen=True)
class SealedKey:
    """A record's data key, wrapped by key ``kid`` of the ring (b64 of nonce ‖ ciphertext)."""

    ref: str
    kid: str
    wrapped: str


def _aad(*parts: str) -> bytes:
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _value_aad(ref: str) -> bytes:
    return _aad("umiq.sealed.v1", ref)


def _dek_aad(kid: str, ref: str) -> bytes:
    return _aad("umiq.dek.v1", kid, ref)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str, ref: str) -> bytes:
    if not isinstance(text, str):
        raise SealError(f"cannot open {ref}: {what} is not base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SealError(f"cannot open {ref}: {what} is not valid base64") from None


def _check_ref(ref: str) -> str:
    if not isinstance(ref, str) or not ref:
        raise SealError(f"a sealed record needs a non-empty text identity, not {ref!r}")
    return ref


def _wrap(keyring: KeyRing, kid: str, dek: bytes, ref: str) -> SealedKey:
    nonce = new_nonce()
    wrapped = AESGCM(keyring.key(kid, ref)).encrypt(nonce, dek, _dek_aad(kid, ref))
    return SealedKey(ref, kid, _b64(nonce + wrapped))


def _unwrap(keyring: KeyRing, sealed_key: SealedKey) -> bytes:
    ref = sealed_key.ref
    kek = keyring.key(sealed_key.kid, ref)
    blob = _unb64(sealed_key.wrapped, "the wrapped data key", ref)
    if len(blob) != NONCE_BYTES + KEY_BYTES + _TAG_BYTES:
        raise SealError(f"cannot open {ref}: the wrapped data key has the wrong length")
    try:
        return AESGCM(kek).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _dek_aad(sealed_key.kid, ref)
        )
    except InvalidTag:
        raise SealError(
            f"cannot open {ref}: its wrapped data key was altered or belongs to another "
            f"record (AES-GCM tag mismatch under key {sealed_key.kid})"
        ) from None


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is an envelope: an object whose only key is ``$sealed``."""
    return isinstance(value, Mapping) and len(value) == 1 and SEALED in value


def envelope_ref(envelope: Any) -> str:
    """The record identity an envelope names (checked against where it is found)."""
    return _fields(envelope)["ref"]


def _fields(envelope: Any) -> dict[str, Any]:
    if not is_sealed(envelope):
        raise SealError(
            f"not a sealed envelope: expected an object with the single key {SEALED!r}, "
            f"got {type(envelope).__name__}"
        )
    body = envelope[SEALED]
    if not isinstance(body, Mapping) or set(body) != _ENVELOPE_FIELDS:
        got = sorted(body) if isinstance(body, Mapping) else type(body).__name__
        raise SealError(
            f"not a sealed envelope: {SEALED!r} must hold exactly "
            f"{', '.join(sorted(_ENVELOPE_FIELDS))}; got {got}"
        )
    if body["v"] != VERSION or body["alg"] != ALG:
        raise SealError(
            f"cannot open {body['ref']}: envelope version {body['v']!r} with {body['alg']!r} "
            f"is not supported (this umiq reads version {VERSION}, {ALG})"
        )
    if not isinstance(body["ref"], str) or not body["ref"]:
        raise SealError("not a sealed envelope: its ref must be non-empty text")
    return dict(body)


def seal(keyring: KeyRing, value_json_bytes: bytes, ref: str) -> tuple[dict[str, Any], SealedKey]:
    """Seal ``value_json_bytes`` (a value's canonical JSON) as record ``ref``.

    Returns the envelope to store in place of the value and the data key wrapped by the
    ring's primary key, to store in ``sealed_key`` in the same transaction.
    """
    _check_ref(ref)
    if not isinstance(value_json_bytes, bytes):
        raise SealError(
            f"seal takes the value's canonical JSON as bytes, not {type(value_json_bytes).__name__}"
        )
    dek = new_key()
    nonce = new_nonce()
    ct = AESGCM(dek).encrypt(nonce, value_json_bytes, _value_aad(ref))
    envelope = {
        SEALED: {"v": VERSION, "ref": ref, "alg": ALG, "nonce": _b64(nonce), "ct": _b64(ct)}
    }
    return envelope, _wrap(keyring, keyring.primary, dek, ref)


def open_sealed(keyring: KeyRing, envelope: Any, sealed_key: SealedKey) -> bytes:
    """The plaintext (canonical JSON bytes) of ``envelope``, found at record ``sealed_key.ref``.

    ``sealed_key`` must be the one stored for the record where the envelope was found:
    an envelope moved there from another record, or altered, raises SealError.
    """
    ref = _check_ref(sealed_key.ref)
    body = _fields(envelope)
    if body["ref"] != ref:
        raise SealError(
            f"cannot open {ref}: the ciphertext was altered or belongs to another record "
            f"(the envelope names record {body['ref']})"
        )
    dek = _unwrap(keyring, sealed_key)
    nonce = _unb64(body["nonce"], "the envelope's nonce", ref)
    ct = _unb64(body["ct"], "the envelope's ciphertext", ref)
    if len(nonce) != NONCE_BYTES:
        raise SealError(f"cannot open {ref}: the envelope's nonce is not {NONCE_BYTES} bytes")
    try:
        return AESGCM(dek).decrypt(nonce, ct, _value_aad(ref))
    except InvalidTag:
        raise SealError(
            f"cannot open {ref}: the ciphertext was altered or belongs to another record "
            "(AES-GCM tag mismatch)"
        ) from None


def rewrap(keyring: KeyRing, sealed_key: SealedKey, new_kid: str) -> SealedKey:
    """``sealed_key``'s data key wrapped anew under key ``new_kid`` (the envelope is untouched)."""
    return _wrap(keyring, new_kid, _unwrap(keyring, sealed_key), sealed_key.ref)

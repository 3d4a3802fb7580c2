"""Signed checkpoints: an auditor's proof, kept outside the database, of what the log was.

The hash chain shows that no row was changed *relative to the rows around it*; someone
with the database's owner rights can still rewrite the whole chain from genesis, and it
verifies again. A checkpoint closes that gap: it is the chain head (``seq``, ``hash``)
at some moment, signed with an Ed25519 key the database never sees. Later, the log must
still *extend* it: the row with that ``seq`` must still carry that ``hash``, and since
every hash covers its predecessor, so must every row before it.

    private_key, public_key = write_keypair(Path("keys"))           # umiq audit keygen
    checkpoint = take_checkpoint(engine, load_private_key(private_key), database=...)
    checkpoint.write(Path("cp.json"))                               # umiq audit checkpoint
    report = check_checkpoint(engine, Checkpoint.read(Path("cp.json")),
                              load_public_key(public_key))          # umiq audit verify
                                                                    #   --checkpoint …

The signed body is the canonical JSON (``worker.audit.chain.canonical_json``) of
``{format, chain, seq, hash, created_at, database, key_id}``; ``database`` names the
database the checkpoint was taken on (backend, host, port, name; never the user or the
password) and ``key_id`` the signing key. The comparison itself is pure
(``signature_problem``, ``extension_problem``); only ``take_checkpoint`` and
``check_checkpoint`` read the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.engine import make_url

from worker.audit.chain import GENESIS, canonical_json, is_digest, iso_utc
from worker.audit.db import read_snapshot
from worker.audit.tables import CHAIN, CHAIN_TABLES, ChainHead
from worker.audit.verify import VerifyReport, verify_chain
from worker.errors import AuditError

FORMAT = "umiq-audit-checkpoint/1"
"""The ``format`` field of a checkpoint file this module writes and reads."""

PRIVATE_KEY_FILE = "umiq-audit-private.pem"
PUBLIC_KEY_FILE = "umiq-audit-public.pem"

_FIELDS = ("format", "chain", "seq", "hash", "created_at", "database", "key_id")


# -- keys -------------------------------------------------------------------------------


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as PEM: (PKCS#8 private key, SubjectPublicKeyInfo public key)."""
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_keypair(directory: Path) -> tuple[Path, Path]:
    """Write a new key pair into ``directory``: the private key 0600, the public key 0644.

    Refuses to overwrite an existing key: losing the private key of checkpoints already
    handed out would leave them unverifiable against a new one.
    """
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise AuditError(f"{path} already exists: keep that key, or choose another --out")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL and the mode at creation: the private key is never readable by others, not
    # even for the moment between a write and a chmod.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; set exactly these
        os.write(fd, data)
    finally:
        os.close(fd)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file at ``path``."""
    key = _load(path, serialization.load_pem_private_key, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM file at ``path``."""
    key = _load(path, serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def _load(path: Path, loader: Any, **kwargs: Any) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read key {path}: {exc.strerror}") from exc
    try:
        return loader(data, **kwargs)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{path} is not a PEM key umiq can read: {exc}") from exc


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name of ``public_key``: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- the checkpoint ---------------------------------------------------------------------


def database_identity(url: str) -> dict[str, Any]:
    """Which database ``url`` names: backend, host, port and database; no user, no password."""
    parsed = make_url(url)
    return {
        "backend": parsed.get_backend_name(),
        "host": parsed.host,
        "port": parsed.port,
        "database": parsed.database,
    }


def describe_database(identity: dict[str, Any]) -> str:
    """``identity`` in words, e.g. ``postgresql://db.internal:5432/umiq``."""
    host = identity.get("host") or ""
    if identity.get("port"):
        host += f":{identity['port']}"
    return f"{identity.get('backend')}://{host}/{identity.get('database') or ''}"


@dataclass(frozen=True)
class Checkpoint:
    """A signed chain head: ``seq`` and ``hash`` of ``chain`` at ``created_at``."""

    chain: str
    seq: int
    hash: str
    created_at: str
    database: dict[str, Any]
    key_id: str
    signature: str = field(repr=False)
    """Base64 of the Ed25519 signature of ``canonical_json(self.body())``."""

    def body(self) -> dict[str, Any]:
        """The signed fields."""
        return {
            "format": FORMAT,
            "chain": self.chain,
            "seq": self.seq,
            "hash": self.hash,
            "created_at": self.created_at,
            "database": self.database,
            "key_id": self.key_id,
        }

    def to_json(self) -> str:
        """The checkpoint file's text."""
        return json.dumps({**self.body(), "signature": self.signature}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "checkpoint") -> Checkpoint:
        """The checkpoint in ``text``; ``AuditError`` names what is missing or malformed."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuditError(f"{source} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise AuditError(f"{source} is not a umiq audit checkpoint (format {FORMAT})")
        missing = [name for name in (*_FIELDS, "signature") if name not in data]
        if missing:
            raise AuditError(f"{source} lacks {', '.join(missing)}")
        seq, hash_ = data["seq"], data["hash"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise AuditError(f"{source}: seq must be a non-negative integer, not {seq!r}")
        if not isinstance(hash_, str) or not is_digest(hash_):
            raise AuditError(f"{source}: hash must be a SHA-256 hex digest, not {hash_!r}")
        if not isinstance(data["database"], dict):
            raise AuditError(f"{source}: database must be an object")
        return cls(
            chain=str(data["chain"]),
            seq=seq,
            hash=hash_,
            created_at=str(data["created_at"]),
            database=data["database"],
            key_id=str(data["key_id"]),
            signature=str(data["signature"]),
        )

    def write(self, path: Path) -> None:
        """Write the checkpoint file at ``path``; an existing file is never overwritten."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _write_new(path, self.to_json().encode("utf-8"), 0o644)
        except FileExistsError as exc:
            raise AuditError(f"{path} already exists: each checkpoint goes to a new file") from exc

    @classmethod
    def read(cls, path: Path) -> Checkpoint:
        """The checkpoint in the file at ``path``."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuditError(f"cannot read checkpoint {path}: {exc.strerror}") from exc
        return cls.from_json(text, source=str(path))


def sign(
    private_key: Ed25519PrivateKey,
    *,
    seq: int,
    hash: str,
    database: dict[str, Any],
    chain: str = CHAIN,
    created_at: datetime | None = None,
) -> Checkpoint:
    """The checkpoint of head (``seq``, ``hash``) of ``chain``, signed with ``private_key``."""
    unsigned = Checkpoint(
        chain=chain,
        seq=seq,
        hash=hash,
        created_at=iso_utc(created_at or datetime.now(UTC)),
        database=dict(database),
        key_id=key_id(private_key.public_key()),
        signature="",
    )
    signature = private_key.sign(canonical_json(unsigned.body()))
    return replace(unsigned, signature=base64.b64encode(signature).decode("ascii"))


# -- what a check finds (pure) ----------------------------------------------------------


def signature_problem(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> str | None:
    """Why ``checkpoint`` is not signed by ``public_key``'s key, or None when it is."""
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        public_key.verify(signature, canonical_json(checkpoint.body()))
        return None
    except (InvalidSignature, binascii.Error):
        expected = key_id(public_key)
        if checkpoint.key_id != expected:
            return (
                f"bad checkpoint signature: the checkpoint names key {checkpoint.key_id}, "
                f"the public key given is {expected}: wrong public key, or a forged checkpoint"
            )
        return (
            "bad checkpoint signature: the checkpoint file was altered after it was signed, "
            "or it was not signed with this key"
        )


def extension_problem(
    checkpoint: Checkpoint, last_seq: int, hashes_at_seq: list[str]
) -> str | None:
    """Why a chain whose last seq is ``last_seq`` does not extend ``checkpoint``, or None.

    ``hashes_at_seq`` are the hashes of the rows that now have the checkpoint's seq (one in
    a sound chain; none when the row is gone; several when a row was forged beside it).
    """
    seq = checkpoint.seq
    if seq == 0:  # the empty chain: every chain extends it
        return None if checkpoint.hash == GENESIS else f"row seq=0 cannot have {checkpoint.hash}"
    if not hashes_at_seq:
        if last_seq < seq:
            return (
                f"the chain ends at seq={last_seq} but the checkpoint is at seq={seq}: "
                "the log was truncated after the checkpoint"
            )
        return f"row seq={seq} is missing: the log was rewritten after the checkpoint"
    if checkpoint.hash not in hashes_at_seq:
        return (
            f"row seq={seq} no longer has the checkpointed hash: "
            "the log was rewritten after the checkpoint"
        )
    return None


@dataclass(frozen=True)
class CheckpointReport:
    """The chain's own verification, and whether it still extends the checkpoint."""

    chain: VerifyReport
    head_seq: int
    problem: str | None = None
    """Why the log does not extend the checkpoint (None when it does)."""

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.problem is None


# -- reading the database ---------------------------------------------------------------


def _head(conn: Connection, chain: str) -> tuple[int, str] | None:
    row = conn.execute(
        select(ChainHead.last_seq, ChainHead.last_hash).where(ChainHead.chain == chain)
    ).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


def take_checkpoint(
    engine: Engine,
    private_key: Ed25519PrivateKey,
    *,
    database: dict[str, Any],
    chain: str = CHAIN,
) -> Checkpoint:
    """Verify ``chain`` and sign its head; a broken chain is refused (``ChainBroken``).

    The verification and the head come from one snapshot, so the signed head is the end
    of the chain that was verified.
    """
    with read_snapshot(engine) as conn:
        report = verify_chain(conn, chain)
        if report.first_broken is not None:
            raise report.first_broken
        head = _head(conn, chain)
    assert head is not None  # verify_chain reports a missing head as broken
    return sign(private_key, seq=head[0], hash=head[1], database=database, chain=chain)


def check_checkpoint(engine: Engine, checkpoint: Checkpoint) -> CheckpointReport:
    """Verify the checkpoint's chain and whether it still extends ``checkpoint``, in one snapshot.

    The signature is checked apart, before (``signature_problem``): an unsigned checkpoint
    proves nothing.
    """
    with read_snapshot(engine) as conn:
        report = verify_chain(conn, checkpoint.chain)
        head = _head(conn, checkpoint.chain)
        hashes: list[str] = []
        last_seq = head[0] if head else 0
        for model in CHAIN_TABLES.values():
            table = model.__table__  # type: ignore[attr-defined]
            hashes += conn.execute(
                select(table.c.hash).where(table.c.seq == checkpoint.seq)
            ).scalars()
            last_seq = max(last_seq, conn.execute(select(func.max(table.c.seq))).scalar() or 0)
    return CheckpointReport(
        chain=report,
        head_seq=head[0] if head else 0,
        problem=extension_problem(checkpoint, last_seq, hashes),
    )

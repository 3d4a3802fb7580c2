"""Signed human decisions: approvals nobody can forge by writing the database.

The chain hash is unkeyed and the worker's role may insert steps, so whoever can write
the database could append an "approved by cfo" step and have the worker make the held
call. A decision is therefore signed by the service that takes it (the CLI or the
review page) with an Ed25519 key the worker does not hold (``umiq audit keygen``, the
same machinery as checkpoints: ``UMIQ_DECISION_KEY_FILE`` on the deciding side), and
the worker checks it against the public key (``UMIQ_DECISION_PUBLIC_KEY_FILE``) before
it resumes an approved call; ``umiq audit verify`` checks every decision.

Unset, both default to a pair in the data dir (``decision.key``, 0600, and
``decision.pub``), made on first use by whichever side comes first (``signer``,
``verifier``): a fresh install refuses unsigned approvals from the start. On one box
that keeps the private key beside the worker: fine for a trial, not for production.

The signed body is the canonical JSON of ``{format, task_id, on_seq, policy, status,
key, tool, by, reasons}``: who decided what on which call of which task, and ``on_seq``,
the seq of the outcome step the decision answers (the ``awaiting_approval`` or ``held``
step), so a signed approval copied to a later wait of the same call does not count. The
decision step stores ``on_seq``, ``key_id`` and ``signature`` in its details.

Pure but for ``check_log`` (reads the steps) and the key loaders (read, and by default
create, files).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, select

from worker.audit.chain import canonical_json
from worker.audit.checkpoint import generate_keypair, key_id, load_private_key, load_public_key
from worker.audit.events import DECIDED_CALL, RELEASED, PolicyDetails, policy_of
from worker.audit.records import StepRecord
from worker.audit.tables import Step
from worker.errors import ConfigError
from worker.files import create_once

if TYPE_CHECKING:
    from worker.settings import Settings

log = structlog.get_logger("umiq.audit.decisions")

FORMAT = "umiq-decision/1"
"""The ``format`` of a signed decision body."""

DECISION_STATUSES = (*DECIDED_CALL, RELEASED)
"""``status`` of a policy step that records a human's decision."""


def is_decision(details: PolicyDetails) -> bool:
    """Whether a policy payload is a human's decision (on a call or a held answer)."""
    return details.status in DECISION_STATUSES and details.by is not None


def body(task_id: str, details: PolicyDetails) -> bytes:
    """The bytes a decision's signature covers."""
    return canonical_json(
        {
            "format": FORMAT,
            "task_id": task_id,
            "on_seq": details.on_seq,
            "policy": details.policy,
            "status": details.status,
            "key": details.key,
            "tool": details.tool,
            "by": details.by,
            "reasons": list(details.reasons or []),
        }
    )


def sign(private_key: Ed25519PrivateKey, task_id: str, details: PolicyDetails) -> PolicyDetails:
    """``details`` (with its ``on_seq``) signed: ``key_id`` and ``signature`` added."""
    signature = private_key.sign(body(task_id, details))
    return replace(
        details,
        key_id=key_id(private_key.public_key()),
        signature=base64.b64encode(signature).decode("ascii"),
    )


def problem(task_id: str, details: PolicyDetails, public_key: Ed25519PublicKey) -> str | None:
    """Why the decision ``details`` of ``task_id`` is not signed by ``public_key``, or None."""
    expected = key_id(public_key)
    if not details.signature:
        return "the decision is not signed (taken without a decision key, or written by hand)"
    try:
        raw = base64.b64decode(details.signature, validate=True)
        public_key.verify(raw, body(task_id, details))
        return None
    except (InvalidSignature, binascii.Error, ValueError):
        if details.key_id != expected:
            return (
                f"the decision names signing key {details.key_id}, the decision public key is "
                f"{expected}: signed by another key, or forged"
            )
        return "the signature does not match the decision: it was altered or forged"


@dataclass(frozen=True)
class DecisionCheck:
    """The decisions of an audit log and those whose signature does not verify."""

    checked: int
    unsigned: int
    bad: list[tuple[int, str, str]]
    """(seq, task id, why) of each decision that does not verify."""


def check_steps(steps: Iterable[Any], public_key: Ed25519PublicKey | None) -> DecisionCheck:
    """Check every decision among ``steps`` (step records); without a key only count the
    unsigned ones."""
    checked = unsigned = 0
    bad: list[tuple[int, str, str]] = []
    for step in steps:
        details = policy_of(step)
        if details is None or not is_decision(details):
            continue
        checked += 1
        if not details.signature:
            unsigned += 1
        if public_key is None:
            continue
        why = problem(step.task_id, details, public_key)
        if why is None and (details.on_seq is None or details.on_seq >= step.seq):
            why = f"the decision answers seq {details.on_seq}, not an earlier step"
        if why is not None:
            bad.append((step.seq, step.task_id, why))
    return DecisionCheck(checked, unsigned, bad)


def check_log(engine: Engine, public_key: Ed25519PublicKey | None) -> DecisionCheck:
    """Check every decision in the audit log of ``engine`` (``umiq audit verify``)."""
    table = Step.__table__  # type: ignore[attr-defined]
    stmt = select(table).where(table.c.kind == "policy").order_by(table.c.seq)
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return check_steps((StepRecord(**row) for row in rows), public_key)


# -- keys from the settings ---------------------------------------------------------------

PRIVATE_FILE = "decision.key"
"""The default private decision key, in the data dir: created on first use."""
PUBLIC_FILE = "decision.pub"
"""The default public decision key, in the data dir: created with the private one."""


def default_paths(data_dir: Path) -> tuple[Path, Path]:
    """The default (private, public) decision key files in ``data_dir``."""
    return data_dir / PRIVATE_FILE, data_dir / PUBLIC_FILE


def signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    """The deciding service's private key at ``path`` (``UMIQ_DECISION_KEY_FILE``), or None."""
    return None if path is None else load_private_key(path.expanduser())


def verifying_key(path: Path | None) -> Ed25519PublicKey | None:
    """The decision public key at ``path`` (``UMIQ_DECISION_PUBLIC_KEY_FILE``), or None."""
    return None if path is None else load_public_key(path.expanduser())


def signer(settings: Settings) -> Ed25519PrivateKey:
    """The key the deciding side (CLI, review page) signs decisions with.

    ``UMIQ_DECISION_KEY_FILE`` when set; else ``<data_dir>/decision.key``, created with
    ``<data_dir>/decision.pub`` on first use (with a warning). Refused when the data dir
    holds the public key alone: its private half was moved away on purpose.
    """
    if settings.decision_key_file is not None:
        return load_private_key(settings.decision_key_file.expanduser())
    private_path, public_path = default_paths(settings.data_dir)
    if not private_path.exists() and public_path.exists():
        raise ConfigError(
            f"{public_path} exists without {private_path}: the private decision key was "
            "moved away from this data dir; point UMIQ_DECISION_KEY_FILE at it on the "
            "deciding side (CLI, review page)"
        )
    return _default_pair(settings.data_dir)


def verifier(settings: Settings) -> Ed25519PublicKey:
    """The key the worker and ``umiq audit verify`` check decisions against.

    ``UMIQ_DECISION_PUBLIC_KEY_FILE`` when set; else the public half of
    ``UMIQ_DECISION_KEY_FILE`` when that is set (one environment for both sides); else
    ``<data_dir>/decision.pub``, the pair created on first use when the data dir holds
    none, so that a fresh install refuses unsigned approvals from the start.
    """
    if settings.decision_public_key_file is not None:
        return load_public_key(settings.decision_public_key_file.expanduser())
    if settings.decision_key_file is not None:
        return load_private_key(settings.decision_key_file.expanduser()).public_key()
    _, public_path = default_paths(settings.data_dir)
    if public_path.exists():
        return load_public_key(public_path)
    return _default_pair(settings.data_dir).public_key()


def _default_pair(data_dir: Path) -> Ed25519PrivateKey:
    """The private key of the default pair in ``data_dir``, made there if it is not.

    Processes starting together make one pair: the private key appears whole (a hard
    link of a written temp file) or not at all, and the public key is derived from it.
    """
    private_path, public_path = default_paths(data_dir)
    created = False
    if not private_path.exists():
        private_pem, _ = generate_keypair()
        created = create_once(private_path, private_pem, 0o600)
    private_key = load_private_key(private_path)
    if not public_path.exists():
        public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        create_once(public_path, public_pem, 0o644)
    if created:
        log.warning(
            "decision_keys.created",
            path=str(private_path),
            public_path=str(public_path),
            key_id=key_id(private_key.public_key()),
            message=(
                f"created the decision key pair {private_path} (mode 0600) and {public_path} "
                "in the data dir; in production the private key belongs to the review "
                "service only: give the worker only UMIQ_DECISION_PUBLIC_KEY_FILE and the "
                "deciding side UMIQ_DECISION_KEY_FILE"
            ),
        )
    return private_key

"""Signed human decisions: approvals nobody can forge by writing the database.

The chain hash is unkeyed and the worker's role may insert steps, so whoever can write
the database could append an "approved by cfo" step and have the worker make the held
call. A decision is therefore signed by the service that takes it (the CLI or the
review page) with an Ed25519 key the worker does not hold (``umiq audit keygen``, the
same machinery as checkpoints: ``UMIQ_DECISION_KEY_FILE`` on the deciding side), and
the worker checks it against the public key (``UMIQ_DECISION_PUBLIC_KEY_FILE``) before
it resumes an approved call; ``umiq audit verify`` checks every decision.

The signed body is the canonical JSON of ``{format, task_id, on_seq, policy, status,
key, tool, by, reasons}``: who decided what on which call of which task, and ``on_seq``,
the seq of the outcome step the decision answers (the ``awaiting_approval`` or ``held``
step), so a signed approval copied to a later wait of the same call does not count. The
decision step stores ``on_seq``, ``key_id`` and ``signature`` in its details.

Pure but for ``check_log`` (reads the steps) and the key loaders (read files).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, select

from worker.audit.chain import canonical_json
from worker.audit.checkpoint import key_id, load_private_key, load_public_key
from worker.audit.events import DECIDED_CALL, RELEASED, PolicyDetails, policy_of
from worker.audit.records import StepRecord
from worker.audit.tables import Step

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


def signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    """The deciding service's private key at ``path`` (``UMIQ_DECISION_KEY_FILE``), or None."""
    return None if path is None else load_private_key(path)


def verifying_key(path: Path | None) -> Ed25519PublicKey | None:
    """The decision public key at ``path`` (``UMIQ_DECISION_PUBLIC_KEY_FILE``), or None."""
    return None if path is None else load_public_key(path)

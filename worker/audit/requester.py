"""``requested_by`` pseudonymized: a keyed hash in the plain task row, the name sealed.

The task row is plain text (operators and non-auditors read it), so the worker stores
there ``rq-`` and 24 hex digits of HMAC-SHA256 of the name (trimmed, case-folded), and
seals the name itself in the task's ``context`` under ``requester`` (ref
``task/<task_id>/requester``). Four eyes compares a would-be approver's pseudonym with
the stored one; an auditor's trace opens the name.

The key is ``UMIQ_PSEUDONYM_KEY``; unset, a random secret in ``<data_dir>/pseudonym.key``
(mode 0600) made on first use (``pseudonym_key``), which the CLI and the review page
must share with the worker for four eyes to tell who requested.

    pseudonym("Alice", key)                    # 'rq-3f…'
    is_requester("rq-3f…", "alice ", key)      # True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from worker.errors import ConfigError
from worker.files import create_once

if TYPE_CHECKING:
    from worker.settings import Settings

log = structlog.get_logger("umiq.audit.requester")

PREFIX = "rq-"
SEALED_FIELD = "requester"
"""The task ``context`` entry that holds the sealed name."""

_PSEUDONYM = re.compile(r"rq-[0-9a-f]{24}\Z")

KEY_FILE = "pseudonym.key"
"""The default pseudonym secret, in the data dir: created on first use."""


def _norm(name: str) -> str:
    return name.strip().casefold()


def pseudonym(name: str, key: str) -> str:
    """The keyed hash that stands for ``name`` (``rq-`` and 24 hex digits)."""
    digest = hmac.new(key.encode("utf-8"), _norm(name).encode("utf-8"), hashlib.sha256)
    return PREFIX + digest.hexdigest()[:24]


def is_pseudonym(value: str) -> bool:
    """Whether ``value`` is a pseudonym this module writes (not a name stored raw)."""
    return bool(_PSEUDONYM.match(value))


def is_requester(stored: str, name: str, key: str | None) -> bool | None:
    """Whether ``name`` is the requester recorded as ``stored``; None when it cannot be
    told (a pseudonym and no key)."""
    if not is_pseudonym(stored):
        return _norm(stored) == _norm(name)
    if key is None:
        return None
    return hmac.compare_digest(pseudonym(name, key), stored)


def shown(requested_by: str, context: Mapping[str, Any] | None) -> str:
    """Who requested, for a reader: the opened name beside its pseudonym when the
    context's sealed name was opened (an auditor), else the row's value."""
    from worker.audit.review import SEALED  # review imports this module

    raw = (context or {}).get(SEALED_FIELD)
    if isinstance(raw, str) and raw not in (requested_by, SEALED):
        return f"{raw} ({requested_by})"
    return requested_by


def without_sealed(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """The task's ``context`` without the sealed name (what an envelope's context holds)."""
    return {k: v for k, v in (context or {}).items() if k != SEALED_FIELD}


def pseudonym_key(settings: Settings) -> str:
    """The pseudonym secret: ``UMIQ_PSEUDONYM_KEY``, else ``<data_dir>/pseudonym.key``,
    created on first use (random, mode 0600) with a warning naming it."""
    if settings.pseudonym_key is not None:
        return settings.pseudonym_key
    path = settings.data_dir / KEY_FILE
    created = False
    if not path.exists():
        created = create_once(path, (secrets.token_urlsafe(32) + "\n").encode("ascii"))
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the pseudonym key {path}: {exc.strerror}") from exc
    if len(key) < 16:
        raise ConfigError(f"{path} holds no pseudonym key of 16 characters or more")
    if created:
        log.warning(
            "pseudonym_key.created",
            path=str(path),
            message=(
                f"created the pseudonym key {path} (mode 0600) beside the audit database; "
                "the worker, the CLI and the review page must share it: in production set "
                "UMIQ_PSEUDONYM_KEY from a secret store"
            ),
        )
    return key

"""Sealed audit fields: the ``Sealer`` an ``AuditLog`` seals with, and key rotation.

A sealed field is stored in its chained row as an envelope (``policies.seal``), bound
to the record's identity, its *ref*:

- ``tool_call/<idempotency_key>/request`` and ``…/response``: a tool call's arguments
  and result (an idempotency key is recorded once);
- ``step/<seq>/<name>``: entry ``name`` of a step's ``details``. A step is named by its
  ``seq``, not by ``task_id`` and ``index``, because a redelivered task replays its
  episode and records the same indexes again.

Its wrapped data key goes to ``sealed_key`` in the same transaction. Reading opens an
envelope only with the ``sealed_key`` row of the place it was found in, so an envelope
copied or moved to another row does not open there (``SealError``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from policies import (
    KeyRing,
    SealedKey,
    SealError,
    envelope_ref,
    is_sealed,
    open_sealed,
    rewrap,
    seal,
)
from worker.audit.chain import canonical_json, iso_utc, parse_iso_utc
from worker.audit.db import WRITE
from worker.audit.records import StepRecord, ToolCallRecord
from worker.audit.tables import SealedKeyRow
from worker.errors import AuditError

__all__ = [
    "RewrapReport",
    "Rotation",
    "Sealer",
    "count_by_kid",
    "fetch_sealed_keys",
    "insert_sealed_keys",
    "is_sealed",
    "rewrap_all",
    "rotate_keys",
    "step_ref",
    "tool_call_ref",
    "unseal_value",
]

TOOL_CALL_FIELDS = ("request", "response")
"""The fields of a tool call that a sealing audit log seals."""

_PAGE = 500


def _table() -> Table:
    return SealedKeyRow.__table__  # type: ignore[attr-defined,no-any-return]


def _now() -> datetime:
    return parse_iso_utc(iso_utc(datetime.now(UTC)))


def tool_call_ref(idempotency_key: str, field: str) -> str:
    """The ref of field ``field`` (``request`` or ``response``) of a tool call."""
    return f"tool_call/{idempotency_key}/{field}"


def step_ref(seq: int, name: str) -> str:
    """The ref of entry ``name`` of the details of the step row ``seq``."""
    return f"step/{seq}/{name}"


class Sealer:
    """Seals values with a key ring's primary key and opens them with any key of the ring."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"Sealer({self.keyring!r})"

    def seal(self, value: Any, ref: str) -> tuple[dict[str, Any], SealedKey]:
        """The envelope of JSON ``value`` as record ``ref``, and its wrapped data key."""
        return seal(self.keyring, canonical_json(value), ref)

    def open(self, envelope: Any, sealed_key: SealedKey) -> Any:
        """The value sealed in ``envelope``, found at record ``sealed_key.ref``."""
        return json.loads(open_sealed(self.keyring, envelope, sealed_key))


# -- finding the envelopes of a value ---------------------------------------------------

Visit = Callable[[Any, str], Any]


def _map_envelopes(value: Any, ref: str | None, visit: Visit) -> Any:
    """``value`` with each envelope to open replaced by ``visit(envelope, expected_ref)``.

    In a tool call or step record only the places where ``AuditLog`` seals are looked at,
    each with the ref of that place. In any other value every envelope is, with the ref
    it names itself (or ``ref``, when ``value`` is one envelope found at a known place).
    """
    if isinstance(value, ToolCallRecord):
        changes = {
            name: visit(getattr(value, name), tool_call_ref(value.idempotency_key, name))
            for name in TOOL_CALL_FIELDS
            if is_sealed(getattr(value, name))
        }
        return replace(value, **changes) if changes else value
    if isinstance(value, StepRecord):
        if not any(is_sealed(item) for item in value.details.values()):
            return value
        details = {
            name: visit(item, step_ref(value.seq, name)) if is_sealed(item) else item
            for name, item in value.details.items()
        }
        return replace(value, details=details)
    if is_sealed(value):
        return visit(value, ref if ref is not None else envelope_ref(value))
    if isinstance(value, Mapping):
        return {key: _map_envelopes(item, None, visit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_map_envelopes(item, None, visit) for item in value]
    return value


def unseal_value(
    sealer: Sealer | None,
    value: Any,
    fetch: Callable[[set[str]], Mapping[str, SealedKey]],
    *,
    ref: str | None = None,
) -> Any:
    """``value`` with its envelopes opened; ``fetch(refs)`` reads their ``sealed_key`` rows.

    A value without envelopes comes back as it is, with or without a sealer.
    """
    wanted: set[str] = set()

    def collect(envelope: Any, expected: str) -> Any:
        wanted.add(expected)
        return envelope

    _map_envelopes(value, ref, collect)
    if not wanted:
        return value
    if sealer is None:
        raise AuditError(
            f"cannot open {len(wanted)} sealed value(s): this audit log has no key ring; "
            "build it with AuditLog(..., sealer=Sealer(load_keyring()))"
        )
    keys = fetch(wanted)

    def open_one(envelope: Any, expected: str) -> Any:
        sealed_key = keys.get(expected)
        if sealed_key is None:
            raise SealError(
                f"cannot open {expected}: sealed_key holds no data key for it (the key row "
                "was deleted, or the envelope was copied from another database)"
            )
        return sealer.open(envelope, sealed_key)

    return _map_envelopes(value, ref, open_one)


# -- the sealed_key table ---------------------------------------------------------------


def insert_sealed_keys(conn: Connection, keys: Iterable[SealedKey], now: datetime) -> None:
    """Insert wrapped data keys (inside the transaction of the row that holds the envelopes)."""
    rows = [{"ref": k.ref, "kid": k.kid, "wrapped": k.wrapped, "created_at": now} for k in keys]
    if rows:
        conn.execute(insert(_table()), rows)


def fetch_sealed_keys(conn: Connection, refs: Iterable[str]) -> dict[str, SealedKey]:
    """The stored wrapped data keys of ``refs``, by ref (refs without a row are absent)."""
    table = _table()
    out: dict[str, SealedKey] = {}
    wanted = sorted(set(refs))
    for start in range(0, len(wanted), _PAGE):
        chunk = wanted[start : start + _PAGE]
        stmt = select(table.c.ref, table.c.kid, table.c.wrapped).where(table.c.ref.in_(chunk))
        for ref, kid, wrapped in conn.execute(stmt):
            out[ref] = SealedKey(ref, kid, wrapped)
    return out


def count_by_kid(conn: Connection) -> dict[str, int]:
    """How many data keys each key id wraps."""
    table = _table()
    stmt = select(table.c.kid, func.count()).group_by(table.c.kid)
    return {kid: int(n) for kid, n in conn.execute(stmt)}


@dataclass(frozen=True)
class RewrapReport:
    """What a pass of re-wrapping did: rows re-wrapped, and rows that could not be (why)."""

    rewrapped: int
    failed: tuple[tuple[str, str], ...] = ()


def rewrap_all(engine: Engine, keyring: KeyRing) -> RewrapReport:
    """Re-wrap every data key not under ``keyring.primary`` with it, a page per transaction.

    Needs UPDATE on ``sealed_key``: the owner's rights, not the worker role's. A row that
    cannot be re-wrapped (its key is missing, or it was altered) is skipped and reported;
    it keeps the key it had.
    """
    table = _table()
    new_kid = keyring.primary
    stmt = (
        update(table)
        .where(table.c.ref == bindparam("b_ref"))
        .values(
            kid=bindparam("b_kid"), wrapped=bindparam("b_wrapped"), rewrapped_at=bindparam("b_at")
        )
    )
    done, failed, after = 0, [], None
    try:
        while True:
            with engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    page = (
                        select(table.c.ref, table.c.kid, table.c.wrapped)
                        .where(table.c.kid != new_kid)
                        .order_by(table.c.ref)
                        .limit(_PAGE)
                        .with_for_update()
                    )
                    if after is not None:
                        page = page.where(table.c.ref > after)
                    rows = conn.execute(page).all()
                    if not rows:
                        return RewrapReport(done, tuple(failed))
                    now = _now()
                    params = []
                    for ref, kid, wrapped in rows:
                        try:
                            new = rewrap(keyring, SealedKey(ref, kid, wrapped), new_kid)
                        except SealError as exc:
                            failed.append((ref, str(exc)))
                            continue
                        params.append(
                            {"b_ref": ref, "b_kid": new.kid, "b_wrapped": new.wrapped, "b_at": now}
                        )
                    if params:
                        conn.execute(stmt, params)
                    done += len(params)
                    after = rows[-1][0]
    except SQLAlchemyError as exc:
        raise AuditError(
            f"cannot re-wrap the data keys in sealed_key after {done} row(s): "
            f"{getattr(exc, 'orig', None) or exc} "
            "(re-wrapping needs UPDATE on sealed_key: run it as the owner of the audit tables)"
        ) from exc


@dataclass(frozen=True)
class Rotation:
    """The outcome of a key rotation: the ring now in use and what was re-wrapped."""

    keyring: KeyRing
    new_kid: str
    rewrapped: int
    retired: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()


def rotate_keys(
    engine: Engine,
    keyring: KeyRing,
    new_ring: KeyRing,
    save: Callable[[KeyRing], object],
    *,
    retire_old: bool = False,
) -> Rotation:
    """Make ``new_ring`` (``keyring`` plus a new primary key) current and re-wrap under it.

    The new ring is saved *before* any data key depends on its new key; the old keys go
    (``retire_old``) only after no row needs them, else AuditError and they stay. A worker
    still holding the old ring in memory keeps sealing under the old key until it restarts:
    retire old keys once every worker runs with the new ring.
    """
    if new_ring.primary in keyring.keys or not set(keyring.keys) <= set(new_ring.keys):
        raise ValueError("new_ring must hold every key of keyring plus a new primary key")
    save(new_ring)
    try:
        report = rewrap_all(engine, new_ring)
    except AuditError as exc:
        raise AuditError(
            f"{exc}; the new key {new_ring.primary} is saved as primary and every old key "
            "is kept, so every record still opens"
        ) from exc
    if not retire_old:
        return Rotation(
            new_ring, new_ring.primary, report.rewrapped, tuple(new_ring.retired), (), report.failed
        )
    if report.failed:
        refs = ", ".join(ref for ref, _ in report.failed[:5])
        raise AuditError(
            f"not retiring the old keys: {len(report.failed)} data key(s) could not be "
            f"re-wrapped ({refs}…) and still need them; the new key is primary"
        )
    # rows sealed meanwhile by workers still on the old ring: re-wrap those too
    rewrapped = report.rewrapped
    for attempt in range(4):
        with engine.connect() as conn, conn.begin():
            left = {k: n for k, n in count_by_kid(conn).items() if k != new_ring.primary}
        if not left or attempt == 3:
            break
        more = rewrap_all(engine, new_ring)
        rewrapped += more.rewrapped
        if more.failed:
            break
    if left:
        raise AuditError(
            "not retiring the old keys: data keys are still wrapped under "
            + ", ".join(f"{kid} ({n})" for kid, n in sorted(left.items()))
            + " (workers still sealing with the old ring? restart them, then retry)"
        )
    final = new_ring.without(new_ring.retired)
    save(final)
    return Rotation(final, final.primary, rewrapped, (), tuple(new_ring.retired))

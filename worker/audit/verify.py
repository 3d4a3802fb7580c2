"""Walking the chain: recompute every link and name the first row that does not follow."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, type_coerce
from sqlalchemy.types import TypeDecorator

from worker.audit.chain import GENESIS, row_hash
from worker.audit.tables import CHAIN_TABLES, ChainHead, content_columns
from worker.errors import ChainBroken

HASH_MISMATCH = "hash mismatch (content edited)"
PREV_MISMATCH = "prev_hash does not match previous row (row deleted or inserted)"
SEQ_GAP = "seq gap"
DUPLICATE_SEQ = "duplicate seq (row inserted)"
BEYOND_HEAD = "row beyond the chain head (row inserted)"
HEAD_MISMATCH = "head does not match last row (rows truncated)"
HEAD_MISSING = "chain head missing"

_PAGE = 1000


@dataclass(frozen=True)
class VerifyReport:
    """The result of walking a chain: ``ok``, rows read, and the first broken row if any."""

    ok: bool
    rows: int
    first_broken: ChainBroken | None = None


class _Link(NamedTuple):
    seq: int
    order: int  # position of the table in CHAIN_TABLES: a stable order for duplicate seqs
    table: str
    raw: dict[str, Any]
    prev_hash: str
    hash: str


def _rows(conn: Connection, order: int, table: str) -> Iterator[_Link]:
    """Every row of ``table`` by seq, its content as stored (JSON and times still text)."""
    sa_table = CHAIN_TABLES[table].__table__  # type: ignore[attr-defined]
    names = content_columns(table)
    columns = []
    for name in names:
        column = sa_table.c[name]
        # read the stored text itself: decoding happens per row, where a failure is a finding
        raw_type = column.type.impl_instance if isinstance(column.type, TypeDecorator) else None
        columns.append(type_coerce(column, raw_type).label(name) if raw_type else column)
    query = select(*columns, sa_table.c.prev_hash, sa_table.c.hash).order_by(sa_table.c.seq)
    after: int | None = None
    while True:
        page = query if after is None else query.where(sa_table.c.seq > after)
        rows = conn.execute(page.limit(_PAGE)).mappings().all()
        for row in rows:
            yield _Link(
                row["seq"], order, table, {n: row[n] for n in names}, row["prev_hash"], row["hash"]
            )
        if len(rows) < _PAGE:
            return
        after = rows[-1]["seq"]


def _recomputed(link: _Link) -> str | None:
    """The hash ``link`` should have given its stored content; None if it cannot be read."""
    sa_table = CHAIN_TABLES[link.table].__table__  # type: ignore[attr-defined]
    payload: dict[str, Any] = {}
    try:
        for name, value in link.raw.items():
            column_type = sa_table.c[name].type
            if isinstance(column_type, TypeDecorator):
                value = column_type.process_result_value(value, None)  # type: ignore[arg-type]
            payload[name] = value
        return row_hash(link.prev_hash, link.table, payload)
    except (ValueError, TypeError):
        return None


def verify_chain(conn: Connection, chain: str) -> VerifyReport:
    """Walk ``chain`` on ``conn`` (inside one snapshot transaction) and report on it."""
    head = conn.execute(
        select(ChainHead.last_seq, ChainHead.last_hash).where(ChainHead.chain == chain)
    ).one_or_none()
    if head is None:
        return VerifyReport(False, 0, ChainBroken("chain_head", 0, HEAD_MISSING))
    head_seq, head_hash = head

    links = heapq.merge(
        *(_rows(conn, i, name) for i, name in enumerate(CHAIN_TABLES)),
        key=lambda link: (link.seq, link.order),
    )
    pending: _Link | None = next(links, None)
    prev_hash, expected, count, last = GENESIS, 1, 0, None

    def broken(table: str, seq: int, reason: str) -> VerifyReport:
        return VerifyReport(False, count, ChainBroken(table, seq, reason))

    while pending is not None:
        group = [pending]
        pending = next(links, None)
        while pending is not None and pending.seq == group[0].seq:
            group.append(pending)
            pending = next(links, None)
        count += len(group)

        if len(group) > 1:
            # The genuine row links to its predecessor and is what the next link names.
            successor_prev = pending.prev_hash if pending is not None else head_hash
            genuine = next(
                (
                    r
                    for r in group
                    if r.prev_hash == prev_hash
                    and r.hash == successor_prev
                    and _recomputed(r) == r.hash
                ),
                None,
            )
            forged = next(r for r in group if r is not genuine)
            return broken(forged.table, forged.seq, DUPLICATE_SEQ)

        link = group[0]
        if _recomputed(link) != link.hash:
            return broken(link.table, link.seq, HASH_MISMATCH)
        if link.prev_hash != prev_hash:
            return broken(link.table, link.seq, PREV_MISMATCH)
        if link.seq != expected:
            return broken(link.table, link.seq, SEQ_GAP)
        if link.seq > head_seq:
            return broken(link.table, link.seq, BEYOND_HEAD)
        prev_hash, expected, last = link.hash, link.seq + 1, link

    last_seq, last_hash = (last.seq, last.hash) if last is not None else (0, GENESIS)
    if (last_seq, last_hash) != (head_seq, head_hash):
        return broken("chain_head", head_seq, HEAD_MISMATCH)
    return VerifyReport(True, count)

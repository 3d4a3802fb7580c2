"""``AuditLog``: append links to the chain, one transaction each, and read them back.

Every append locks the chain head (``SELECT … FOR UPDATE`` on Postgres; on SQLite the
transaction begins ``IMMEDIATE``, which takes the database's write lock), takes the next
``seq`` and the previous hash from it, inserts the row and moves the head, then commits.
Writers in any number of threads or processes therefore form one chain, never a fork.

With a ``Sealer`` the sensitive fields are sealed (``worker.audit.sealing``): the chained
row holds the envelope, and the wrapped data key goes into ``sealed_key`` in the same
transaction; ``unseal`` opens them for those who hold the key ring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from policies import SealedKey
from worker.audit.chain import is_digest, iso_utc, normalize_json, parse_iso_utc, row_hash
from worker.audit.db import WRITE, make_engine
from worker.audit.events import OutcomeDetails
from worker.audit.records import RolloutChangeRecord, StepRecord, TaskRecord, ToolCallRecord
from worker.audit.sealing import (
    TOOL_CALL_FIELDS,
    Sealer,
    fetch_sealed_keys,
    insert_sealed_keys,
    step_ref,
    tool_call_ref,
    unseal_value,
)
from worker.audit.tables import (
    CHAIN,
    CHAIN_TABLES,
    STEP_KINDS,
    ChainHead,
    RolloutChange,
    Step,
    Task,
    ToolCall,
)
from worker.audit.verify import VerifyReport, verify_chain
from worker.errors import AuditError

R = TypeVar("R")

Sealing = Callable[[int], tuple[dict[str, Any], list[SealedKey]]]
"""Given a new row's seq: the content columns to replace by envelopes, and their keys."""


def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


def _short(exc: SQLAlchemyError) -> str:
    """The driver's first line about ``exc``, without the SQL statement and its parameters
    (they carry task data, and the reason goes to the audit log and dead-letter headers)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(orig or exc).__name__}: {text[0] if text else ''}"[:300]


def _now() -> datetime:
    # exactly what the text column will give back, so the returned record equals a read
    return parse_iso_utc(iso_utc(datetime.now(UTC)))


class AuditLog:
    """The audit log of every task, a hash chain over ``task``, ``step`` and ``tool_call``
    (and ``rollout_change``, the departments' rollout settings)."""

    def __init__(self, engine: Engine, *, chain: str = CHAIN, sealer: Sealer | None = None) -> None:
        self.engine = engine
        self.chain = chain
        self.sealer = sealer

    @classmethod
    def from_url(cls, url: str, sealer: Sealer | None = None, **engine_kwargs: Any) -> AuditLog:
        """An audit log over the database at ``url`` (its schema must exist: ``ensure_schema``).

        With ``sealer`` it seals tool call requests and responses and steps' ``sealed=``.
        """
        return cls(make_engine(url, **engine_kwargs), sealer=sealer)

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    # -- writing -----------------------------------------------------------------------

    def append_task(
        self,
        *,
        task_id: str,
        department: str,
        query: str,
        requested_by: str,
        context: Mapping[str, Any] | None = None,
        received_at: datetime | None = None,
        sealed_context: Mapping[str, Any] | None = None,
    ) -> TaskRecord:
        """Record a task as received; a task id is recorded once.

        Each entry of ``sealed_context`` goes into ``context`` sealed (ref
        ``task/<task_id>/<name>``); without a sealer they are refused.
        """
        content = {
            "task_id": task_id,
            "department": department,
            "query": query,
            "requested_by": requested_by,
            "context": normalize_json(dict(context or {})),
            "received_at": parse_iso_utc(iso_utc(received_at)) if received_at else _now(),
        }

        def check(conn: Connection) -> None:
            if conn.execute(select(Task.seq).where(Task.task_id == task_id)).first():
                raise AuditError(f"task {task_id!r} is already in the audit log")

        if not sealed_context:
            return TaskRecord(**self._append("task", content, check))
        sealer = self._sealer_for(f"task context {', '.join(map(repr, sealed_context))}")
        plain = normalize_json(dict(sealed_context))

        def seal_context(_seq: int) -> tuple[dict[str, Any], list[SealedKey]]:
            context, keys = dict(content["context"]), []
            for name, value in plain.items():
                context[name], key = sealer.seal(value, f"task/{task_id}/{name}")
                keys.append(key)
            return {"context": context}, keys

        return TaskRecord(**self._append("task", content, check, seal_context))

    def append_step(
        self,
        *,
        task_id: str,
        index: int,
        kind: str,
        role: str | None = None,
        prompt_digest: str | None = None,
        output: str = "",
        details: Mapping[str, Any] | None = None,
        latency_ms: int | None = None,
        model: str | None = None,
        adapter: str | None = None,
        sealed: Mapping[str, Any] | None = None,
    ) -> StepRecord:
        """Record one step of a task's episode; ``prompt_digest`` is ``digest(prompt)``.

        Each entry of ``sealed`` goes into ``details`` sealed (ref ``step/<seq>/<name>``);
        an audit log without a sealer refuses them rather than store them in plain text.
        """
        if kind not in STEP_KINDS:
            raise AuditError(f"step kind {kind!r} is not one of {', '.join(STEP_KINDS)}")
        if prompt_digest is not None and not is_digest(prompt_digest):
            raise AuditError(
                "prompt_digest must be the SHA-256 hex digest of the prompt "
                "(worker.audit.digest(prompt)), never the prompt itself"
            )
        content = {
            "task_id": task_id,
            "index": index,
            "kind": kind,
            "role": role,
            "prompt_digest": prompt_digest,
            "output": output,
            "details": normalize_json(dict(details or {})),
            "latency_ms": latency_ms,
            "model": model,
            "adapter": adapter,
            "created_at": _now(),
        }
        if not sealed:
            return StepRecord(**self._append("step", content))
        sealer = self._sealer_for(f"step fields {', '.join(map(repr, sealed))}")
        clash = sorted(set(sealed) & set(content["details"]))
        if clash:
            raise AuditError(f"step fields {clash} are given both in details and in sealed")
        for name in sealed:
            if not isinstance(name, str) or not name:
                raise AuditError(f"a sealed step field needs a non-empty text name, not {name!r}")
        plain = normalize_json(dict(sealed))  # refuse what has no JSON form before locking

        def seal_details(seq: int) -> tuple[dict[str, Any], list[SealedKey]]:
            details, keys = dict(content["details"]), []
            for name, value in plain.items():
                details[name], key = sealer.seal(value, step_ref(seq, name))
                keys.append(key)
            return {"details": details}, keys

        return StepRecord(**self._append("step", content, seal=seal_details))

    def append_tool_call(
        self,
        *,
        task_id: str,
        step: int,
        idempotency_key: str,
        tool: str,
        effect: str,
        request: Mapping[str, Any],
        response: Any = None,
        ok: bool,
        error: str | None = None,
    ) -> ToolCallRecord:
        """Record a connector call and its result; an idempotency key is recorded once.

        With a sealer, ``request`` and ``response`` are stored sealed (refs
        ``tool_call/<idempotency_key>/request`` and ``…/response``).
        """
        content = {
            "task_id": task_id,
            "step": step,
            "idempotency_key": idempotency_key,
            "tool": tool,
            "effect": effect,
            "request": normalize_json(dict(request)),
            "response": normalize_json(response),
            "ok": bool(ok),
            "error": error,
            "created_at": _now(),
        }

        def check(conn: Connection) -> None:
            seq = conn.execute(
                select(ToolCall.seq).where(ToolCall.idempotency_key == idempotency_key)
            ).scalar()
            if seq is not None:
                raise AuditError(
                    f"a tool call with idempotency key {idempotency_key!r} is already in the "
                    f"audit log (seq {seq}): replay it (tool_call_by_key), do not call again"
                )

        sealer = self.sealer

        def seal(_seq: int) -> tuple[dict[str, Any], list[SealedKey]]:
            assert sealer is not None
            changes, keys = {}, []
            for name in TOOL_CALL_FIELDS:
                changes[name], key = sealer.seal(
                    content[name], tool_call_ref(idempotency_key, name)
                )
                keys.append(key)
            return changes, keys

        return ToolCallRecord(
            **self._append("tool_call", content, check, seal if sealer is not None else None)
        )

    def append_rollout_change(
        self,
        *,
        department: str,
        version: int,
        changed_by: str,
        reason: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any],
    ) -> RolloutChangeRecord:
        """Record a change of ``department``'s rollout settings as version ``version``.

        Refused when the department's latest version is not ``version - 1`` (someone
        changed it meanwhile: read it again and decide again).
        """
        content = {
            "department": department,
            "version": int(version),
            "changed_by": changed_by,
            "reason": reason,
            "before": None if before is None else normalize_json(dict(before)),
            "after": normalize_json(dict(after)),
            "created_at": _now(),
        }

        def check(conn: Connection) -> None:
            latest = conn.execute(
                select(RolloutChange.version)
                .where(RolloutChange.department == department)
                .order_by(RolloutChange.version.desc())  # type: ignore[attr-defined]
                .limit(1)
            ).scalar()
            if (latest or 0) != version - 1:
                raise AuditError(
                    f"the rollout settings of {department!r} are at version {latest or 0}, "
                    f"not {version - 1}: they changed meanwhile; read them again"
                )

        return RolloutChangeRecord(**self._append("rollout_change", content, check))

    def rollout_changes(
        self, department: str | None = None, *, latest_only: bool = False
    ) -> list[RolloutChangeRecord]:
        """Rollout changes by seq (of one department, or all); ``latest_only``: each
        department's newest change alone (the live copy)."""
        table = _table(RolloutChange)
        stmt = select(table).order_by(table.c.seq)
        if department is not None:
            stmt = stmt.where(table.c.department == department)
        rows = self._read(lambda c: c.execute(stmt).mappings().all())
        records = [RolloutChangeRecord(**r) for r in rows]
        if latest_only:
            return list({r.department: r for r in records}.values())
        return records

    def rollout_latest(self, departments: Sequence[str]) -> dict[str, RolloutChangeRecord]:
        """The newest change of each of ``departments`` that has one (one query)."""
        table = _table(RolloutChange)
        newest = (
            select(table.c.department, func.max(table.c.version).label("version"))
            .where(table.c.department.in_(list(departments)))
            .group_by(table.c.department)
            .subquery()
        )
        stmt = select(table).join(
            newest,
            (table.c.department == newest.c.department) & (table.c.version == newest.c.version),
        )
        rows = self._read(lambda c: c.execute(stmt).mappings().all())
        return {r["department"]: RolloutChangeRecord(**r) for r in rows}

    def _sealer_for(self, what: str) -> Sealer:
        if self.sealer is None:
            raise AuditError(
                f"refusing to record {what} in plain text: this audit log has no key ring "
                "to seal them; build it with AuditLog(..., sealer=Sealer(load_keyring()))"
            )
        return self.sealer

    def _append(
        self,
        table: str,
        content: dict[str, Any],
        check: Callable[[Connection], None] | None = None,
        seal: Sealing | None = None,
    ) -> dict[str, Any]:
        """Append a row to the chain; ``seal(seq)`` gives sealed columns and their keys,
        which are inserted into ``sealed_key`` in the same transaction."""
        model: type[SQLModel] = CHAIN_TABLES[table]
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    head = conn.execute(
                        select(ChainHead.last_seq, ChainHead.last_hash)
                        .where(ChainHead.chain == self.chain)
                        .with_for_update()
                    ).one_or_none()
                    if head is None:
                        raise AuditError(
                            f"the audit chain {self.chain!r} has no head: "
                            "the schema is not initialized, run `umiq db upgrade`"
                        )
                    if check is not None:
                        check(conn)
                    last_seq, prev_hash = head
                    keys: list[SealedKey] = []
                    if seal is not None:
                        changes, keys = seal(last_seq + 1)
                        content = {**content, **changes}
                    row = {"seq": last_seq + 1, **content}
                    row["prev_hash"] = prev_hash
                    row["hash"] = row_hash(prev_hash, table, {"seq": last_seq + 1, **content})
                    conn.execute(insert(_table(model)).values(**row))
                    if keys:
                        when = content.get("created_at") or content["received_at"]
                        insert_sealed_keys(conn, keys, when)
                    conn.execute(
                        update(ChainHead)
                        .where(ChainHead.chain == self.chain)
                        .values(last_seq=row["seq"], last_hash=row["hash"])
                    )
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot append to the audit log ({table}): {_short(exc)}") from exc
        return row

    # -- reading -----------------------------------------------------------------------

    def _read(self, fn: Callable[[Connection], R]) -> R:
        try:
            with self.engine.connect() as conn, conn.begin():
                return fn(conn)
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log: {_short(exc)}") from exc

    def task(self, task_id: str) -> TaskRecord | None:
        """The task ``task_id`` as received, or None."""
        stmt = select(_table(Task)).where(Task.task_id == task_id)
        rows = self._read(lambda c: c.execute(stmt).mappings().all())
        return TaskRecord(**rows[0]) if rows else None

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        """The ``limit`` most recently received tasks, newest first."""
        stmt = select(_table(Task)).order_by(_table(Task).c.seq.desc()).limit(limit)
        return [TaskRecord(**r) for r in self._read(lambda c: c.execute(stmt).mappings().all())]

    def steps(self, task_id: str) -> list[StepRecord]:
        """The steps of task ``task_id`` in the order they were recorded."""
        stmt = select(_table(Step)).where(Step.task_id == task_id).order_by(Step.seq)
        return [StepRecord(**r) for r in self._read(lambda c: c.execute(stmt).mappings().all())]

    def tool_calls(self, task_id: str) -> list[ToolCallRecord]:
        """The tool calls of task ``task_id`` in the order they were recorded."""
        stmt = select(_table(ToolCall)).where(ToolCall.task_id == task_id).order_by(ToolCall.seq)
        rows = self._read(lambda c: c.execute(stmt).mappings().all())
        return [ToolCallRecord(**r) for r in rows]

    def tool_call_by_key(self, idempotency_key: str) -> ToolCallRecord | None:
        """The committed tool call with ``idempotency_key`` (to replay it), or None."""
        stmt = select(_table(ToolCall)).where(ToolCall.idempotency_key == idempotency_key)
        rows = self._read(lambda c: c.execute(stmt).mappings().all())
        return ToolCallRecord(**rows[0]) if rows else None

    def outcome(self, task_id: str) -> dict[str, Any] | None:
        """How task ``task_id`` ended, shaped like ``EpisodeResult.as_dict()``; None if open."""
        steps = self.steps(task_id)
        last = next((s for s in reversed(steps) if s.kind == "outcome"), None)
        if last is None:
            return None
        ended = OutcomeDetails.from_details(last.details)
        return {
            "task_id": task_id,
            "outcome": ended.outcome,
            "answer": last.output,
            "reason": ended.reason if ended.reason is not None else "",
            "tokens": ended.tokens if ended.tokens is not None else 0,
            "steps": [
                {"index": s.index, "kind": s.kind, "text": s.output, "details": s.details}
                for s in steps
            ],
        }

    def unseal(self, value: Any, *, ref: str | None = None) -> Any:
        """``value`` with its sealed envelopes opened, using the key ring and ``sealed_key``.

        ``value`` may be a tool call or step record (or a list of them): their sealed
        fields are opened, each only with the key of the place it is in, so an envelope
        moved from another row raises ``SealError``. In any other JSON value every envelope
        is opened as the record it names (or as ``ref``, when ``value`` is one envelope).
        Values without envelopes come back unchanged; envelopes without a key ring raise
        ``AuditError``.
        """
        return unseal_value(
            self.sealer,
            value,
            lambda refs: self._read(lambda c: fetch_sealed_keys(c, refs)),
            ref=ref,
        )

    def head(self) -> tuple[int, str]:
        """The chain head: the last ``seq`` and its hash (``0`` and GENESIS when empty)."""
        stmt = select(ChainHead.last_seq, ChainHead.last_hash).where(ChainHead.chain == self.chain)
        row = self._read(lambda c: c.execute(stmt).one_or_none())
        if row is None:
            raise AuditError(f"the audit chain {self.chain!r} has no head: run `umiq db upgrade`")
        return int(row[0]), str(row[1])

    def verify(self) -> VerifyReport:
        """Walk the whole chain by seq, recompute every hash, and name the first broken row."""
        try:
            with self.engine.connect() as conn:
                if conn.dialect.name == "postgresql":  # one snapshot for rows and head
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    return verify_chain(conn, self.chain)
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log: {exc}") from exc

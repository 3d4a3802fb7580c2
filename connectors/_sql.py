"""A connector for a SQL database that offers a fixed set of named, parameterized queries.

No free SQL ever reaches the database: each tool is one ``SqlQuery`` declared in code —
a description, JSON-schema parameters, an effect, SQL with bound parameters only
(SQLAlchemy ``text()``), and for reads the shape of the result (one record or a list,
and its fields). The caller model chooses a query and its arguments, nothing else.

A write runs its guards, its statements and its result query in one transaction and
records the result under the idempotency key in a table of the target database
(``umiq_idempotency``), in the same transaction: a repeated key replays the recorded
result and writes nothing; a key reused for different arguments is refused. On SQLite
the transaction begins ``IMMEDIATE``, so guards see exactly the state the write changes.

Declaring queries (``SqlQuery``, ``SqlGuard``) is pure; only ``SqlConnector`` does I/O.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import importlib
import importlib.util
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc

from connectors._base import Effect, ToolCall, ToolResult, ToolSpec
from connectors._errors import (
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    InvalidArguments,
    UnknownTool,
)
from connectors._schema import validate_arguments

Shape = Literal["one", "many"]

IDEMPOTENCY_TABLE = "umiq_idempotency"
_SCALARS = {"string", "integer", "number", "boolean", "null"}
_READ_START = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


@dataclass(frozen=True)
class SqlGuard:
    """A reason to refuse a write: when ``sql`` returns a row, the write does not happen.

    ``message`` is formatted with the arguments and the row's columns, e.g.
    ``"leave request {request_id} is {status}, not pending"``.
    """

    sql: str
    message: str


@dataclass(frozen=True)
class SqlQuery:
    """One tool: a named SQL query with bound parameters, declared in code.

    ``sql`` is one SELECT for a read, or the statements of a write (run in order, in one
    transaction). ``returns`` and ``fields`` give the shape of a read's result: ``one``
    record (none found is a refusal worded by ``not_found``) or ``many``, each with
    exactly ``fields``. A write answers with the row(s) of ``result_sql`` in that same
    shape, or ``{"rows_affected": n}`` without one. Arguments the caller leaves out are
    bound as NULL, so optional filters read ``(:status IS NULL OR status = :status)``.
    """

    name: str
    description: str
    sql: str | Sequence[str]
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    effect: Effect = "read"
    returns: Shape = "many"
    fields: Sequence[str] = ()
    result_sql: str | None = None
    guards: Sequence[SqlGuard] = ()
    not_found: str = ""

    def __post_init__(self) -> None:
        statements = (self.sql,) if isinstance(self.sql, str) else tuple(self.sql)
        object.__setattr__(self, "sql", statements)
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "guards", tuple(self.guards))
        parameters = {"additionalProperties": False, **self.parameters}
        object.__setattr__(self, "parameters", parameters)
        self.spec()  # name, effect and schema type are checked there
        where = f"query {self.name}"
        if not statements:
            raise ValueError(f"{where}: no SQL")
        if self.returns not in ("one", "many"):
            raise ValueError(f"{where}: returns must be 'one' or 'many'")
        if self.effect == "read":
            if len(statements) != 1 or not _READ_START.match(statements[0]):
                raise ValueError(f"{where}: a read is one SELECT (or WITH … SELECT)")
            if not self.fields:
                raise ValueError(f"{where}: a read declares the fields of its result")
            if self.result_sql or self.guards:
                raise ValueError(f"{where}: result_sql and guards are for writes")
        elif self.result_sql is not None and not self.fields:
            raise ValueError(f"{where}: result_sql needs the fields of its result")
        properties = parameters.get("properties", {})
        for arg, schema in properties.items():
            kinds = schema.get("type", "string")
            kinds = {kinds} if isinstance(kinds, str) else set(kinds)
            if not kinds <= _SCALARS:
                raise ValueError(f"{where}: argument {arg!r} must be a scalar to be bound")
        for sql in self._all_sql():
            unknown = sorted(set(_bind_names(sql)) - set(properties))
            if unknown:
                raise ValueError(f"{where}: SQL binds {unknown} that are not parameters")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SqlQuery:
        """A query from plain JSON (``guards`` as ``[{"sql", "message"}]``)."""
        data = dict(raw)
        data["guards"] = [SqlGuard(**g) for g in data.get("guards", ())]
        return cls(**data)

    def spec(self, connector: str = "") -> ToolSpec:
        """The tool the caller model sees; its description names the result's fields."""
        description = self.description.strip()
        if self.fields:
            what = "one record" if self.returns == "one" else "a list of records"
            description += f" Returns {what} with: {', '.join(self.fields)}."
        return ToolSpec(
            name=self.name,
            description=description,
            parameters=self.parameters,
            effect=self.effect,
            connector=connector,
        )

    def _all_sql(self) -> list[str]:
        extra = [self.result_sql] if self.result_sql else []
        return [*self.sql, *(g.sql for g in self.guards), *extra]

    def _binds(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return {arg: arguments.get(arg) for arg in self.parameters.get("properties", {})}


def _bind_names(sql: str) -> list[str]:
    return list(text(sql).compile().params)


class _Refused(Exception):
    """A write refused before it changed anything (a guard, a constraint, no record)."""


class _KeyTaken(Exception):
    """Another call recorded the idempotency key first."""


class SqlConnector:
    """A connector to a SQL database whose tools are the declared ``queries``.

    ``url`` is a SQLAlchemy URL (``sqlite:///…``, ``postgresql+psycopg://…``). The
    engine connects lazily; an unreachable database raises ConnectorUnavailable on the
    first call, not here.
    """

    def __init__(
        self,
        name: str,
        url: str,
        queries: Sequence[SqlQuery],
        *,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.url = url
        self._queries: dict[str, SqlQuery] = {}
        for query in queries:
            if query.name in self._queries:
                raise ValueError(f"connector {name!r}: query {query.name!r} is declared twice")
            self._queries[query.name] = query
        self._timeout = timeout
        self._sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {}
        if self._sqlite:
            options["connect_args"] = {"timeout": timeout, "check_same_thread": False}
        elif url.startswith("postgresql"):
            options["connect_args"] = {"connect_timeout": max(1, int(timeout))}
        self._engine = create_engine(url, **options)
        if self._sqlite:
            event.listen(self._engine, "connect", _sqlite_connect)
            event.listen(self._engine, "begin", _sqlite_begin)
        self._table_ready = False

    @classmethod
    def from_config(
        cls,
        name: str,
        url: str,
        queries: str | Sequence[Mapping[str, Any] | SqlQuery],
        timeout: float = 10.0,
    ) -> SqlConnector:
        """A connector from plain settings: ``queries`` is ``"module:ATTR"``, a ``.py``
        file (``path.py`` or ``path.py:ATTR``, ATTR defaulting to ``QUERIES``), a
        ``.json`` file of query objects, or a list of query objects.
        """
        return cls(name, url, load_queries(queries), timeout=timeout)

    def tools(self) -> Sequence[ToolSpec]:
        """One tool per declared query."""
        return [query.spec(self.name) for query in self._queries.values()]

    def invoke(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        """Validate ``call``, run its query with bound parameters, and return the result.

        Nothing found for a ``one`` read, a guard's refusal and a constraint the write
        breaks come back ``ok=False`` with the reason; an unreachable or locked database
        raises ConnectorUnavailable (ConnectorTimeout when locked).
        """
        query = self._queries.get(call.tool)
        if query is None:
            known = ", ".join(self._queries) or "none"
            raise UnknownTool(
                f"connector {self.name!r} has no tool {call.tool!r} (it has: {known})"
            )
        try:
            validate_arguments(query.parameters, call.arguments)
        except InvalidArguments as exc:
            raise InvalidArguments(f"{call.tool}: {exc}") from exc
        binds = query._binds(call.arguments)
        if query.effect == "read":
            return self._read(query, binds)
        if not idempotency_key:
            raise ConnectorError(
                f"refusing write {call.tool!r} without an idempotency key: a retried task "
                "could repeat it"
            )
        return self._write(query, binds, dict(call.arguments), idempotency_key)

    def dry_run(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        """Validate ``call`` as ``invoke`` would and check its guards on the live data,
        without writing (a department in shadow): the data is what would run."""
        query = self._queries.get(call.tool)
        if query is None:
            known = ", ".join(self._queries) or "none"
            raise UnknownTool(
                f"connector {self.name!r} has no tool {call.tool!r} (it has: {known})"
            )
        try:
            validate_arguments(query.parameters, call.arguments)
        except InvalidArguments as exc:
            raise InvalidArguments(f"{call.tool}: {exc}") from exc
        binds = query._binds(call.arguments)
        if query.effect == "read":
            return self._read(query, binds)
        with self._translate(query.name), self._engine.connect() as conn:
            for guard in query.guards:
                row = conn.execute(text(guard.sql), binds).mappings().first()
                if row is not None:
                    conn.rollback()
                    return ToolResult(ok=False, error=_format(guard.message, binds, row))
            conn.rollback()
        would_send = {
            "statements": list(query.sql),
            "parameters": {k: _json_value(v) for k, v in binds.items()},
            "idempotency_key": idempotency_key,
        }
        return ToolResult(ok=True, data={"dry_run": True, "sent": False, "would_send": would_send})

    def close(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    def __enter__(self) -> SqlConnector:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- reads and writes ---------------------------------------------------------------

    def _read(self, query: SqlQuery, binds: dict[str, Any]) -> ToolResult:
        with self._translate(query.name), self._engine.connect() as conn:
            rows = conn.execute(text(query.sql[0]), binds).mappings().all()
            conn.rollback()
        try:
            return ToolResult(ok=True, data=_shape(query, rows))
        except _Refused as exc:
            return ToolResult(ok=False, error=_format(query.not_found, binds, {}) or str(exc))

    def _write(
        self, query: SqlQuery, binds: dict[str, Any], arguments: dict[str, Any], key: str
    ) -> ToolResult:
        canonical = json.dumps({"tool": query.name, "arguments": arguments}, sort_keys=True)
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        self._ensure_table()
        try:
            with self._translate(query.name), self._begin_write() as conn:
                replay = self._recorded(conn, query, key, fingerprint)
                if replay is not None:
                    return replay
                for guard in query.guards:
                    row = conn.execute(text(guard.sql), binds).mappings().first()
                    if row is not None:
                        raise _Refused(_format(guard.message, binds, row))
                affected = 0
                for sql in query.sql:
                    try:
                        affected += max(conn.execute(text(sql), binds).rowcount, 0)
                    except sa_exc.IntegrityError as exc:
                        raise _Refused(
                            f"{query.name} would break a rule of the database: {exc.orig}"
                        ) from exc
                if query.result_sql is not None:
                    rows = conn.execute(text(query.result_sql), binds).mappings().all()
                    data = _shape(query, rows)
                else:
                    data = {"rows_affected": affected}
                try:
                    conn.execute(
                        text(
                            f"INSERT INTO {IDEMPOTENCY_TABLE} (key, tool, fingerprint, result) "
                            "VALUES (:key, :tool, :fingerprint, :result)"
                        ),
                        {
                            "key": key,
                            "tool": query.name,
                            "fingerprint": fingerprint,
                            "result": json.dumps(data),
                        },
                    )
                except sa_exc.IntegrityError as exc:
                    raise _KeyTaken from exc  # rolls back the statements above
        except _Refused as exc:
            return ToolResult(ok=False, error=str(exc))
        except _KeyTaken:
            with self._translate(query.name), self._engine.connect() as conn:
                replay = self._recorded(conn, query, key, fingerprint)
            if replay is None:  # pragma: no cover - the key was there a moment ago
                raise ConnectorError(f"{self.name}: idempotency key {key!r} vanished") from None
            return replay
        return ToolResult(ok=True, data=data)

    def _recorded(
        self, conn: Any, query: SqlQuery, key: str, fingerprint: str
    ) -> ToolResult | None:
        row = conn.execute(
            text(f"SELECT tool, fingerprint, result FROM {IDEMPOTENCY_TABLE} WHERE key = :key"),
            {"key": key},
        ).first()
        if row is None:
            return None
        if row.fingerprint != fingerprint:
            return ToolResult(
                ok=False,
                error=f"idempotency key {key!r} was already used for a different request "
                f"({row.tool}); use a new key",
            )
        return ToolResult(ok=True, data=json.loads(row.result))

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        with self._translate("the idempotency table"), self._engine.begin() as conn:
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {IDEMPOTENCY_TABLE} ("
                    "key VARCHAR(200) PRIMARY KEY, tool VARCHAR(100) NOT NULL, "
                    "fingerprint CHAR(64) NOT NULL, result TEXT NOT NULL)"
                )
            )
        self._table_ready = True

    @contextmanager
    def _begin_write(self) -> Iterator[Any]:
        with self._engine.connect() as conn:
            if self._sqlite:
                conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """SQLAlchemy's errors as connector errors, naming the database and the call."""
        try:
            yield
        except sa_exc.OperationalError as exc:
            message = str(exc.orig)
            if "locked" in message or "timeout" in message.lower():
                raise ConnectorTimeout(
                    f"{self.name}: {what}: the database stayed busy for {self._timeout}s "
                    f"({message})"
                ) from exc
            raise ConnectorUnavailable(f"{self.name}: {what}: {message}") from exc
        except (sa_exc.InterfaceError, sa_exc.DisconnectionError) as exc:
            raise ConnectorUnavailable(f"{self.name}: cannot reach the database: {exc}") from exc
        except sa_exc.TimeoutError as exc:
            raise ConnectorTimeout(f"{self.name}: no free database connection: {exc}") from exc
        except sa_exc.SQLAlchemyError as exc:
            raise ConnectorError(f"{self.name}: {what} failed: {exc}") from exc


def load_queries(source: str | Sequence[Mapping[str, Any] | SqlQuery]) -> list[SqlQuery]:
    """Queries from ``"module:ATTR"``, a ``.py`` or ``.json`` file, or a list."""
    if not isinstance(source, str):
        items: Any = source
    elif source.endswith(".json"):
        items = json.loads(Path(source).read_text())
    elif ".py" in source:
        path, _, attr = source.partition(".py")
        spec = importlib.util.spec_from_file_location(Path(path).stem, path + ".py")
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load queries from {source!r}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        items = getattr(module, attr.lstrip(":") or "QUERIES")
    else:
        module_name, _, attr = source.partition(":")
        if not attr:
            raise ValueError(f"queries {source!r}: expected 'module:ATTR' or a file path")
        items = importlib.import_module(module_name)
        for part in attr.split("."):
            items = getattr(items, part)
    return [q if isinstance(q, SqlQuery) else SqlQuery.from_dict(q) for q in items]


def _shape(query: SqlQuery, rows: Sequence[Mapping[str, Any]]) -> Any:
    records = []
    for row in rows:
        missing = [f for f in query.fields if f not in row]
        if missing:
            raise ConnectorError(f"query {query.name}: the result has no column(s) {missing}")
        records.append({f: _json_value(row[f]) for f in query.fields})
    if query.returns == "many":
        return records
    if not records:
        raise _Refused(f"{query.name}: nothing found")
    return records[0]


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _format(message: str, binds: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    try:
        return message.format_map({**binds, **dict(row)})
    except (KeyError, IndexError, ValueError):
        return message


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # let SQLAlchemy's "begin" event say how a transaction starts (IMMEDIATE for writes)
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

"""The live Acme systems as the task catalogue, the expert and the checkers see them.

A ``World`` routes tool calls to the connectors of the running systems, puts them back
to their seed (``reset``), and takes snapshots of their state through their own read
tools, so that a checker can tell exactly what a task changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors import Connector, ToolCall, ToolResult, ToolSpec


class WorldError(RuntimeError):
    """A system of the sample back office did not answer as its seed data promises."""


@dataclass
class World:
    """Running systems: ``connectors`` by system name, ``reset`` puts them back to the seed.

    ``baseline`` is the snapshot taken by the last ``reset`` (the state every task
    starts from); ``inspect`` optionally adds state that no read tool shows (the
    mailbox), keyed by section.
    """

    connectors: dict[str, Connector]
    reset_systems: Callable[[], None]
    inspect: Callable[[], dict[str, Any]] | None = None
    baseline: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._route: dict[str, str] = {}
        self._specs: dict[str, ToolSpec] = {}
        for system, connector in self.connectors.items():
            for spec in connector.tools():
                if spec.name in self._route:
                    raise WorldError(f"tool {spec.name!r} is offered by two systems")
                self._route[spec.name] = system
                self._specs[spec.name] = spec

    # -- tools --------------------------------------------------------------------

    @property
    def systems(self) -> tuple[str, ...]:
        """The names of the running systems."""
        return tuple(self.connectors)

    def has_tool(self, name: str) -> bool:
        """Whether some system offers the tool ``name``."""
        return name in self._specs

    def spec(self, tool: str) -> ToolSpec:
        """The spec of ``tool`` (WorldError when no running system offers it)."""
        if tool not in self._specs:
            raise WorldError(f"no running system offers the tool {tool!r}")
        return self._specs[tool]

    def specs(self, systems: Iterable[str] | None = None) -> list[ToolSpec]:
        """The tools of ``systems`` (all systems when None), system by system."""
        wanted = self.systems if systems is None else tuple(systems)
        return [spec for spec in self._specs.values() if self._route[spec.name] in wanted]

    def invoke(self, tool: str, arguments: Mapping[str, Any], key: str = "") -> ToolResult:
        """Call ``tool`` on the system that offers it; writes need an idempotency ``key``."""
        if tool not in self._route:
            raise WorldError(f"no running system offers the tool {tool!r}")
        return self.connectors[self._route[tool]].invoke(ToolCall(tool, dict(arguments)), key)

    def read(self, tool: str, **arguments: Any) -> Any:
        """The data of a read that must succeed (seed facts, snapshots)."""
        result = self.invoke(tool, arguments)
        if not result.ok:
            raise WorldError(f"{tool}({arguments}) failed: {result.error}")
        return result.data

    # -- state --------------------------------------------------------------------

    def reset(self) -> None:
        """Put every system back to its seed and record the new baseline."""
        self.reset_systems()
        self.baseline = self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """Every record a task may change, keyed by section then record id."""
        state: dict[str, Any] = {}
        for section, (tool, key) in _SECTIONS.items():
            if self.has_tool(tool):
                state[section] = {row[key]: row for row in self.read(tool)}
        if self.inspect is not None:
            state.update(self.inspect())
        return json.loads(json.dumps(state, default=str))

    def changes(self) -> dict[str, dict[str, Any]]:
        """What differs from the baseline: ``{section: {id: new row or None}}``."""
        now = self.snapshot()
        diff: dict[str, dict[str, Any]] = {}
        for section in sorted(set(now) | set(self.baseline)):
            before, after = self.baseline.get(section, {}), now.get(section, {})
            changed = {
                key: after.get(key)
                for key in sorted(set(before) | set(after), key=str)
                if before.get(key) != after.get(key)
            }
            if changed:
                diff[section] = changed
        return diff

    def close(self) -> None:
        """Close connectors that can be closed."""
        for connector in self.connectors.values():
            close = getattr(connector, "close", None)
            if close is not None:
                close()


# section -> (list tool, id field): the state a snapshot reads through the systems' tools
_SECTIONS: dict[str, tuple[str, str]] = {
    "invoices": ("list_invoices", "id"),
    "payments": ("list_payments", "id"),
    "credit_notes": ("list_credit_notes", "id"),
    "leave_requests": ("list_leave_requests", "id"),
}


def docs(specs: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """The α-UMi docs of ``specs``, as a trajectory's ``tools`` field lists them."""
    return [spec.alpha_umi_doc() for spec in specs]


@contextmanager
def running_world(data_dir: str | Path, *, seed: int = 0) -> Iterator[World]:
    """Start the sample back office in ``data_dir`` for ``seed``, reset, and stop it after.

    Uses ``examples.acme.serve.start_acme`` (ERP, HR and mail) where it exists and the
    ERP alone otherwise.
    """
    from examples.acme import serve

    start_acme = getattr(serve, "start_acme", None)
    if start_acme is None:
        from connectors import HttpConnector

        with serve.start_erp(Path(data_dir), seed=seed) as erp:
            world = World({"erp": HttpConnector.from_url("erp", erp.url)}, erp.reset)
            try:
                world.reset()
                yield world
            finally:
                world.close()
        return
    office = start_acme(Path(data_dir), seed=seed)
    try:
        built = office.build_connectors()
        connectors = built if isinstance(built, Mapping) else {c.name: c for c in built}
        world = World(dict(connectors), office.reset, _office_inspector(office))
        try:
            world.reset()
            yield world
        finally:
            world.close()
    finally:
        stop = getattr(office, "stop", None) or getattr(office, "close", None)
        if stop is not None:
            stop()


def _office_inspector(office: Any) -> Callable[[], dict[str, Any]] | None:
    """The mailbox as a snapshot section, if the back office lets us read it."""
    read_mail = getattr(office, "messages", None) or getattr(office, "mailbox", None)
    if read_mail is None:
        return None

    def inspect() -> dict[str, Any]:
        messages = read_mail() if callable(read_mail) else read_mail
        return {"mail": {str(i): _message(m) for i, m in enumerate(messages)}}

    return inspect


def _message(message: Any) -> dict[str, Any]:
    if isinstance(message, Mapping):
        return dict(message)
    return {k: v for k, v in vars(message).items() if not k.startswith("_")}


@contextmanager
def in_process_world(data_dir: str | Path, *, seed: int = 0) -> Iterator[World]:
    """The ERP app called in-process and the HR database (no server, no socket), for fast
    unit tests; there is no mail server, so the mail families are unavailable.

    The same apps, connectors and observations as ``running_world``; only the ERP's
    transport differs (Starlette's test client).
    """
    from fastapi.testclient import TestClient

    from connectors import HttpConnector
    from examples.acme.erp import ErpDatabase, create_app

    database = ErpDatabase(Path(data_dir) / "erp.sqlite3", seed=seed)
    resets: list[Callable[[], None]] = [database.reset]
    connectors: dict[str, Connector] = {}
    try:
        from connectors import SqlConnector
        from examples.acme.hr import HrDatabase
        from examples.acme.serve import HR_QUERIES
    except ImportError:  # a checkout without the HR system
        pass
    else:
        hr = HrDatabase(Path(data_dir) / "hr.sqlite3", seed=seed)
        connectors["hr"] = SqlConnector.from_config(name="hr", url=hr.url, queries=HR_QUERIES)
        resets.append(hr.reset)

    def reset_all() -> None:
        for reset in resets:
            reset()

    with TestClient(create_app(database)) as client:
        erp = HttpConnector.from_url("erp", str(client.base_url), client=client)
        world = World({"erp": erp, **connectors}, reset_all)
        try:
            world.reset()
            yield world
        finally:
            world.close()

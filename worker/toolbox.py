"""The tools a worker can reach: connectors built from settings, indexed by tool name."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors import CircuitBreaker, Connector, Resilient, ToolSpec, UnknownTool
from worker.errors import ConfigError

# kombu-style lazy registry: a connector kind resolves to its class on first use.
CONNECTOR_KINDS: dict[str, str] = {
    "http": "connectors._http:HttpConnector.from_url",
    "smtp": "connectors._smtp:SmtpConnector",
    "sql": "connectors._sql:SqlConnector.from_config",
}


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


#: Settings of a connector that shape its retries and circuit breaker, with defaults:
#: tries per call, consecutive failures that open the circuit, seconds it stays open.
RESILIENCE_OPTIONS = {"retry_attempts": 3, "breaker_failures": 5, "breaker_reset_s": 30.0}


def build_connector(name: str, config: Mapping[str, Any]) -> Connector:
    """Build one connector from its settings (``kind`` plus keyword arguments).

    It comes wrapped in ``connectors.Resilient``: retryable failures are tried again
    with backoff, and a circuit breaker fails calls fast while the system is down
    (``retry_attempts``, ``breaker_failures``, ``breaker_reset_s`` tune them).
    """
    options = dict(config)
    kind = options.pop("kind", None)
    if kind not in CONNECTOR_KINDS:
        known = ", ".join(sorted(CONNECTOR_KINDS))
        raise ConfigError(f"connector {name!r}: unknown kind {kind!r} (known: {known})")
    tuning = {key: options.pop(key, default) for key, default in RESILIENCE_OPTIONS.items()}
    try:
        attempts = int(tuning["retry_attempts"])
        breaker = CircuitBreaker(
            name,
            failures=int(tuning["breaker_failures"]),
            reset_after=float(tuning["breaker_reset_s"]),
        )
        if attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"connector {name!r}: {exc}") from exc
    inner = _resolve(CONNECTOR_KINDS[kind])(name=name, **options)
    return Resilient(inner, attempts=attempts, breaker=breaker)


@dataclass
class Toolbox:
    """Tool specs of all connectors, and which connector serves each tool."""

    connectors: Sequence[Connector]

    def __post_init__(self) -> None:
        self._by_tool: dict[str, tuple[ToolSpec, Connector]] = {}
        for connector in self.connectors:
            for spec in connector.tools():
                if spec.name in self._by_tool:
                    other = self._by_tool[spec.name][1].name
                    raise ConfigError(
                        f"tool {spec.name!r} is offered by both {other!r} and {connector.name!r}"
                    )
                self._by_tool[spec.name] = (spec, connector)

    @classmethod
    def from_settings(cls, connectors: Mapping[str, Mapping[str, Any]]) -> Toolbox:
        return cls([build_connector(name, cfg) for name, cfg in connectors.items()])

    def specs(self) -> list[ToolSpec]:
        return [spec for spec, _ in self._by_tool.values()]

    def spec(self, tool: str) -> ToolSpec:
        try:
            return self._by_tool[tool][0]
        except KeyError:
            raise UnknownTool(f"no connector offers a tool named {tool!r}") from None

    def connector_for(self, tool: str) -> Connector:
        self.spec(tool)
        return self._by_tool[tool][1]

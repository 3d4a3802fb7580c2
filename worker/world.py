"""The world protocol: a back office as evaluation, data building and the demo see it.

umiq never imports a back office. A *world* (Acme, in ``examples/acme``, is one) plugs
in by name, the way role-model backends do: ``settings.world`` (``UMIQ_WORLD``) is an
alias of :data:`WORLDS` or a ``"package.module:attribute"`` path, resolved on first use
by :func:`load_world`; the attribute is the world object or a factory returning it.

A world gives umiq four things:

- **defaults**: the worker settings it runs with when nothing overrides them
  (``settings()``: departments, minimization, scope), read by ``worker.settings``;
- **services**: ``start(data_dir, seed=…)`` serves its systems and yields an
  :class:`Office` (the ``UMIQ_CONNECTORS`` that reach them, the people's names in their
  records, and :class:`Systems`, the state a task is checked against);
- **task families and their checkers**: ``families``, ``draw`` (task instances per
  split), ``solve`` (a scripted expert's gold trajectory), ``check`` (did a finished
  task leave the systems and the answer as expected) and ``demo`` (the demo's tasks);
- **a CLI group**: ``register_cli(app)`` adds its commands to ``umiq`` (e.g. ``umiq acme``).

Everything is structural (``typing.Protocol``): a world imports nothing of umiq's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

from worker.errors import ConfigError

WORLDS: dict[str, str] = {
    "acme": "examples.acme.world:world",
}
"""World alias → ``module:attribute`` (a world, or a factory of one), imported on first use."""

DEFAULT_WORLD = "acme"


class Instance(Protocol):
    """One task of a family: the instruction a user sends and what a right result is."""

    uid: str
    family: str
    instruction: str
    template: int
    slots: Mapping[str, Any]
    expected: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]: ...


class Solution(Protocol):
    """The expert's solution of an instance: its gold trajectory (ToolBench form)."""

    trajectory: dict[str, Any]
    answer: str
    outcome: str


class Verdict(Protocol):
    """A checked task: passed or not, every reason, and the reasons by kind.

    ``answer_reasons`` are about the answer's facts, ``give_up_reasons`` about a give-up
    (or a "does not exist" answer) that no empty lookup earned; the other reasons are
    about the systems' state. Evaluation names a failure's cause from them.
    """

    passed: bool
    reasons: Sequence[str]
    answer_reasons: Sequence[str]
    give_up_reasons: Sequence[str]


class Systems(Protocol):
    """A world's systems, running: the state a task is checked against.

    ``baseline`` is the snapshot every check compares with (taken by ``reset``).
    """

    baseline: Any

    def reset(self) -> None:
        """Put every system back to its seed and take the new baseline."""

    def snapshot(self) -> Any:
        """The systems' state now."""

    def changes(self) -> Mapping[str, Any]:
        """What differs from the baseline."""

    def specs(self) -> Sequence[Any]:
        """The tools the systems offer (each with ``name`` and ``effect``)."""

    def close(self) -> None:
        """Close the connectors."""


class Office(Protocol):
    """A world's services, started: what a worker needs to reach them."""

    systems: Systems

    def connectors_config(self) -> dict[str, dict[str, Any]]:
        """The ``UMIQ_CONNECTORS`` setting that reaches the running systems."""

    def known_names(self) -> list[str]:
        """Full names of the people in the systems' records (for the name detector)."""

    def describe(self) -> list[str]:
        """One line per service: what it is and where it answers."""


class Demo(Protocol):
    """What ``umiq demo`` runs: which systems it serves and which tasks it sends."""

    systems: tuple[str, ...]
    checked_against: str
    """How the demo's summary names what the tasks were checked against."""

    def tasks(self, systems: Systems) -> list[Instance]:
        """The demo's tasks, their expected results read from the running ``systems``."""


class World(Protocol):
    """A back office that umiq can be evaluated, trained and demonstrated on."""

    name: str
    expert_error: type[Exception]
    """What ``solve`` raises when its expert cannot solve an instance."""
    demo: Demo

    def settings(self) -> Mapping[str, Any]:
        """Default worker settings (``departments``, ``minimization``, ``scope``) as plain
        data, used where the environment sets none."""

    def register_cli(self, app: Any) -> None:
        """Add the world's command group to the ``umiq`` typer ``app``."""

    def start(
        self, data_dir: Path, *, seed: int = 0, systems: Sequence[str] | None = None
    ) -> AbstractContextManager[Office]:
        """Serve the systems (all, or those named) from ``data_dir``, reset to ``seed``."""

    def families(self, systems: Systems | None = None) -> list[str]:
        """The task families: all, or those the running ``systems`` offer tools for."""

    def family(self, family: str) -> Mapping[str, Any]:
        """What a family is: ``kind``, ``systems`` and ``needs_tools``."""

    def department_for(self, family: str) -> str:
        """The department whose tasks ``family``'s are."""

    def draw(
        self,
        systems: Systems,
        *,
        seed: int,
        per_family: int,
        families: Iterable[str],
        splits: Mapping[str, int] | None = None,
    ) -> dict[str, list[Instance]]:
        """Task instances per split (``train``, ``dev``, ``test``), seeded, from the
        records of the freshly reset ``systems``."""

    def combination(self, instance: Instance) -> str:
        """The slot combination ``instance`` was drawn from (held-out splits share none
        with train)."""

    def solve(
        self, systems: Systems, instance: Instance, *, seed: int = 0, view: Any = None
    ) -> Solution:
        """The expert's solution of ``instance`` on ``systems`` (at their baseline); with
        ``view`` (a ``Guard``), the trajectory shows what the model would see."""

    def check(
        self,
        instance: Instance,
        systems: Systems,
        answer: str,
        calls: Iterable[Any] | None = None,
        *,
        trajectory: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """Check a finished task against the systems' state and its ``answer`` (``""``
        for a give-up). ``calls`` are the agent's audit ``tool_call`` rows, or
        ``trajectory`` a gold trajectory whose calls are read instead; with neither the
        task is judged by its outside alone."""


def load_world(name: str | None = None) -> World:
    """The world named ``name`` (an alias of :data:`WORLDS` or ``"module:attribute"``);
    default: ``settings.world``.

    Raises ConfigError saying what is wrong: no world configured, a malformed name, a
    module that does not import, a missing attribute, or an object that is no world.
    """
    if name is None:
        from worker.settings import get_settings

        name = get_settings().world
    if not name:
        raise ConfigError(
            "no world is configured: set UMIQ_WORLD to a back office "
            f"(one of {', '.join(sorted(WORLDS))}, or 'package.module:world')"
        )
    return _load(name)


@lru_cache(maxsize=8)
def _load(name: str) -> World:
    target = WORLDS.get(name, name)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise ConfigError(
            f"world {name!r} is neither one of {', '.join(sorted(WORLDS))} "
            "nor 'package.module:attribute'"
        )
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"world {name!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        found = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"world {name!r}: {module_name!r} has no {attr!r}") from None
    world = found() if isinstance(found, type) or (_missing(found) and callable(found)) else found
    missing = _missing(world)
    if missing:
        raise ConfigError(
            f"world {name!r}: {target!r} is not a world (see worker.world.World): "
            f"it lacks {', '.join(missing)}"
        )
    return world  # type: ignore[no-any-return]


def _missing(candidate: Any) -> list[str]:
    """The members of :class:`World` that ``candidate`` lacks.

    Looked up on its class and instance dict, so that a lazy property (Acme's
    ``expert_error``) is not evaluated, as ``isinstance(candidate, World)`` would.
    """
    own = getattr(candidate, "__dict__", {})
    members = [m for m in _WORLD_MEMBERS if m not in own]
    return [m for m in members if not hasattr(type(candidate), m)]


_WORLD_MEMBERS = (
    "name",
    "expert_error",
    "demo",
    "settings",
    "register_cli",
    "start",
    "families",
    "family",
    "department_for",
    "draw",
    "combination",
    "solve",
    "check",
)


def world_settings(name: str | None) -> dict[str, Any]:
    """The default settings of world ``name`` (``{}`` for none), for ``worker.settings``."""
    if not name:
        return {}
    return dict(_load(name).settings())

"""Acme as a umiq world (``worker.world.World``): ``UMIQ_WORLD=acme``, the default.

Its defaults are ``examples.acme.defaults``, its services ``examples.acme.serve``, its
task families, expert and checkers ``examples.acme.tasks``, its CLI group ``umiq acme``
(``examples.acme.cli``). Importing this module loads none of the services or families:
``worker.settings`` reads the defaults through it on every start.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.acme import defaults

ALL_SYSTEMS = ("erp", "hr", "mail")


@dataclass(frozen=True)
class Verdict:
    """A checked task: ``check``'s result with its answer and give-up reasons apart."""

    passed: bool
    reasons: tuple[str, ...] = ()
    answer_reasons: tuple[str, ...] = ()
    give_up_reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.passed


@dataclass
class Office:
    """Started Acme services: the ``World`` over them and how a worker reaches them."""

    systems: Any
    config: dict[str, dict[str, Any]]
    data_dir: Path
    lines: list[str] = field(default_factory=list)

    def connectors_config(self) -> dict[str, dict[str, Any]]:
        return {name: dict(value) for name, value in self.config.items()}

    def known_names(self) -> list[str]:
        from examples.acme.serve import known_names

        return known_names(self.data_dir)

    def describe(self) -> list[str]:
        return list(self.lines)


@dataclass(frozen=True)
class DemoTask:
    """A demo query and the catalogue family and slots that say what a right result is."""

    query: str
    family: str
    slots: dict[str, Any] = field(default_factory=dict)


# Phrasings from the Acme catalogue's held-out test split: the shipped adapters never
# saw them in training.
DEMO_TASKS: list[DemoTask] = [
    DemoTask(
        "Could you look up invoice INV-1004 and tell me its status?",
        "invoice_status",
        {"invoice_id": "INV-1004"},
    ),
    DemoTask(
        "Which country does vendor V-0042 come from?", "vendor_country", {"vendor_id": "V-0042"}
    ),
    DemoTask(
        "Schedule INV-1012 for payment on 2025-03-17.",
        "schedule_payment",
        {"invoice_id": "INV-1012", "date": "2025-03-17"},
    ),
    DemoTask("Check the amount of INV-2003 for me.", "unknown_invoice", {"invoice_id": "INV-2003"}),
]


class AcmeDemo:
    """The demo serves the ERP alone and sends four finance tasks."""

    systems = ("erp",)
    checked_against = "the ERP"

    def tasks(self, systems: Any) -> list[Any]:
        from examples.acme.tasks import FAMILIES, Facts, TaskInstance

        facts = Facts.gather(systems)
        instances = []
        for task in DEMO_TASKS:
            family = FAMILIES[task.family]
            template = family.template_of(task.query, task.slots)
            instances.append(
                TaskInstance(
                    task.family,
                    task.query,
                    dict(task.slots),
                    family.expected(facts, task.slots, template),
                )
            )
        return instances


class AcmeWorld:
    """The Acme sample back office: ERP, HR database and mail; finance and hr."""

    name = "acme"

    def __init__(self) -> None:
        self.demo = AcmeDemo()

    @property
    def expert_error(self) -> type[Exception]:
        from examples.acme.tasks import ExpertError

        return ExpertError

    def settings(self) -> dict[str, Any]:
        return defaults.settings()

    def register_cli(self, app: Any) -> None:
        from examples.acme.cli import register

        register(app)

    @contextmanager
    def start(
        self, data_dir: Path, *, seed: int = 0, systems: Sequence[str] | None = None
    ) -> Iterator[Office]:
        wanted = tuple(systems) if systems is not None else ALL_SYSTEMS
        if wanted == ("erp",):
            with self._start_erp(Path(data_dir), seed) as office:
                yield office
            return
        if set(wanted) != set(ALL_SYSTEMS):
            raise ValueError(f"Acme serves the ERP alone or {', '.join(ALL_SYSTEMS)}, not {wanted}")
        with self._start_all(Path(data_dir), seed) as office:
            yield office

    @contextmanager
    def _start_erp(self, data_dir: Path, seed: int) -> Iterator[Office]:
        from connectors import HttpConnector
        from examples.acme.serve import start_erp
        from examples.acme.tasks import World

        with start_erp(data_dir, seed=seed) as erp:
            world = World({"erp": HttpConnector.from_url("erp", erp.url)}, erp.reset)
            try:
                world.reset()
                lines = [f"ERP service: {erp.url}  (OpenAPI tools from {erp.url}/openapi.json)"]
                yield Office(world, {"erp": {"kind": "http", "base_url": erp.url}}, data_dir, lines)
            finally:
                world.close()

    @contextmanager
    def _start_all(self, data_dir: Path, seed: int) -> Iterator[Office]:
        from examples.acme.serve import start_acme
        from examples.acme.tasks import World

        office = start_acme(data_dir, seed=seed)
        try:

            def mailbox() -> dict[str, Any]:
                return {"mail": {str(i): dict(m) for i, m in enumerate(office.messages())}}

            world = World(dict(office.build_connectors()), office.reset, mailbox)
            try:
                world.reset()
                lines = [
                    f"ERP service: {office.erp.url}  (OpenAPI: {office.erp.url}/openapi.json)",
                    f"HR database: {office.hr.url}",
                    f"Mail: smtp://{office.mail.address}",
                ]
                yield Office(world, office.connectors_config(), data_dir, lines)
            finally:
                world.close()
        finally:
            office.stop()

    # -- task families ------------------------------------------------------------------

    def families(self, systems: Any = None) -> list[str]:
        from examples.acme.tasks import FAMILIES, available_families

        return list(FAMILIES) if systems is None else available_families(systems)

    def family(self, family: str) -> dict[str, Any]:
        from examples.acme.tasks import FAMILIES

        fam = FAMILIES[family]
        return {"kind": fam.kind, "systems": list(fam.systems), "needs_tools": fam.needs_tools}

    def department_for(self, family: str) -> str:
        from examples.acme.tasks import department_for

        return department_for(family)

    def draw(
        self,
        systems: Any,
        *,
        seed: int,
        per_family: int,
        families: Iterable[str],
        splits: Mapping[str, int] | None = None,
    ) -> dict[str, list[Any]]:
        from examples.acme.tasks import Facts, generate

        return generate(
            Facts.gather(systems),
            seed=seed,
            per_family=per_family,
            families=list(families),
            splits=splits,
        )

    def combination(self, instance: Any) -> str:
        from examples.acme.tasks.catalogue import FAMILIES, combination_key

        return combination_key(instance.slots, FAMILIES[instance.family].key)

    def solve(self, systems: Any, instance: Any, *, seed: int = 0, view: Any = None) -> Any:
        from examples.acme.tasks import solve

        return solve(systems, instance, seed=seed, view=view)

    def check(
        self,
        instance: Any,
        systems: Any,
        answer: str,
        calls: Iterable[Any] | None = None,
        *,
        trajectory: Mapping[str, Any] | None = None,
    ) -> Verdict:
        from examples.acme.tasks import FAMILIES, check
        from examples.acme.tasks.checkers import (
            answer_reasons,
            give_up_reasons,
            observed_calls,
            observed_in_trajectory,
        )

        observed = (
            observed_calls(calls)
            if calls is not None
            else observed_in_trajectory(trajectory)
            if trajectory is not None
            else None
        )
        result = check(instance, systems, answer, observed)
        give_up = (
            give_up_reasons(instance.expected, FAMILIES[instance.family].needs_tools, observed)
            if observed is not None
            and (not answer or instance.expected.get("not_found"))
            and instance.family in FAMILIES
            else []
        )
        return Verdict(
            result.passed,
            tuple(result.reasons),
            tuple(answer_reasons(instance.expected, answer)),
            tuple(give_up),
        )


#: The world ``UMIQ_WORLD=acme`` names (``worker.world.WORLDS``).
world = AcmeWorld()

"""Which tasks a live run evaluates, and the expert's trajectories of the same tasks."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

from worker.data.build import model_view
from worker.errors import ConfigError
from worker.world import Instance, Systems, World, load_world


def select_tasks(
    systems: Systems,
    *,
    split: str,
    seed: int,
    per_family: int,
    families: Sequence[str],
    limit: int | None = None,
    world: World | None = None,
) -> list[Instance]:
    """The split's instances of ``world`` (default: the configured one) drawn from the
    freshly reset ``systems``, round-robin over ``families``, the first ``limit`` of them."""
    world = world or load_world()
    drawn = world.draw(
        systems, seed=seed, per_family=per_family, families=families, splits={split: per_family}
    )[split]
    by_family: dict[str, list[Instance]] = {}
    for instance in drawn:
        by_family.setdefault(instance.family, []).append(instance)
    ordered = [
        instance
        for round_ in itertools.zip_longest(*by_family.values())
        for instance in round_
        if instance is not None
    ]
    return ordered[:limit] if limit is not None else ordered


def choose_families(world: World, systems: Systems, wanted: Sequence[str] | None) -> list[str]:
    """``wanted`` (all the running systems serve when none), refused with a reason when
    the world does not know a family or the running systems lack its tools."""
    available = world.families(systems)
    if not wanted:
        return available
    known = world.families()
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise ConfigError(f"unknown task families: {', '.join(unknown)}; known: {', '.join(known)}")
    missing = [f for f in wanted if f not in available]
    if missing:
        raise ConfigError(f"the running systems lack tools for: {', '.join(missing)}")
    return list(wanted)


def write_split_trajectories(
    path: Path,
    *,
    split: str,
    seed: int,
    per_family: int,
    families: Sequence[str] | None = None,
    limit: int | None = None,
    work_dir: Path | None = None,
    world: World | None = None,
) -> int:
    """Write the expert's trajectories of the tasks ``run_live`` would run; return how many.

    The same instances in the same order, so ``eval static`` on this file and ``eval
    live`` with the same options cover the same tasks.
    """
    import tempfile

    world = world or load_world()
    with (
        tempfile.TemporaryDirectory(prefix="umiq-eval-", dir=work_dir) as tmp,
        world.start(Path(tmp), seed=seed) as office,
    ):
        systems = office.systems
        chosen = choose_families(world, systems, families)
        instances = select_tasks(
            systems,
            split=split,
            seed=seed,
            per_family=per_family,
            families=chosen,
            limit=limit,
            world=world,
        )
        names = office.known_names()
        trajectories = []
        for instance in instances:
            systems.reset()
            view = model_view(instance.family, names, world=world)
            trajectories.append(world.solve(systems, instance, seed=seed, view=view).trajectory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trajectories, indent=2, ensure_ascii=False), encoding="utf-8")
    return len(trajectories)

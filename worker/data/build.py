"""Build training data from a world (``worker.world``; Acme by default): gold
trajectories from its scripted expert, checked.

``build_dataset`` starts the world's systems fresh in a temporary folder, draws task
instances from its families, has the expert solve each one on the live systems
(resetting them between tasks), checks every result with the world's checker, and
writes:

- ``train.json``, ``dev.json``, ``test.json``: trajectories in the normalised ToolBench
  form; dev and test hold out whole phrasings and slot combinations (asserted: no dev or
  test instruction, phrasing or combination occurs in train);
- ``tasks_<split>.json``: the instances behind them, in the same order (family, slots,
  expected facts and writes), for live evaluation;
- ``train_<role>.json`` for planner, caller, summarizer and backbone:
  ``role_samples(..., reference_quirks=False)`` of the train trajectories;
- ``stats.json``: tasks per family, samples per role, token lengths.

Trajectories show what the role models see at inference (``model_view``, the default):
the policies of the department that owns each task (``UMIQ_*`` settings, defaults
otherwise) tokenize personal data in the instruction, thoughts, arguments and answers,
minimize every observation, and limit ``tools`` to what the department may use. So
the models learn on ``<NAME_1>`` and projected records, not on raw values they never
see. ``model_view=False`` writes the raw records.

Any checker failure stops the build (``BuildError``): gold data is right or absent.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.agent.views import recall_at_k, view_of
from worker.data.samples import ROLES, role_samples
from worker.errors import BuildError
from worker.world import World, load_world

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("train", "dev", "test")


@dataclass
class BuildResult:
    """What a build wrote and its statistics."""

    out: Path
    trajectories: dict[str, list[dict[str, Any]]]
    instances: dict[str, list[Any]]
    stats: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]


def model_view(
    family: str, known_names: Sequence[str], settings: Any = None, *, world: World | None = None
) -> Any:
    """A fresh :class:`~worker.agent.guard.Guard` of the department that owns ``family``
    (in ``world``, default: the configured one): what the worker shows the model of one
    such task (``known_names``: the people in the systems' records, for the name
    detector)."""
    from worker.agent.guard import Guard
    from worker.settings import Settings

    base = settings if settings is not None else Settings()
    department = (world or load_world(base.world or "")).department_for(family)
    names = [*base.pii_known_names, *known_names]
    view_settings = base.model_copy(update={"pii_known_names": names})
    return Guard.for_department(view_settings, department)


def build_dataset(
    out: str | Path,
    *,
    seed: int = 0,
    per_family: int = 20,
    families: Iterable[str] | None = None,
    splits: Mapping[str, int] | None = None,
    progress: Progress | None = None,
    view: bool = True,
    world: World | None = None,
    restate: bool = False,
) -> BuildResult:
    """Generate, solve, check and write ``world``'s dataset (default: the configured
    world's) under ``out`` (see the module)."""
    from worker.agent.views import COMPACT, PromptView

    world = world or load_world()
    out = Path(out)
    started = time.perf_counter()
    prompt_view = PromptView(COMPACT, restate=restate)
    with (
        tempfile.TemporaryDirectory(prefix=f"umiq-{world.name}-") as tmp,
        world.start(Path(tmp), seed=seed) as office,
    ):
        systems = office.systems
        chosen = list(families) if families is not None else world.families(systems)
        names = office.known_names()
        instances = world.draw(
            systems, seed=seed, per_family=per_family, families=chosen, splits=splits
        )
        assert_disjoint(instances, world=world)
        total = sum(len(items) for items in instances.values())
        trajectories: dict[str, list[dict[str, Any]]] = {split: [] for split in instances}
        outcomes: dict[str, list[str]] = {split: [] for split in instances}
        failures: list[str] = []
        done = 0
        for split, items in instances.items():
            for instance in items:
                systems.reset()
                shown = model_view(instance.family, names, world=world) if view else None
                solution = world.solve(systems, instance, seed=seed, view=shown)
                if view:
                    solution.trajectory["prompt_view"] = prompt_view.spec()
                result = world.check(
                    instance, systems, solution.answer, trajectory=solution.trajectory
                )
                if not result.passed:
                    failures.append(f"{instance.uid} ({instance.instruction!r}): {result.reasons}")
                trajectories[split].append(solution.trajectory)
                outcomes[split].append(solution.outcome)
                done += 1
                if progress is not None:
                    progress(instance.family, done, total)
        systems.reset()
    if failures:
        raise BuildError(
            f"{len(failures)} of {total} gold trajectories fail their checker:\n"
            + "\n".join(failures[:20])
        )
    out.mkdir(parents=True, exist_ok=True)
    for split, items in trajectories.items():
        _dump(out / f"{split}.json", items)
        tasks = [
            {**inst.as_dict(), "outcome": outcome}
            for inst, outcome in zip(instances[split], outcomes[split], strict=True)
        ]
        _dump(out / f"tasks_{split}.json", tasks)
    samples = split_roles(trajectories.get("train", []))
    for role, rows in samples.items():
        _dump(out / f"train_{role}.json", rows)
    stats = statistics_of(
        instances, trajectories, samples, seed=seed, per_family=per_family, world=world
    )
    stats["model_view"] = view
    if view:
        stats["retrieval"] = {
            split: recall_at_k(items, view_of(items[0]) if items else prompt_view)
            for split, items in trajectories.items()
        }
    stats["seconds"] = round(time.perf_counter() - started, 1)
    _dump(out / "stats.json", stats)
    return BuildResult(out, trajectories, instances, stats)


def split_roles(trajectories: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Role samples of ``trajectories`` with every prompt as the live agent builds it."""
    out: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    for trajectory in trajectories:
        for role, rows in role_samples(dict(trajectory), reference_quirks=False).items():
            out[role].extend(rows)
    return out


def assert_disjoint(instances: Mapping[str, Sequence[Any]], *, world: World | None = None) -> None:
    """Raise BuildError if a dev or test instruction, phrasing or slot combination is in
    train (``world``, default the configured one, names an instance's combination)."""
    world = world or load_world()

    def seen(split: str) -> tuple[set[str], set[tuple[str, int]], set[tuple[str, str]]]:
        items = instances.get(split, [])
        return (
            {i.instruction for i in items},
            {(i.family, i.template) for i in items},
            {(i.family, world.combination(i)) for i in items},
        )

    train = seen("train")
    for split in ("dev", "test"):
        held = seen(split)
        for what, a, b in zip(
            ("instruction", "phrasing", "slot combination"), train, held, strict=True
        ):
            leak = a & b
            if leak:
                raise BuildError(
                    f"{len(leak)} {what}(s) of {split} also occur in train: {sorted(leak)[:3]}"
                )


# -- statistics -----------------------------------------------------------------------------


def tokenizer() -> tuple[Callable[[str], int], str]:
    """A token counter and its name: the base model's tokenizer if it is on disk, else words.

    Looks in ``<repo>/.umiq/models/smollm2-135m-instruct`` and in the configured model
    store; it never downloads (a data build should not fetch a model).
    """
    candidates = [REPO / ".umiq" / "models" / "smollm2-135m-instruct"]
    try:
        from worker.settings import get_settings

        settings = get_settings()
        candidates.append(settings.resolved_model_dir() / settings.base_model)
    except Exception:  # settings are optional for statistics
        pass
    found = next((f for f in candidates if (f / "tokenizer.json").is_file()), None)
    if found is not None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(found / "tokenizer.json"))
        return (lambda text: len(tok.encode(text, add_special_tokens=False).ids)), str(found)
    return (lambda text: len(text.split())), "whitespace (no base tokenizer on disk)"


def _summary(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "mean": round(statistics.fmean(ordered), 1),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def statistics_of(
    instances: Mapping[str, Sequence[Any]],
    trajectories: Mapping[str, Sequence[Mapping[str, Any]]],
    samples: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    seed: int,
    per_family: int,
    world: World | None = None,
) -> dict[str, Any]:
    """Counts and token lengths of a build, as ``stats.json`` records them."""
    world = world or load_world()
    count, tokenizer_name = tokenizer()
    per_family_split: dict[str, dict[str, int]] = {}
    for split, items in instances.items():
        for family, n in Counter(i.family for i in items).items():
            per_family_split.setdefault(family, {})[split] = n
    return {
        "seed": seed,
        "per_family": per_family,
        "tokenizer": tokenizer_name,
        "tasks": {split: len(items) for split, items in instances.items()},
        "families": {
            fid: {
                "kind": world.family(fid)["kind"],
                "systems": list(world.family(fid)["systems"]),
                **per_family_split[fid],
            }
            for fid in per_family_split
        },
        "outcomes": {
            split: dict(Counter(_ending(t) for t in items)) for split, items in trajectories.items()
        },
        "turns_per_trajectory": {
            split: _summary([len(t["conversations"]) for t in items])
            for split, items in trajectories.items()
        },
        "tool_calls_per_trajectory": {
            split: _summary([sum(c["from"] == "caller" for c in t["conversations"]) for t in items])
            for split, items in trajectories.items()
        },
        "train_samples": {role: len(rows) for role, rows in samples.items()},
        "train_tokens": {
            role: {
                "input": _summary([count(r["input"]) for r in rows]),
                "target": _summary([count(r["target"]) for r in rows]),
            }
            for role, rows in samples.items()
        },
    }


def _ending(trajectory: Mapping[str, Any]) -> str:
    last = trajectory["conversations"][-1]
    return "answered" if last["from"] == "conclusion" else "gave_up"


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

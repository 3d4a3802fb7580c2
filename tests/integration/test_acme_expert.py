"""The scripted expert on the real Acme systems: every gold trajectory passes its checker."""

from __future__ import annotations

import json
import random

import pytest

from examples.acme.tasks import (
    FAMILIES,
    Facts,
    available_families,
    check,
    generate,
    running_world,
    solve,
)
from worker.agent import protocol
from worker.data.build import build_dataset, split_roles

SEED = random.randrange(1_000_000)


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """A few instances per family, solved on fresh systems with a random seed."""
    with running_world(tmp_path_factory.mktemp("acme"), seed=SEED) as world:
        families = available_families(world)
        drawn = generate(
            Facts.gather(world),
            seed=SEED,
            per_family=1,
            families=families,
            splits={"train": 1, "test": 1},
        )
        results = []
        for instance in [i for items in drawn.values() for i in items]:
            world.reset()
            solution = solve(world, instance, seed=SEED)
            results.append((instance, solution, check(instance, world, solution.answer)))
        yield families, results


def test_expert_passes_its_checker_on_every_task(solved):
    """Every generated task, in every family, is solved by the expert as its checker wants."""
    _families, results = solved
    failures = [(i.uid, i.instruction, r.reasons) for i, _s, r in results if not r.passed]
    assert not failures, f"seed {SEED}: {failures}"


def test_every_family_is_exercised(solved):
    """The run covers every family the running systems support, the mail ones included."""
    families, results = solved
    assert {i.family for i, _s, _r in results} == set(families)
    assert any("mail" in FAMILIES[fam].systems for fam in families)


def test_role_split_yields_parsable_samples(solved):
    """Planner, caller and summarizer samples exist, parse, and carry the live prompts."""
    _families, results = solved
    samples = split_roles([s.trajectory for _i, s, _r in results])
    assert samples["planner"] and samples["caller"] and samples["summarizer"]
    for sample in samples["planner"]:
        plan = protocol.parse_planner(sample["target"])
        assert plan.thought == sample["target"]
        assert sample["input"] == protocol.planner_prompt(sample["tools"], sample["history"])
    for sample in samples["caller"]:
        call = protocol.parse_caller(sample["target"])
        assert call.tool in {tool["Name"] for tool in sample["tools"]}
        thought = sample["history"][-1]["value"]
        assert sample["input"] == protocol.caller_prompt(
            sample["tools"], sample["history"], thought
        )
    for sample in samples["summarizer"]:
        assert sample["input"] == protocol.summarizer_prompt(sample["history"])


def test_build_writes_checked_splits(tmp_path):
    """build_dataset writes the splits, the role files and statistics for a small catalogue."""
    families = ["invoice_status", "pay_if_matches", "unknown_vendor", "approve_and_notify"]
    result = build_dataset(tmp_path, seed=SEED, per_family=2, families=families)
    for name in ("train", "dev", "test", "train_planner", "train_caller", "stats"):
        assert (tmp_path / f"{name}.json").is_file()
    train = json.loads((tmp_path / "train.json").read_text())
    assert len(train) == 8 and set(train[0]) == {"tools", "instruction", "conversations"}
    assert set(result.stats["families"]) == set(families)

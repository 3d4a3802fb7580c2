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
from examples.acme.tasks.checkers import observed_in_trajectory
from policies import check_claims
from worker.agent import protocol
from worker.agent.episode import claims_evidence
from worker.data.build import build_dataset, split_roles
from worker.data.samples import ROLES

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
            observed = observed_in_trajectory(solution.trajectory)
            verdict = check(instance, world, solution.answer, observed)
            results.append((instance, solution, verdict))
        held = []
        for instance in [i for items in drawn.values() for i in items]:
            world.reset()
            held += _held_by_the_default_policies(world, instance)
        world.reset()
        yield families, results, {s.name for s in world.specs() if s.effect == "write"}, held


class _PolicedWorld:
    """The world, with every call first put to the guard of the task's department, as
    the worker does before a connector runs (approval rules, outbound mail, scope)."""

    def __init__(self, world, guard, uid):
        self._world, self._guard, self.held = world, guard, []
        self._uid = uid

    def __getattr__(self, name):
        return getattr(self._world, name)

    def invoke(self, tool, arguments, key=""):
        decision = self._guard.check_approval(self._world.spec(tool), dict(arguments), key)
        if not decision.allowed:
            self.held.append((self._uid, tool, decision.reasons))
        return self._world.invoke(tool, arguments, key)


def _held_by_the_default_policies(world, instance):
    from worker.data.build import model_view

    guard = model_view(instance.family, [])
    guard.set_request(instance.instruction)
    policed = _PolicedWorld(world, guard, instance.uid)
    solve(policed, instance, seed=SEED, view=guard)
    return policed.held


def test_expert_passes_its_checker_on_every_task(solved):
    """Every generated task, in every family, is solved by the expert as its checker wants."""
    _families, results, _writes, _held = solved
    failures = [(i.uid, i.instruction, r.reasons) for i, _s, r in results if not r.passed]
    assert not failures, f"seed {SEED}: {failures}"


def test_no_expert_answer_is_held_for_an_unbacked_claim(solved):
    """The claims check reads every family's expert answer as backed: the changes it
    states were made by its own writes or read in its own observations."""
    _families, results, writes, _held = solved
    held = []
    for instance, solution, _verdict in results:
        if not solution.answer:
            continue
        done, seen = claims_evidence(solution.trajectory["conversations"], writes)
        decision = check_claims(solution.answer, writes=done, responses=seen)
        if not decision.allowed:
            held.append((instance.uid, solution.answer, decision.reasons))
    assert not held, f"seed {SEED}: {held}"
    assert any(solution.answer for _i, solution, _v in results)


def test_default_policies_hold_no_expert_call(solved):
    """Under the default department policies (approval rules, outbound mail, scope) no
    call of any family's gold trajectory waits for a human: the catalogue's legitimate
    tasks run, mail to the company and its vendors included."""
    *_rest, held = solved
    assert not held, f"seed {SEED}: {held}"


def test_every_family_is_exercised(solved):
    """The run covers every family the running systems support, the mail ones included."""
    families, results, _writes, _held = solved
    assert {i.family for i, _s, _r in results} == set(families)
    assert any("mail" in FAMILIES[fam].systems for fam in families)


def test_role_split_yields_parsable_samples(solved):
    """Planner, caller and summarizer samples exist, parse, and carry the live prompts."""
    _families, results, _writes, _held = solved
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
    assert len(train) == 8
    assert set(train[0]) == {"tools", "instruction", "conversations", "prompt_view"}
    assert train[0]["prompt_view"] == {"name": "compact", "top_k": 6}
    assert set(result.stats["families"]) == set(families)


def test_build_shows_the_model_tokens_not_personal_data(tmp_path):
    """The default build writes what the worker shows the model: HR tasks name people by
    token in every turn, no known person's name or e-mail appears in any split or role
    file, and HR trajectories offer the HR department's tools; ``view=False`` keeps the
    raw records."""
    from examples.acme.serve import known_names

    families = ["leave_balance", "manager_of", "vendor_country"]
    viewed = build_dataset(tmp_path / "view", seed=SEED, per_family=2, families=families)
    raw = build_dataset(tmp_path / "raw", seed=SEED, per_family=2, families=families, view=False)
    assert viewed.stats["model_view"] is True and raw.stats["model_view"] is False

    with running_world(tmp_path / "acme", seed=SEED):
        names = known_names(tmp_path / "acme")
    # What the models train and are scored on; tasks_<split>.json keep the raw facts the
    # checkers compare with, as the systems do.
    shown = ["train", "dev", "test", *(f"train_{role}" for role in ROLES)]
    raw_text = "".join((tmp_path / "raw" / f"{n}.json").read_text() for n in shown)
    seen_text = "".join((tmp_path / "view" / f"{n}.json").read_text() for n in shown)
    assert [n for n in names if n in raw_text], "the raw build names the people it works on"
    assert not [n for n in names if n in seen_text]
    assert "<NAME_1>" in seen_text
    pairs = zip(viewed.instances["train"], viewed.trajectories["train"], strict=True)
    hr = [t for inst, t in pairs if "hr" in FAMILIES[inst.family].systems]
    assert hr
    for trajectory in hr:
        assert {d["Name"] for d in trajectory["tools"]} >= {"find_employee", "send_email"}

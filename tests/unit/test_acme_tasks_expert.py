"""The scripted expert: trajectory shape, determinism and idempotent writes."""

from __future__ import annotations

import itertools

import pytest

from examples.acme.tasks import Facts, available_families, check, generate, solve
from examples.acme.tasks.checkers import observed_in_trajectory
from examples.acme.tasks.world import in_process_world
from worker.agent import protocol


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with in_process_world(tmp_path_factory.mktemp("acme"), seed=21) as running:
        yield running


@pytest.fixture(scope="module")
def drawn(world):
    facts = Facts.gather(world)
    splits = generate(facts, seed=4, per_family=1, families=available_families(world))
    return [i for items in splits.values() for i in items]


def first(drawn, family):
    return next(i for i in drawn if i.family == family)


def test_expert_passes_every_in_process_family(world, drawn):
    """Every family the in-process world supports is solved as its checker wants."""
    failures = []
    for inst in drawn:
        world.reset()
        solution = solve(world, inst)
        # judged with what its own calls returned, as a live episode is
        observed = observed_in_trajectory(solution.trajectory)
        result = check(inst, world, solution.answer, observed)
        if not result.passed:
            failures.append((inst.uid, result.reasons))
    assert not failures


def test_trajectory_follows_the_protocol(world, drawn):
    """Turns alternate as the live loop produces them, with the reference markers."""
    world.reset()
    turns = solve(world, first(drawn, "pay_if_matches")).trajectory["conversations"]
    assert turns[0]["from"] == "user"
    for i, turn in enumerate(turns[1:], start=1):
        if turn["from"] == "assistant":
            assert turn["value"].endswith(("\n Next: caller.", "\n Next: conclusion."))
            assert turns[i + 1]["from"] == (
                "caller" if "caller." in turn["value"] else "conclusion"
            )
        elif turn["from"] == "caller":
            call = protocol.parse_caller(turn["value"])
            assert turn["value"] == protocol.format_caller(call.tool, call.arguments)
            assert turns[i + 1]["from"] == "observation"
    assert turns[-1]["from"] == "conclusion"


def test_give_up_ends_with_the_give_up_marker(world, drawn):
    """Work none of the department's tools can do ends with Next: give up, no call made."""
    world.reset()
    solution = solve(world, first(drawn, "out_of_scope"))
    turns = solution.trajectory["conversations"]
    assert turns[-1]["value"].endswith("\n Next: give up.")
    assert [t["from"] for t in turns] == ["user", "assistant"]
    assert solution.outcome == "gave_up" and solution.answer == ""


def test_a_missing_record_ends_with_an_answer(world, drawn):
    """A task on an unknown invoice looks it up and answers that it does not exist."""
    world.reset()
    inst = first(drawn, "unknown_invoice")
    solution = solve(world, inst)
    turns = solution.trajectory["conversations"]
    assert turns[-2]["value"].endswith("\n Next: conclusion.")
    assert turns[-2]["value"].startswith("Nothing was found.")
    assert solution.outcome == "answered" and inst.slots["invoice_id"] in solution.answer


def test_same_instance_same_trajectory(world, drawn):
    """Solving an instance twice from the baseline yields the same trajectory."""
    inst = first(drawn, "schedule_payment")
    world.reset()
    once = solve(world, inst).trajectory
    world.reset()
    assert solve(world, inst).trajectory == once


def test_replayed_writes_are_not_repeated(world, drawn):
    """Solving a payment task twice without a reset replays the write instead of repeating it."""
    inst = first(drawn, "schedule_payment")
    world.reset()
    once = solve(world, inst).trajectory
    again = solve(world, inst).trajectory
    assert again == once
    assert check(inst, world, solve(world, inst).answer).passed


def test_tools_offered_are_those_of_the_family_systems(world, drawn):
    """An HR task's trajectory offers the HR tools and no ERP tool."""
    world.reset()
    tools = {t["Name"] for t in solve(world, first(drawn, "leave_balance")).trajectory["tools"]}
    assert "get_leave_balance" in tools and "get_invoice" not in tools


def test_model_view_trains_on_what_the_worker_shows(world, drawn):
    """With the department's view, a trajectory holds tokens and minimized records where
    the raw one holds personal data; its calls resolve back to the raw calls; the
    answer the checker sees stays raw."""
    import json

    from examples.acme.defaults import MINIMIZATION as ACME_MINIMIZATION
    from worker.data.build import model_view

    inst = first(drawn, "vendor_country")
    world.reset()
    raw = solve(world, inst)
    vendor = world.read("get_vendor", vendor_id=inst.slots["vendor_id"])
    secrets = [vendor["contact_name"], vendor["email"], vendor["iban"]]
    assert all(s in json.dumps(raw.trajectory) for s in secrets)

    world.reset()
    view = model_view(inst.family, [vendor["contact_name"]])
    seen = solve(world, inst, view=view)
    text = json.dumps(seen.trajectory, ensure_ascii=False)
    assert not [s for s in secrets if s in text]
    assert "<NAME_1>" in text and "<EMAIL_1>" in text
    observed = [
        json.loads(t["value"])["response"]
        for t in seen.trajectory["conversations"]
        if t["from"] == "observation"
    ]
    assert set(observed[0]) == set(ACME_MINIMIZATION["erp:get_vendor"])
    assert [d["Name"] for d in seen.trajectory["tools"]] == [
        s.name for s in view.allowed_tools(world.specs())
    ]
    assert seen.answer == raw.answer and check(inst, world, seen.answer).passed
    raw_calls = [
        protocol.parse_caller(t["value"])
        for t in raw.trajectory["conversations"]
        if t["from"] == "caller"
    ]
    for t, want in zip(
        (t for t in seen.trajectory["conversations"] if t["from"] == "caller"),
        raw_calls,
        strict=True,
    ):
        resolved, decision = view.resolve(protocol.parse_caller(t["value"]).arguments)
        assert decision.allowed and resolved == want.arguments


def test_a_thought_before_a_call_names_that_tool_and_no_other(world, drawn):
    """Each thought that leads to a call ends by naming the tool called, and names no
    other tool of the department (the recap of the last observation names none)."""
    world.reset()
    solution = solve(world, first(drawn, "schedule_payment"))
    turns = solution.trajectory["conversations"]
    names = [tool["Name"] for tool in solution.trajectory["tools"]]
    calls = 0
    for thought, call in itertools.pairwise(turns):
        if thought["from"] != "assistant" or call["from"] != "caller":
            continue
        calls += 1
        tool = call["value"].split("\n")[0].removeprefix("Action: ")
        text = thought["value"].split("\n")[0]
        assert text.endswith(f"I'll use {tool}."), text
        assert [n for n in names if n in text.replace(tool, "")] == [], text
    assert calls >= 2

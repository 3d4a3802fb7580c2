"""The client's choice of engine slot (worker.models.slots) and how requests carry it.

The engine's real prompt cache across adapter switches is exercised against llama-server
in tests/integration/test_engine_llamacpp.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.unit.test_models_engine import FakeLlamaServer, llama
from worker.agent.roles import GenerationRequest
from worker.errors import ConfigError, ModelError
from worker.models.slots import Choice, SlotTable, shared_prefix, slot_ids

DOCS = "You have access to get_invoice, schedule_payment.\n"


def serve(table: SlotTable, role: str, prompt: str, cached: str) -> Choice:
    """A request that took a slot for ``prompt`` and left ``cached`` in it."""
    choice = table.acquire(role, prompt)
    table.release(choice.slot, role, cached)
    return choice


def test_a_request_takes_the_slot_its_own_role_filled_with_the_longest_shared_prefix() -> None:
    table = SlotTable(3)
    history = DOCS + "user: pay INV-1 assistant: get it"
    planner = serve(table, "planner", DOCS + "user: pay INV-1", history)
    caller = serve(table, "caller", history + " caller:", history + " caller: x")
    assert caller.slot != planner.slot and caller.reason == "empty"

    again = table.acquire("planner", DOCS + "user: pay INV-1 assistant: get it caller: x obs")
    assert again.slot == planner.slot and again.reason == "prefix"
    assert again.shared == len(DOCS + "user: pay INV-1 assistant: get it")


def test_the_caller_slot_is_never_chosen_for_a_planner_prompt_even_when_it_shares_more() -> None:
    """The engine would clear it (another adapter), so the similarity of text is no use."""
    table = SlotTable(2)
    first = serve(table, "caller", DOCS + "history", DOCS + "history caller: x")
    choice = table.acquire("planner", DOCS + "history caller: x obs")
    assert choice.slot != first.slot and choice.reason == "empty"


def test_a_little_shared_boilerplate_does_not_take_another_episodes_slot() -> None:
    table = SlotTable(2)
    first = serve(table, "planner", "You have " + "a" * 200, "You have " + "a" * 200)
    choice = table.acquire("planner", "You have " + "b" * 200)
    assert choice.reason == "empty" and choice.slot != first.slot


def test_with_no_empty_slot_the_least_recently_used_is_taken() -> None:
    table = SlotTable(2)
    for role, text in (("caller", "c" * 50), ("summarizer", "s" * 50)):
        serve(table, role, text, text)
    oldest = 0  # the caller's, released first
    choice = table.acquire("planner", "p" * 50)
    assert (choice.slot, choice.reason) == (oldest, "lru")


def test_a_failed_request_leaves_its_slot_unclaimed() -> None:
    table = SlotTable(1)
    choice = table.acquire("planner", "p" * 50)
    table.release(choice.slot, "planner", None)
    assert table.acquire("planner", "p" * 50).reason == "empty"


def test_requests_wait_for_a_free_slot_and_time_out_with_a_clear_error() -> None:
    table = SlotTable(1)
    held = table.acquire("planner", "x")
    with pytest.raises(ModelError, match="no engine slot came free"):
        table.acquire("planner", "x", timeout=0.05)

    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(table.acquire("caller", "y").slot))
    waiter.start()
    time.sleep(0.05)
    assert not got  # still waiting
    table.release(held.slot, "planner", "x")
    waiter.join(timeout=5)
    assert got == [held.slot]


def test_llama_requests_name_the_chosen_slot_and_report_it() -> None:
    """A planner step after a caller step goes back to the planner's slot (id_slot)."""
    fake = FakeLlamaServer(lambda b: {"text": "done", "stopping_word": "</s>"})
    model = llama(fake)
    history = DOCS + "user: pay INV-1 "
    (p1,) = model.generate([GenerationRequest("planner", history)])
    (c1,) = model.generate([GenerationRequest("caller", history + "assistant: done caller: ")])
    (p2,) = model.generate([GenerationRequest("planner", history + "done</s> obs: {}")])
    slots = [b["id_slot"] for b in fake.bodies]
    assert slots[0] == slots[2] != slots[1]
    assert (p1.extra["slot_choice"], c1.extra["slot_choice"]) == ("empty", "empty")
    assert (p2.extra["slot"], p2.extra["slot_choice"]) == (slots[0], "prefix")


def test_slot_choice_can_be_left_to_the_engine() -> None:
    fake = FakeLlamaServer()
    llama(fake, slots="off").generate([GenerationRequest("planner", "p")])
    assert "id_slot" not in fake.bodies[0]


def test_a_refused_request_frees_its_slot() -> None:
    fake = FakeLlamaServer()
    fake.slots = 1
    model = llama(fake)
    fake.answer = lambda b: (_ for _ in ()).throw(AssertionError("boom"))
    with pytest.raises(Exception, match="boom"):
        model.generate([GenerationRequest("planner", "p")])
    fake.answer = lambda b: {"text": "ok", "stopping_word": ""}
    (out,) = model.generate([GenerationRequest("planner", "p")])  # no deadlock: slot free
    assert out.extra["slot"] == 0


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [("", "abc", 0), ("abc", "abc", 3), ("abcd", "abc", 3), ("abxd", "abyd", 2), ("x", "y", 0)],
)
def test_shared_prefix_counts_the_characters_both_start_with(a: str, b: str, n: int) -> None:
    assert shared_prefix(a, b) == n


def test_a_process_takes_only_the_slots_of_its_range() -> None:
    """Several worker processes on one engine each get their own slots."""
    both = threading.Barrier(2, timeout=5)  # each answer waits for another in flight

    def answer(body: dict[str, object]) -> dict[str, str]:
        both.wait()
        return {"text": "ok", "stopping_word": ""}

    fake = FakeLlamaServer(answer)
    fake.slots = 8
    model = llama(fake, slots="4-5")
    model.generate([GenerationRequest("planner", f"p{i}") for i in range(4)])
    assert sorted(b["id_slot"] for b in fake.bodies) == [4, 4, 5, 5]


@pytest.mark.parametrize(("spec", "ids"), [("all", [0, 1, 2, 3]), ("1-2", [1, 2]), ("off", None)])
def test_slot_ranges(spec: str, ids: list[int] | None) -> None:
    assert slot_ids(spec, 4) == ids


@pytest.mark.parametrize("spec", ["2-4", "3-1", "some"])
def test_a_range_the_engine_does_not_have_is_refused_clearly(spec: str) -> None:
    with pytest.raises(ConfigError, match="UMIQ_ENGINE_SLOTS"):
        slot_ids(spec, 4)


def test_the_setting_refuses_what_is_no_range() -> None:
    from pydantic import ValidationError

    from worker.settings import Settings

    assert Settings(engine_slots="0-3").engine_slots == "0-3"
    with pytest.raises(ValidationError):
        Settings(engine_slots="yes")

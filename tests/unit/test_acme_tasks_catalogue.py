"""The Acme task catalogue: families, phrasings, slots from the seed data, splits."""

from __future__ import annotations

import pytest

from examples.acme.tasks import FAMILIES, Facts, available_families
from examples.acme.tasks import generate as generate_all
from examples.acme.tasks.catalogue import combination_key
from examples.acme.tasks.checkers import CHECKS
from examples.acme.tasks.expert import SOLVERS
from examples.acme.tasks.world import in_process_world

ON_HAND: list[str] = []  # the families the in-process world supports (no mail server)


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    with in_process_world(tmp_path_factory.mktemp("acme"), seed=5) as world:
        ON_HAND[:] = available_families(world)
        yield Facts.gather(world)


def generate(facts, **kwargs):
    return generate_all(facts, families=kwargs.pop("families", ON_HAND), **kwargs)


def test_catalogue_has_at_least_fifteen_families():
    """The catalogue has at least fifteen task families."""
    assert len(FAMILIES) >= 15


def test_the_erp_alone_supports_ten_families():
    """At least ten families need no system but the ERP."""
    assert sum(fam.systems == ("erp",) for fam in FAMILIES.values()) >= 10


def test_every_system_has_families():
    """The ERP, the HR database and the mail server each have families, some together."""
    systems = [fam.systems for fam in FAMILIES.values()]
    assert {"erp", "hr", "mail"} <= {s for combo in systems for s in combo}
    assert any(len(combo) > 1 for combo in systems)


def test_in_process_world_supports_all_but_mail_families(facts):
    """Every family not needing mail has slots in the seeded in-process world."""
    assert set(ON_HAND) == {fid for fid, fam in FAMILIES.items() if "mail" not in fam.systems}


def test_every_family_has_six_phrasings():
    """Each family offers at least six distinct phrasings."""
    for fam in FAMILIES.values():
        assert len(set(fam.templates)) >= 6, fam.id


def test_every_family_has_a_solver_and_a_checker():
    """The expert and the checkers cover every family of the catalogue."""
    assert set(FAMILIES) <= set(SOLVERS)
    assert set(FAMILIES) <= set(CHECKS)


def test_catalogue_covers_reads_writes_refusals_and_give_ups():
    """The families include lookups, reasoning, writes, refusals, missing records and give-ups."""
    kinds = {fam.kind for fam in FAMILIES.values()}
    assert {"read", "reasoning", "write", "refuse", "give_up", "not_found", "multi"} <= kinds


def test_generation_is_deterministic_per_seed(facts):
    """The same seed draws the same instances."""
    assert generate(facts, seed=3, per_family=4) == generate(facts, seed=3, per_family=4)


def test_generation_differs_between_seeds(facts):
    """Different seeds draw different instances."""
    assert generate(facts, seed=3, per_family=4) != generate(facts, seed=4, per_family=4)


def test_slots_come_from_the_seed_data(facts):
    """Invoice, order, vendor and leave slots name seeded records, except in give-up tasks."""
    for items in generate(facts, seed=1, per_family=6).values():
        for inst in items:
            if FAMILIES[inst.family].kind in ("give_up", "not_found"):
                continue
            assert inst.slots.get("invoice_id", "INV-1001") in facts.invoices, inst
            assert inst.slots.get("po_id", "PO-4501") in facts.orders, inst
            assert inst.slots.get("vendor_id", "V-0042") in facts.vendors, inst
            assert inst.slots.get("request_id", "LR-0001") in facts.leave_requests, inst
            assert inst.slots.get("employee_id", "E-1001") in facts.employees, inst


def test_held_out_phrasings_never_appear_in_train(facts):
    """Dev and test draw only phrasings that train never uses."""
    splits = generate(facts, seed=2, per_family=10)
    train = {(i.family, i.template) for i in splits["train"]}
    for split in ("dev", "test"):
        assert not train & {(i.family, i.template) for i in splits[split]}


def test_held_out_slot_combinations_never_appear_in_train(facts):
    """Dev and test draw only slot combinations that train never uses."""
    splits = generate(facts, seed=2, per_family=10)

    def keys(split):
        return {(i.family, combination_key(i.slots, FAMILIES[i.family].key)) for i in splits[split]}

    assert not keys("train") & keys("test")
    assert not keys("train") & keys("dev")


def test_instructions_do_not_repeat_within_a_split(facts):
    """No instruction occurs twice in one split."""
    for items in generate(facts, seed=2, per_family=10).values():
        instructions = [i.instruction for i in items]
        assert len(instructions) == len(set(instructions))


def test_split_sizes_follow_per_family(facts):
    """Train gets per_family instances of a family with a large slot space."""
    splits = generate(facts, seed=0, per_family=7, families=["schedule_payment"])
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [7, 2, 2]

"""Decision-balanced sample selection for the planner stage (``--balance planner``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import typer

from worker.agent import protocol
from worker.errors import ConfigError
from worker.training.cli import parse_decision_shares
from worker.training.config import TrainConfig
from worker.training.data import decision, decision_quotas, select, select_balanced
from worker.training.reuse import fingerprints

CALL = {"from": "caller", "value": 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'}
USER = {"from": "user", "value": "Pay INV-1."}


def planner_sample(kind: str, n: int) -> dict[str, Any]:
    marker, history = {
        "caller first": (protocol.CALLER, [USER]),
        "caller next": (protocol.CALLER, [USER, CALL]),
        "conclusion": (protocol.CONCLUSION, [USER, CALL]),
        "give up": (protocol.GIVE_UP, [USER, CALL]),
    }[kind]
    return {"history": history, "input": f"prompt {kind} {n}", "target": f"thought {n}\n {marker}"}


def skewed() -> list[dict[str, Any]]:
    """The shape of Acme's planner samples: many first calls, few give-ups."""
    counts = {"caller first": 40, "caller next": 30, "conclusion": 25, "give up": 3}
    return [planner_sample(k, i) for k, n in counts.items() for i in range(n)]


@pytest.mark.parametrize("kind", ["caller first", "caller next", "conclusion", "give up"])
def test_decision_names_what_a_planner_sample_teaches(kind: str) -> None:
    assert decision(planner_sample(kind, 0)) == kind


def test_each_decision_gets_an_equal_share() -> None:
    chosen = select_balanced(skewed(), seed=1, max_samples=40)
    assert Counter(decision(s) for s in chosen) == dict.fromkeys(
        ("caller first", "caller next", "conclusion", "give up"), 10
    )
    # A random draw of the same size keeps the skew: the give-ups all but vanish.
    assert Counter(decision(s) for s in select(skewed(), 1, 40))["give up"] < 10


def test_a_small_decision_repeats_every_sample_before_any_twice() -> None:
    chosen = select_balanced(skewed(), seed=2, max_samples=40)
    give_ups = Counter(s["input"] for s in chosen if decision(s) == "give up")
    assert sorted(give_ups.values()) == [3, 3, 4]
    # The large decisions are drawn without repeats.
    others = [s["input"] for s in chosen if decision(s) != "give up"]
    assert len(others) == len(set(others))


def test_the_remainder_goes_to_the_largest_decisions_and_no_cap_keeps_the_total() -> None:
    shares = Counter(decision(s) for s in select_balanced(skewed(), seed=0, max_samples=42))
    assert shares == {"caller first": 11, "caller next": 11, "conclusion": 10, "give up": 10}
    assert len(select_balanced(skewed(), seed=0, max_samples=None)) == len(skewed())


def test_the_selection_is_seeded() -> None:
    first = [s["input"] for s in select_balanced(skewed(), seed=5, max_samples=40)]
    assert first == [s["input"] for s in select_balanced(skewed(), seed=5, max_samples=40)]
    assert first != [s["input"] for s in select_balanced(skewed(), seed=6, max_samples=40)]


def test_only_the_planner_can_be_balanced() -> None:
    assert TrainConfig(data="d", out="o", balance=["planner"]).balance == ("planner",)
    with pytest.raises(ConfigError, match="balance may name only"):
        TrainConfig(data="d", out="o", balance=("caller",))


def test_balancing_the_planner_changes_only_the_planners_fingerprint() -> None:
    """Runs without ``balance`` keep their fingerprints, so their stages stay reusable."""
    plain = fingerprints(TrainConfig(data="d", out="o"), "hash", "cpu", "rev")
    balanced = fingerprints(
        TrainConfig(data="d", out="o", balance=("planner",)), "hash", "cpu", "rev"
    )
    assert [s for s in plain if plain[s] != balanced[s]] == ["planner"]


def test_a_config_from_before_the_field_reads_as_unbalanced() -> None:
    record = TrainConfig(data="d", out="o").to_dict()
    del record["balance"]
    assert TrainConfig.from_dict(record).balance == ()


def test_a_fixed_share_takes_its_fraction_and_the_rest_split_equally() -> None:
    """``{"conclusion": 0.4}`` of 40 places: 16 conclusions, 8 of each other decision."""
    chosen = select_balanced(skewed(), seed=3, max_samples=40, shares={"conclusion": 0.4})
    assert Counter(decision(s) for s in chosen) == {
        "conclusion": 16,
        "caller first": 8,
        "caller next": 8,
        "give up": 8,
    }


def test_quotas_fill_the_total_and_drop_decisions_the_data_lacks() -> None:
    counts = {"caller first": 10, "conclusion": 5}
    # give up is absent: its 0.5 is dropped and the rest scaled to fill all 7 places.
    quotas = decision_quotas(counts, 7, {"give up": 0.5, "conclusion": 0.25})
    assert sum(quotas.values()) == 7
    assert quotas == {"caller first": 5, "conclusion": 2}
    assert decision_quotas(counts, 7) == {"caller first": 4, "conclusion": 3}
    with pytest.raises(ConfigError, match="leave no place"):
        decision_quotas(counts, 7, {"caller first": 0, "conclusion": 0})


def test_decision_shares_are_checked_and_need_a_balanced_draw() -> None:
    ok = TrainConfig(data="d", out="o", balance=("planner",), decision_shares={"conclusion": 0.4})
    assert TrainConfig.from_dict(ok.to_dict()).decision_shares == {"conclusion": 0.4}
    for shares, message in [
        ({"stop": 0.2}, "unknown decisions"),
        ({"conclusion": 1.5}, r"must be in \[0, 1\]"),
        ({"conclusion": 0.7, "give up": 0.6}, "more than 1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(data="d", out="o", balance=("planner",), decision_shares=shares)
    with pytest.raises(ConfigError, match="add balance"):
        TrainConfig(data="d", out="o", decision_shares={"conclusion": 0.4})


def test_decision_shares_change_only_the_planners_fingerprint() -> None:
    balanced = fingerprints(
        TrainConfig(data="d", out="o", balance=("planner",)), "hash", "cpu", "rev"
    )
    shaped = fingerprints(
        TrainConfig(data="d", out="o", balance=("planner",), decision_shares={"conclusion": 0.4}),
        "hash",
        "cpu",
        "rev",
    )
    assert [s for s in balanced if balanced[s] != shaped[s]] == ["planner"]


def test_the_cli_names_decisions_with_underscores() -> None:
    assert parse_decision_shares(["conclusion=0.4", "give_up=0.1", "caller-next=0.3"]) == {
        "conclusion": 0.4,
        "give up": 0.1,
        "caller next": 0.3,
    }
    with pytest.raises(typer.BadParameter, match="DECISION=FRACTION"):
        parse_decision_shares(["conclusion"])


def test_the_card_says_how_the_planner_was_drawn() -> None:
    from worker.training.card import _draw

    assert _draw(TrainConfig(data="d", out="o").to_dict()) == ""
    balanced = TrainConfig(data="d", out="o", balance=("planner",))
    assert "planner: drawn by decision (an equal share" in _draw(balanced.to_dict())
    shaped = TrainConfig(
        data="d", out="o", balance=("planner",), decision_shares={"conclusion": 0.4}
    )
    assert "(conclusion 0.4, the other decisions equal)" in _draw(shaped.to_dict())

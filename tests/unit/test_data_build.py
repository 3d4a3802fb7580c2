"""The dataset build's pure parts: split checks, role splitting, statistics."""

from __future__ import annotations

import pytest

from examples.acme.tasks import TaskInstance
from worker.data.build import BuildError, assert_disjoint, split_roles, tokenizer


def task(split: str, template: int, invoice: str, text: str) -> TaskInstance:
    return TaskInstance(
        family="invoice_status",
        instruction=text,
        slots={"invoice_id": invoice},
        expected={},
        template=template,
        split=split,
    )


def test_disjoint_splits_pass():
    """Splits with distinct phrasings, combinations and instructions pass the check."""
    assert_disjoint(
        {
            "train": [task("train", 0, "INV-1001", "a")],
            "test": [task("test", 6, "INV-1002", "b")],
        }
    )


def test_a_test_instruction_in_train_fails():
    """An instruction that occurs in both train and test stops the build."""
    with pytest.raises(BuildError, match="instruction"):
        assert_disjoint(
            {
                "train": [task("train", 0, "INV-1001", "a")],
                "test": [task("test", 6, "INV-1002", "a")],
            }
        )


def test_a_test_slot_combination_in_train_fails():
    """A slot combination that occurs in both train and dev stops the build."""
    with pytest.raises(BuildError, match="slot combination"):
        assert_disjoint(
            {"train": [task("train", 0, "INV-1001", "a")], "dev": [task("dev", 5, "INV-1001", "b")]}
        )


def test_a_test_phrasing_in_train_fails():
    """A phrasing (template) used by both train and test stops the build."""
    with pytest.raises(BuildError, match="phrasing"):
        assert_disjoint(
            {
                "train": [task("train", 0, "INV-1001", "a")],
                "test": [task("test", 0, "INV-1002", "b")],
            }
        )


def test_split_roles_uses_live_prompts_for_give_ups():
    """A give-up's backbone prompt is built from its own history (no reference quirk)."""
    trajectory = {
        "tools": [{"Name": "get_invoice", "function": "Get one invoice.", "input": {}}],
        "instruction": "q",
        "conversations": [
            {"from": "user", "value": "q"},
            {"from": "assistant", "value": "Look it up.\n Next: caller."},
            {"from": "caller", "value": "Action: get_invoice\nAction Input: {}"},
            {"from": "observation", "value": '{"error": "not found", "response": null}'},
            {"from": "assistant", "value": "No such invoice.\n Next: give up."},
        ],
    }
    samples = split_roles([trajectory])
    assert "not found" in samples["backbone"][-1]["input"]
    assert [len(samples[r]) for r in ("planner", "caller", "summarizer")] == [2, 1, 0]


def test_tokenizer_counts_tokens():
    """The token counter counts at least one token for a word and names its source."""
    count, name = tokenizer()
    assert count("invoice") >= 1 and name

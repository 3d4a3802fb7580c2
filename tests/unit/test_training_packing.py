"""Prefix packing: the samples of a trajectory as one tree give each sample's own loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import LlamaForCausalLM  # noqa: E402

from tests.unit.test_models_backend import build_tokenizer, save_tiny_base  # noqa: E402
from tests.unit.test_training_run import make_config  # noqa: E402
from tests.unit.test_training_run import tiny as tiny  # noqa: E402  (a fixture)
from worker.training.data import IGNORE, Example, collate  # noqa: E402
from worker.training.packing import collate_packed, groups, pack, pack_all  # noqa: E402


def example(prompt: list[int], target: list[int]) -> Example:
    return Example([*prompt, *target], [IGNORE] * len(prompt) + target, 0)


def test_a_shared_prefix_is_laid_out_once_and_each_sample_keeps_its_tokens() -> None:
    first = example([1, 2, 3, 4], [5, 6])
    second = example([1, 2, 3, 7, 8], [9])  # shares 1 2 3 with the first
    third = example([1, 2, 3, 7, 8, 9, 4], [5])  # shares 1 2 3 7 8 9 with the second
    packed = pack([first, second, third])
    assert packed.unpacked_tokens == 6 + 6 + 8
    assert len(packed.input_ids) == 6 + 3 + 2  # 1 2 3 4 5 6 | 7 8 9 | 4 5
    for path, ex in zip(packed.paths, (first, second, third), strict=True):
        assert [packed.input_ids[i] for i in path] == ex.input_ids
        assert [packed.positions[i] for i in path] == list(range(len(ex.input_ids)))
    # each target token is predicted from the token before it in its own sample
    assert packed.targets == [5, 6, 9, 5]
    assert [packed.input_ids[i] for i in packed.predict_at] == [4, 5, 8, 4]


def test_samples_are_grouped_by_their_tools_and_first_turn() -> None:
    def sample(request: str, tools: str = "t") -> dict[str, Any]:
        return {"tools": tools, "history": [{"from": "user", "value": request}], "input": "x"}

    samples = [sample("a"), sample("b"), sample("a"), sample("a", tools="u"), sample("b")]
    assert groups(samples) == [[0, 2], [1, 4], [3]]


def test_the_mask_lets_a_token_see_only_its_own_samples_earlier_tokens() -> None:
    batch = collate_packed([pack([example([1, 2], [3]), example([1, 4], [5])])])
    mask = batch["attention_mask"][0, 0]
    # flat: 1 2 3 | 4 5 ; "4" sees "1" and itself, not "2" or "3"
    assert mask[3].tolist() == [True, False, False, True, False]
    assert mask[2].tolist() == [True, True, True, False, False]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 1, 2]]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    tokenizer = build_tokenizer()
    path = save_tiny_base(tmp_path_factory.mktemp("packing") / "tiny", tokenizer)
    return LlamaForCausalLM.from_pretrained(path).eval(), tokenizer


def _losses_one_by_one(model: Any, examples: list[Example], pad_id: int) -> float:
    total = 0.0
    for ex in examples:
        batch = collate([ex], pad_id)
        keep = batch["keep"]
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            logits_to_keep=keep,
        ).logits[:, :-1]
        labels = batch["labels"][:, -(keep - 1) :]
        total += float(
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"
            )
        )
    return total


def test_packed_trajectories_give_the_sum_of_the_samples_own_losses(model) -> None:
    """The planner samples of two trajectories (prompts growing turn by turn, as the
    α-UMi prompts do), packed into one sequence, score exactly what they score alone."""
    llama, tokenizer = model
    eos = tokenizer.eos_token_id

    def ex(prompt: str, target: str) -> Example:
        p = tokenizer(prompt)["input_ids"]
        t = [*tokenizer(target, add_special_tokens=False)["input_ids"], eos]
        return Example([*p, *t], [IGNORE] * len(p) + t, 0)

    head = "user: check the invoice and pay the vendor</s> "
    ask = "assistant: Next: caller.</s> caller: "
    trajectories = [
        [
            ex(head + ask, "Action: get_invoice"),
            ex(head + "assistant: Next: caller.</s> observation: [1, 2]" + ask, "done"),
        ],
        [ex("user: the quick brown fox " + ask, "give up."), ex("user: the lazy dog" + ask, "1")],
    ]
    examples = [e for t in trajectories for e in t]
    packed = [pack(t) for t in trajectories]
    assert sum(len(p.input_ids) for p in packed) < sum(len(e.input_ids) for e in examples)
    batch = collate_packed(packed)
    with torch.no_grad():
        logits = llama(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            logits_to_keep=batch["predict_at"],
        ).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1), reduction="sum"
        )
        alone = _losses_one_by_one(llama, examples, tokenizer.pad_token_id)
    assert float(loss) == pytest.approx(alone, rel=1e-5)


def test_pack_all_keeps_every_sample_once() -> None:
    samples = [{"tools": "t", "history": [{"value": r}]} for r in ("a", "b", "a")]
    examples = [example([1, 2], [3]), example([4], [5]), example([1, 2, 6], [7])]
    packed = pack_all(samples, examples)
    assert [p.samples for p in packed] == [2, 1]
    assert sorted(t for p in packed for t in p.targets) == [3, 5, 7]


def test_packing_is_a_config_field_and_part_of_the_stage_fingerprint(tmp_path: Path) -> None:
    from worker.training.config import TrainConfig
    from worker.training.reuse import fingerprints

    plain = TrainConfig.preset("demo", data="d", out=str(tmp_path))
    packed = TrainConfig.preset("demo", data="d", out=str(tmp_path), pack=True)
    assert fingerprints(plain, "h", "cpu", "b") != fingerprints(packed, "h", "cpu", "b")


def test_a_packed_run_trains_every_stage_on_fewer_sequences(tiny: dict[str, Any]) -> None:
    """A GLPFT run with ``pack``: each stage trains on one tree per trajectory."""
    import math

    from worker.training.run import train

    result = train(make_config(tiny, "packed", pack=True, max_samples=None), progress=False)
    assert result.complete
    for stage in ("global", "planner", "caller"):
        summary = result.stages[stage]
        # three trajectories: at most three trees, holding every sample
        assert summary["packed_sequences"] == summary["examples"] <= 3
        assert summary["packed_samples"] > summary["packed_sequences"]
        assert summary["packed_tokens"] < summary["unpacked_tokens"]
        assert math.isfinite(summary["final_loss"])

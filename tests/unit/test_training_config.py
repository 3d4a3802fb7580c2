"""TrainConfig: validation, serialization, presets (no torch needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.errors import ConfigError
from worker.training.config import ALPHA_UMI_EPOCHS, CONFIG_VERSION, TrainConfig


def test_defaults_follow_alpha_umi_epochs_and_lora_on_all_llama_linears() -> None:
    """The default config has α-UMi's epochs and r16/alpha32 LoRA on every LLaMA linear."""
    config = TrainConfig(data="d.json", out="out")
    assert config.epochs == ALPHA_UMI_EPOCHS
    assert (config.lora_r, config.lora_alpha, config.lr) == (16, 32, 2e-4)
    assert set(config.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "two_stage"),
        ("lora_r", 0),
        ("lr", 0.0),
        ("epochs", {"global": 0}),
        ("epochs", {"critic": 1}),
        ("warmup_ratio", 1.0),
        ("max_length", 8),
        ("max_samples", 0),
        ("device", "tpu"),
    ],
)
def test_invalid_values_are_refused_with_the_field_named(field: str, value: object) -> None:
    """An invalid value raises ConfigError naming the field."""
    with pytest.raises(ConfigError, match=field):
        TrainConfig(data="d.json", out="out", **{field: value})


def test_round_trip_through_dict_keeps_every_field_and_stamps_the_version() -> None:
    """to_dict carries a version stamp and from_dict rebuilds an equal config."""
    config = TrainConfig.preset("demo", data="d.json", out="out", seed=7, method="single")
    data = config.to_dict()
    assert data["config_version"] == CONFIG_VERSION
    assert TrainConfig.from_dict(data) == config


def test_partial_epochs_are_merged_with_the_defaults() -> None:
    """Setting one stage's epochs keeps the others at α-UMi's values."""
    config = TrainConfig(data="d.json", out="out", epochs={"caller": 3})
    assert config.epochs == {**ALPHA_UMI_EPOCHS, "caller": 3}


def test_unknown_preset_is_refused() -> None:
    """An unknown preset name raises ConfigError listing the presets."""
    with pytest.raises(ConfigError, match="demo"):
        TrainConfig.preset("huge", data="d.json", out="out")


def test_importing_the_package_does_not_import_torch() -> None:
    """Importing worker.training (and its CLI module) leaves torch unloaded."""
    code = (
        "import sys, worker.training, worker.training.cli; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_max_samples_per_stage() -> None:
    """A dict of caps limits only the stages it names; ``single`` follows ``global``."""
    config = TrainConfig(data="d", out="o", max_samples={"planner": 192, "global": 8})
    assert config.max_samples_for("planner") == 192
    assert config.max_samples_for("single") == 8
    assert config.max_samples_for("caller") is None


def test_max_samples_unknown_stage_is_refused() -> None:
    """A cap for a stage that does not exist is a config error naming it."""
    with pytest.raises(ConfigError, match="unknown stages"):
        TrainConfig(data="d", out="o", max_samples={"plannr": 3})


def test_cli_max_samples_overrides_one_stage_of_the_preset() -> None:
    """``--max-samples planner=10`` keeps the preset's other caps."""
    from worker.training.cli import parse_max_samples

    preset = {"global": 96, "planner": 192, "caller": 96, "summarizer": 96}
    assert parse_max_samples("planner=10", preset) == {**preset, "planner": 10}
    assert parse_max_samples("0", preset) is None
    assert parse_max_samples("7", preset) == 7


def test_the_shipped_adapters_are_what_the_demo_preset_trains() -> None:
    """`umiq train --preset demo` reproduces the shipped adapters: the shipped card's config
    is the preset's (a preset change without retraining and shipping fails here), and every
    shipped stage's fingerprint is the one the preset gives, each stage under the mixed
    precision it was trained with (its ``done`` file, else the card's) and starting from
    the stage before it as shipped."""
    import json

    from worker.settings import SHIPPED_ADAPTERS
    from worker.training.data import stages_for
    from worker.training.reuse import StageKeys, finished_stages

    record = json.loads((SHIPPED_ADAPTERS / "umiq-train.json").read_text())
    shipped = TrainConfig.from_dict(record["config"])
    preset = TrainConfig.preset("demo", data=shipped.data, out=shipped.out)
    assert shipped.weights_fields() == preset.weights_fields()
    found = {fp: path.name for fp, path in finished_stages(SHIPPED_ADAPTERS).items()}
    # by the whole data's hash (as trained) and by each role's samples (the card's role hashes)
    for role_digests in ({}, record["data"]["role_hashes"]):
        keys = StageKeys(
            preset,
            record["data"]["hash"],
            record["hardware"]["device"],
            record["base"]["revision"],
            role_digests,
        )
        expected: dict[str, str] = {}
        for index, stage in enumerate(stages_for(preset.method)):
            # "auto" resolves by hardware: bfloat16 on a CPU that computes it natively
            name = "single" if stage.name == "global" else stage.name
            autocast = json.loads((SHIPPED_ADAPTERS / name / "done").read_text()).get("autocast")
            expected[stage.name] = keys.fingerprint(
                index,
                stage,
                init=expected[stage.init_from] if stage.init_from else None,
                autocast=autocast or record["precision"]["autocast"],
            )
        # The shipped single-LLM baseline is the run's global stage (same samples and seed).
        assert [found.get(fp) for fp in expected.values()] == [
            "single",
            "planner",
            "caller",
            "summarizer",
        ], bool(role_digests)


def test_a_stage_may_have_its_own_learning_rate() -> None:
    """``stage_lr`` sets one stage's peak lr; the others (and ``single`` as ``global``)
    keep ``lr``; an unknown stage or a rate <= 0 is refused."""
    config = TrainConfig.preset("demo", data="d.json", out="o", stage_lr={"planner": 2e-3})
    assert [config.lr_for(s) for s in ("global", "single", "planner", "caller")] == [
        5e-4,
        5e-4,
        2e-3,
        5e-4,
    ]
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="stage_lr has unknown stages"):
        TrainConfig(data="d.json", out="o", stage_lr={"critic": 1e-3})
    with pytest.raises(ConfigError, match=r"stage_lr\['planner'\] must be > 0"):
        TrainConfig(data="d.json", out="o", stage_lr={"planner": 0})


def test_a_stage_learning_rate_changes_only_that_stages_fingerprint() -> None:
    """The planner's own lr gives the planner another fingerprint and leaves the global,
    caller and summarizer stages reusable; setting it to ``lr`` changes nothing."""
    from worker.training.reuse import fingerprints

    def prints(**kw: object) -> dict[str, str]:
        config = TrainConfig.preset("demo", data="d.json", out="o", **kw)
        return fingerprints(config, "data", "cpu", "base")

    from worker.training.config import PRESETS

    own = dict(PRESETS["demo"]["stage_lr"])
    plain = prints()
    faster = prints(stage_lr={**own, "planner": 2e-3})
    assert [k for k in plain if plain[k] != faster[k]] == ["planner"]
    assert prints(stage_lr={**own, "planner": 1e-3}) == plain  # the preset's own planner lr

"""Training runs on a tiny random LLaMA built in code, with ToolBench fixture trajectories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tests.unit.test_models_backend import build_tokenizer, save_tiny_base  # noqa: E402
from worker.agent.roles import GenerationRequest  # noqa: E402
from worker.errors import ConfigError, UmiqError  # noqa: E402
from worker.models.adapters import find_adapters  # noqa: E402
from worker.models.backend import HFRoleModel  # noqa: E402
from worker.training import TrainConfig, TrainResult, train  # noqa: E402
from worker.training.data import (  # noqa: E402
    IGNORE,
    Example,
    load_samples,
    role_hashes,
    tokenize,
    truncation_warning,
)
from worker.training.reuse import record_role_hashes  # noqa: E402

ROLE_DIRS = ("planner", "caller", "summarizer")
WEIGHTS = "adapter_model.safetensors"


class Crash(Exception):
    """Stands in for a killed process."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, toolbench_dir: Path) -> dict[str, Any]:
    """A tiny base checkpoint, its tokenizer, and a three-trajectory data file."""
    root = tmp_path_factory.mktemp("training")
    tokenizer = build_tokenizer()
    base = save_tiny_base(
        root / "tiny-llama",
        tokenizer,
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    trajectories = json.loads((toolbench_dir / "raw_data_stage_2.json").read_text())
    data = root / "trajectories.json"
    data.write_text(json.dumps(trajectories[:3]))
    return {"root": root, "base": base, "data": data, "tokenizer": tokenizer}


def make_config(tiny: dict[str, Any], out: str, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "base": str(tiny["base"]),
        "max_length": 64,
        "max_samples": 4,
        "batch_size": 1,
        "grad_accum": 1,
        "lora_r": 4,
        "lora_alpha": 8,
        "lr": 5e-3,
        "warmup_ratio": 0.1,
        "save_every": 2,
        # these prompts are longer than 64 tokens: the tests train on cut prompts on purpose
        "max_cut_share": 1.0,
    }
    settings.update(overrides)
    return TrainConfig(data=str(tiny["data"]), out=str(tiny["root"] / out), **settings)


@pytest.fixture(scope="module")
def glpft(tiny: dict[str, Any]) -> TrainResult:
    """One uninterrupted GLPFT run, the reference for the other tests."""
    return train(make_config(tiny, "glpft"), progress=False)


def weights(out: Path, stage: str) -> bytes:
    return (out / stage / WEIGHTS).read_bytes()


def test_labels_mask_the_prompt_and_keep_the_whole_target(tiny: dict[str, Any]) -> None:
    """A tokenized sample's labels are -100 on the prompt and equal the target plus EOS."""
    tokenizer = tiny["tokenizer"]
    sample = load_samples(tiny["data"])["caller"][0]
    example = tokenize(sample, tokenizer, 128, tokenizer.eos_token_id)
    target = [x for x in example.labels if x != IGNORE]
    prompt_len = len(example.labels) - len(target)
    assert len(example.input_ids) == 128
    assert example.prompt_truncated > 0
    assert example.labels[:prompt_len] == [IGNORE] * prompt_len
    assert example.input_ids[prompt_len:] == target
    assert target[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(target[:-1]) == sample["target"]


def test_a_truncation_warning_names_the_cut_and_the_length_that_avoids_it() -> None:
    """Cut prompts are reported with the count and the max length that keeps them whole;
    a stage whose prompts all fit gets no warning."""
    fits = Example([1] * 10, [IGNORE] * 8 + [5, 2], 0)
    cut = Example([1] * 16, [IGNORE] * 14 + [5, 2], 30)
    assert truncation_warning("caller", [fits, fits], 16) is None
    warning = truncation_warning("planner", [fits, cut], 16)
    assert warning is not None
    assert "1 of 2 prompts" in warning
    assert "up to 30 tokens" in warning
    assert "--max-length 46" in warning


def test_a_warning_is_logged_when_there_is_no_progress_bar() -> None:
    """Without a bar (``--no-progress``) a warning still reaches the user, as a log line."""
    from structlog.testing import capture_logs

    from worker.training.loop import Reporter

    with capture_logs() as logs, Reporter(False) as reporter:
        reporter.note("planner: reused")
        reporter.warn("planner: 3 of 4 prompts are longer than max_length 64")
    assert logs == [
        {
            "event": "training_warning",
            "log_level": "warning",
            "message": "planner: 3 of 4 prompts are longer than max_length 64",
        }
    ]


def test_glpft_writes_global_and_three_role_adapters(glpft: TrainResult) -> None:
    """GLPFT finishes with global/, planner/, caller/, summarizer/, each marked done."""
    assert glpft.complete
    for stage in ("global", *ROLE_DIRS):
        assert (glpft.out / stage / WEIGHTS).is_file()
        assert (glpft.out / stage / "done").is_file()
    assert sorted(glpft.adapters) == sorted(("global", *ROLE_DIRS))


def test_role_adapters_differ_from_each_other_and_from_global(glpft: TrainResult) -> None:
    """Each role adapter's LoRA tensors differ from global's and from the other roles'."""
    tensors = {s: load_file(glpft.out / s / WEIGHTS) for s in ("global", *ROLE_DIRS)}
    names = list(tensors)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert tensors[a].keys() == tensors[b].keys()
            assert any(not torch.equal(tensors[a][k], tensors[b][k]) for k in tensors[a]), (a, b)


def test_two_runs_from_one_seed_give_identical_adapter_bytes(
    tiny: dict[str, Any], glpft: TrainResult
) -> None:
    """A second run of the same config writes byte-identical adapter weights."""
    again = train(make_config(tiny, "glpft-again"), progress=False)
    for stage in ("global", *ROLE_DIRS):
        assert weights(again.out, stage) == weights(glpft.out, stage), stage


def test_role_adapters_load_in_the_hf_role_model(tiny: dict[str, Any], glpft: TrainResult) -> None:
    """HFRoleModel loads the trained adapters from the output dir and generates with them."""
    model = HFRoleModel(tiny["base"], find_adapters(glpft.out), max_new_tokens=4)
    assert sorted(model.adapters) == sorted(ROLE_DIRS)
    requests = [GenerationRequest(role, "user: hi</s>", max_new_tokens=4) for role in ROLE_DIRS]
    generations = model.generate(requests)
    assert [g.adapter.split("@")[0] for g in generations] == list(ROLE_DIRS)


def test_resume_after_a_crash_matches_the_uninterrupted_run(
    tiny: dict[str, Any], glpft: TrainResult
) -> None:
    """A run killed mid-stage resumes from its last checkpoint and ends byte-identical."""

    def crash_at_planner_step_3(stage: str, step: int) -> None:
        if (stage, step) == ("planner", 3):
            raise Crash

    config = make_config(tiny, "resumed")
    with pytest.raises(Crash):
        train(config, progress=False, on_step=crash_at_planner_step_3)
    assert (config_out := Path(config.out)).joinpath("global", "done").is_file()
    assert not (config_out / "planner").exists()

    result = train(config, progress=False)
    assert result.complete
    assert result.stages["planner"]["resumed_from"] == 2
    assert result.stages["global"]["resumed_from"] is None
    for stage in ("global", *ROLE_DIRS):
        assert weights(result.out, stage) == weights(glpft.out, stage), stage
    records = [json.loads(line) for line in (result.out / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["stage"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))


def test_stop_after_steps_checkpoints_and_a_rerun_finishes(tiny: dict[str, Any]) -> None:
    """stop_after_steps returns an incomplete result and the next call completes the run."""
    config = make_config(tiny, "stopped", method="single", max_samples=2)
    first = train(config, progress=False, stop_after_steps=1)
    assert not first.complete
    assert (first.out / "checkpoints" / "single" / "state.json").is_file()
    second = train(config, progress=False)
    assert second.complete
    assert second.stages["single"]["resumed_from"] == 1


def test_resume_refuses_a_changed_config(tiny: dict[str, Any], glpft: TrainResult) -> None:
    """Re-running into an output dir with another learning rate is refused with a reason."""
    with pytest.raises(ConfigError, match="lr"):
        train(make_config(tiny, "glpft", lr=1e-3), progress=False)


SUMMARIZER_CAP_1 = {"global": 4, "planner": 4, "caller": 4, "summarizer": 1}


def test_reuse_copies_stages_with_the_same_fingerprint_and_equals_a_fresh_run(
    tiny: dict[str, Any], glpft: TrainResult
) -> None:
    """A run that changes only the summarizer's cap copies global, planner and caller from
    an earlier run, trains the summarizer, and ends byte-identical to a fresh run of it."""
    reused = train(
        make_config(tiny, "reuse", max_samples=SUMMARIZER_CAP_1),
        progress=False,
        reuse_from=[glpft.out],
    )
    for stage in ("global", "planner", "caller"):
        assert reused.stages[stage]["reused_from"] == str(glpft.out / stage), stage
        assert weights(reused.out, stage) == weights(glpft.out, stage), stage
    assert "reused_from" not in reused.stages["summarizer"]
    assert reused.stages["summarizer"]["examples"] == 1 < glpft.stages["summarizer"]["examples"]
    assert weights(reused.out, "summarizer") != weights(glpft.out, "summarizer")
    stages_in_metrics = {
        json.loads(line)["stage"]
        for line in (reused.out / "metrics.jsonl").read_text().splitlines()
    }
    assert stages_in_metrics == {"global", *ROLE_DIRS}
    assert "Reused, not retrained" in (reused.out / "README.md").read_text()

    fresh = train(make_config(tiny, "fresh", max_samples=SUMMARIZER_CAP_1), progress=False)
    for stage in ("global", *ROLE_DIRS):
        assert weights(fresh.out, stage) == weights(reused.out, stage), stage


def test_reuse_from_an_older_run_reads_fingerprints_from_its_card(
    tiny: dict[str, Any], glpft: TrainResult
) -> None:
    """Runs whose done files carry no fingerprint (older umiq) are matched by their card;
    the single baseline reuses GLPFT's global stage; a changed learning rate matches
    nothing, so the stage is trained."""
    older = tiny["root"] / "older"
    shutil.copytree(glpft.out, older)
    for done in older.glob("*/done"):
        summary = json.loads(done.read_text())
        summary.pop("fingerprint")
        done.write_text(json.dumps(summary))
    reused = train(
        make_config(tiny, "reuse-older", max_samples=SUMMARIZER_CAP_1),
        progress=False,
        reuse_from=[older],
    )
    assert [s for s in reused.stages if reused.stages[s].get("reused_from")] == [
        "global",
        "planner",
        "caller",
    ]
    # The single-LLM baseline is GLPFT's global stage: same samples, seed and start.
    single = train(
        make_config(tiny, "reuse-single", method="single"), progress=False, reuse_from=[older]
    )
    assert single.stages["single"]["reused_from"] == str(older / "global")
    other_lr = train(
        make_config(tiny, "reuse-other-lr", method="single", lr=1e-3),
        progress=False,
        reuse_from=[older],
    )
    assert "reused_from" not in other_lr.stages["single"]


def test_reuse_any_precision_takes_stages_trained_under_another_autocast(
    tiny: dict[str, Any], glpft: TrainResult
) -> None:
    """A bfloat16-autocast run finds nothing to reuse in a run trained without autocast,
    unless --reuse-any-precision: then global, planner and caller are copied, and the
    summarizer it trains is fingerprinted as starting from the copied global stage (not
    from a bfloat16 global that was never trained)."""
    from worker.training import reuse
    from worker.training.data import stages_for

    config = make_config(tiny, "any-precision", autocast="bfloat16", max_samples=SUMMARIZER_CAP_1)
    record = json.loads((glpft.out / "umiq-train.json").read_text())
    digest, base_revision = record["data"]["hash"], record["base"]["revision"]
    stages = list(enumerate(stages_for("glpft")))
    keys = reuse.StageKeys(config, digest, "cpu", base_revision, record["data"]["role_hashes"])
    found = {
        any_precision: keys.find(
            *stages[0],
            init=None,
            reusable=reuse.finished_stages(glpft.out),
            any_precision=any_precision,
        )
        for any_precision in (False, True)
    }
    assert found[False][1] is None  # exact fingerprints only: bfloat16 is another stage
    assert found[True] == (glpft.stages["global"]["fingerprint"], glpft.out / "global")

    reused = train(config, progress=False, reuse_from=[glpft.out], reuse_any_precision=True)
    for name in ("global", "planner", "caller"):
        assert reused.stages[name]["reused_from"] == str(glpft.out / name), name
        assert reused.stages[name]["fingerprint"] == glpft.stages[name]["fingerprint"], name
        assert weights(reused.out, name) == weights(glpft.out, name), name
    summarizer = reused.stages["summarizer"]
    assert "reused_from" not in summarizer and summarizer["examples"] == 1
    # each stage's done file says which precision computed it
    assert summarizer["autocast"] == "bfloat16"
    assert {reused.stages[n]["autocast"] for n in ("global", "planner", "caller")} == {"none"}
    index, stage = stages[3]
    assert stage.name == "summarizer"
    chained = keys.fingerprint(index, stage, init=found[True][0])
    assert summarizer["fingerprint"] == chained
    assert chained != reuse.fingerprints(config, digest, "cpu", base_revision)["summarizer"]


def test_reuse_from_a_missing_directory_is_refused(tiny: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="no such run directory"):
        train(
            make_config(tiny, "reuse-missing", method="single", max_samples=2),
            progress=False,
            reuse_from=[tiny["root"] / "nowhere"],
        )


def test_single_writes_one_adapter(tiny: dict[str, Any]) -> None:
    """The single-LLM baseline writes only single/."""
    result = train(make_config(tiny, "single", method="single", max_samples=2), progress=False)
    assert sorted(result.adapters) == ["single"]
    assert (result.out / "single" / WEIGHTS).is_file()
    assert not any((result.out / r).exists() for r in ("global", *ROLE_DIRS))


def test_one_stage_writes_three_role_adapters_without_global(tiny: dict[str, Any]) -> None:
    """one_stage trains the three roles from scratch and writes no global/."""
    config = make_config(tiny, "one-stage", method="one_stage", max_samples=2)
    result = train(config, progress=False)
    assert sorted(result.adapters) == sorted(ROLE_DIRS)
    assert not (result.out / "global").exists()
    assert all(result.stages[r]["init_from"] is None for r in ROLE_DIRS)


def test_model_card_metrics_and_curve_are_written(glpft: TrainResult) -> None:
    """The run leaves README.md, umiq-train.json, metrics.jsonl and training_curve.png."""
    out = glpft.out
    record = json.loads((out / "umiq-train.json").read_text())
    assert len(record["data"]["hash"]) == 64
    assert record["base"]["revision"]
    import peft
    import transformers

    # what it was trained with, so a later run can tell a library change from its own
    assert record["hardware"]["transformers"] == transformers.__version__
    assert record["hardware"]["peft"] == peft.__version__
    assert f"transformers {transformers.__version__}" in (out / "README.md").read_text()
    assert "evaluation" not in record  # evaluation's figures are its own file
    assert set(record["stages"]) == {"global", *ROLE_DIRS}
    # ToolBench data names no view: the adapters were trained on the α-UMi reference form
    assert record["prompt_view"] == {"name": "alpha-umi"}
    assert all(s["tokens_per_s"] > 0 for s in record["stages"].values())
    readme = (out / "README.md").read_text()
    assert "## Evaluation\n\nNot evaluated yet." in readme
    assert record["data"]["hash"] in readme
    # max_length 64 cuts these prompts: the card says how many and what length keeps them.
    planner = record["stages"]["planner"]
    assert 0 < planner["prompts_truncated"] <= planner["examples"]
    assert planner["longest_example"] > 64
    assert f"| {planner['prompts_truncated']} of {planner['examples']} |" in readme
    longest = max(s["longest_example"] for s in record["stages"].values())
    assert f"--max-length {longest}" in readme
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == sum(s["steps"] for s in record["stages"].values())
    assert {"stage", "step", "loss", "lr", "tokens", "elapsed"} <= set(json.loads(lines[0]))
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_train_command_trains_with_the_options_given(tiny: dict[str, Any]) -> None:
    """`umiq train` with every knob on the command line trains and reports the stages."""
    import typer

    from worker.training.cli import register

    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command keeps `train` a subcommand
        """Unused."""

    out = tiny["root"] / "cli"
    args = [
        "train",
        "--data",
        str(tiny["data"]),
        "--out",
        str(out),
        "--base",
        str(tiny["base"]),
        "--method",
        "single",
        "--max-samples",
        "2",
        "--max-length",
        "48",
        "--max-cut-share",
        "1",
        "--epochs-global",
        "1",
        "--lora-r",
        "2",
        "--seed",
        "3",
        "--balance",
        "planner",
        "--lr-global",
        "0.003",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "single" / "done").is_file()
    config = json.loads((out / "train-config.json").read_text())
    assert (config["lora_r"], config["seed"], config["epochs"]["global"]) == (2, 3, 1)
    assert config["balance"] == ["planner"]
    # added to the preset's own
    assert config["stage_lr"] == {"planner": 0.001, "summarizer": 0.001, "global": 0.003}
    assert json.loads((out / "single" / "done").read_text())["lr"] == 0.003


def test_train_cli_turns_a_presets_balance_off_and_merges_decision_shares(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--balance none` draws every stage at random; `--decision-share` adds to the preset's."""
    from worker.cli import app
    from worker.training import run as run_module
    from worker.training.config import PRESETS

    seen: list[Any] = []

    def fake_train(config: Any, **_: Any) -> Any:
        seen.append(config)
        raise UmiqError("stop here")

    monkeypatch.setattr(run_module, "train", fake_train)
    common = ["train", "--preset", "demo", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    CliRunner().invoke(app, [*common, "--balance", "none"])
    CliRunner().invoke(app, [*common, "--balance", "planner", "--decision-share", "give_up=0.1"])
    assert seen[0].balance == ()
    assert seen[1].decision_shares == {
        **PRESETS["demo"].get("decision_shares", {}),
        "give up": 0.1,
    }


def test_training_refuses_to_cut_more_than_a_small_share(tiny: dict[str, Any]) -> None:
    """With the default max_cut_share, a max_length that cuts most prompts is refused."""
    config = make_config(tiny, "refused", max_cut_share=0.05)
    with pytest.raises(ConfigError, match=r"refusing to train: .*prompts are longer"):
        train(config, progress=False)


def test_trained_adapters_and_card_name_no_absolute_path(
    glpft: TrainResult, tiny: dict[str, Any]
) -> None:
    """The adapter configs and the card record the base by a portable path, not this machine's."""
    for stage in ("global", *ROLE_DIRS):
        config = json.loads((glpft.out / stage / "adapter_config.json").read_text())
        assert not Path(config["base_model_name_or_path"]).is_absolute(), stage
    record = json.loads((glpft.out / "umiq-train.json").read_text())
    assert not Path(record["base"]["path"]).is_absolute()
    # Data and output dirs given as absolute paths are named portably too (the card is
    # committed when adapters are shipped).
    assert Path(tiny["data"]).is_absolute() and glpft.out.is_absolute()
    for path in (record["data"]["path"], record["config"]["data"], record["config"]["out"]):
        assert not Path(path).is_absolute(), path
    card = (glpft.out / "README.md").read_text()
    assert str(glpft.out) not in card and str(tiny["data"]) not in card


# -- stages fingerprinted by their own role's samples ---------------------------------
# Data that changes only the planner's prompts (a view that restates the request to the
# planner) retrains the planner and reuses the other stages; an older run's card learns
# its role hashes, checked against its whole data hash.

PLAIN = {"name": "compact", "top_k": 3}
RESTATED = {**PLAIN, "restate": True}


def _data(tiny: dict[str, Any], name: str, view: dict[str, Any]) -> Path:
    trajectories = json.loads(Path(tiny["data"]).read_text())
    path = Path(tiny["root"]) / f"{name}.json"
    path.write_text(json.dumps([{**t, "prompt_view": view} for t in trajectories]))
    return path


def _run(
    tiny: dict[str, Any], out: str, data: Path, reuse: Path | None = None, **overrides: Any
) -> TrainResult:
    # long enough to keep the prompts' ends, where the restated request is
    config = make_config(tiny, out, max_length=512, **overrides)
    config.data = str(data)
    return train(config, progress=False, reuse_from=[reuse] if reuse else [])


def _as_older_run(run: Path, copy: Path) -> Path:
    """A copy of ``run`` as umiq wrote it before role hashes: none in its card, and no
    fingerprint in its done files (they are computed from the card, by the whole data)."""
    shutil.copytree(run, copy)
    card_path = copy / "umiq-train.json"
    card = json.loads(card_path.read_text())
    card["data"].pop("role_hashes")
    card_path.write_text(json.dumps(card))
    for done in copy.glob("*/done"):
        summary = json.loads(done.read_text())
        summary.pop("fingerprint")
        done.write_text(json.dumps(summary))
    return copy


@pytest.fixture(scope="module")
def plain(tiny: dict[str, Any]) -> TrainResult:
    return _run(tiny, "plain-view", _data(tiny, "plain", PLAIN))


def test_only_the_planners_samples_differ_when_the_request_is_restated(
    tiny: dict[str, Any],
) -> None:
    before = role_hashes(load_samples(_data(tiny, "plain", PLAIN)))
    after = role_hashes(load_samples(_data(tiny, "restated", RESTATED)))
    assert [role for role in before if before[role] != after[role]] == ["planner"]


def test_new_planner_prompts_retrain_the_planner_and_reuse_the_rest(
    tiny: dict[str, Any], plain: TrainResult
) -> None:
    restated = _run(tiny, "restated-view", _data(tiny, "restated", RESTATED), reuse=plain.out)
    reused = [name for name, stage in restated.stages.items() if stage.get("reused_from")]
    assert reused == ["global", "caller", "summarizer"]
    assert weights(restated.out, "planner") != weights(plain.out, "planner")
    card = json.loads((restated.out / "umiq-train.json").read_text())
    assert card["prompt_view"] == RESTATED
    assert (
        card["data"]["role_hashes"]["planner"]
        != json.loads((plain.out / "umiq-train.json").read_text())["data"]["role_hashes"]["planner"]
    )


def test_an_older_run_learns_its_role_hashes_from_its_own_data_only(
    tiny: dict[str, Any], plain: TrainResult
) -> None:
    older = _as_older_run(plain.out, Path(tiny["root"]) / "older-card")
    restated = _data(tiny, "restated", RESTATED)
    before = _run(tiny, "older-before", restated, reuse=older)
    assert not any(stage.get("reused_from") for stage in before.stages.values())

    with pytest.raises(ConfigError, match="not the data"):
        record_role_hashes(older, restated)
    hashes = record_role_hashes(older, _data(tiny, "plain", PLAIN))
    assert hashes == role_hashes(load_samples(_data(tiny, "plain", PLAIN)))
    after = _run(tiny, "older-after", restated, reuse=older)
    reused = [name for name, stage in after.stages.items() if stage.get("reused_from")]
    assert reused == ["global", "caller", "summarizer"]
    for name in reused:
        assert weights(after.out, name) == weights(plain.out, name), name


def test_a_continued_stage_of_an_older_run_is_found_by_its_card(
    tiny: dict[str, Any], plain: TrainResult
) -> None:
    """A planner continued from a finished adapter, in a run whose done files carry no
    fingerprint, is found by its card once the card has role hashes: a run with the same
    continuation copies it instead of training it again."""
    restated = _data(tiny, "restated", RESTATED)
    source = str(plain.out / "planner")
    first = _run(tiny, "continued", restated, continue_from={"planner": source})
    older = _as_older_run(first.out, Path(tiny["root"]) / "continued-older")
    record_role_hashes(older, restated)
    again = _run(tiny, "continued-again", restated, continue_from={"planner": source}, reuse=older)
    assert again.stages["planner"].get("reused_from") == str(older / "planner")
    assert weights(again.out, "planner") == weights(first.out, "planner")

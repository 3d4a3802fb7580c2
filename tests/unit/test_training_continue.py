"""A stage that continues a finished adapter (``--continue-from planner=DIR``): more epochs
on top of it, fingerprinted as starting from it, refused when DIR is not a finished one."""

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

from tests.unit.test_training_run import glpft, make_config, tiny  # noqa: E402,F401
from worker.errors import ConfigError  # noqa: E402
from worker.training import TrainResult, train  # noqa: E402
from worker.training.cli import parse_continue_from  # noqa: E402
from worker.training.config import TrainConfig  # noqa: E402

WEIGHTS = "adapter_model.safetensors"


def tensors(stage_dir: Path) -> dict[str, Any]:
    return load_file(str(stage_dir / WEIGHTS))


def max_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_a_continued_stage_starts_from_the_adapter_it_continues(
    tiny: dict[str, Any],  # noqa: F811
    glpft: TrainResult,  # noqa: F811
) -> None:
    """With a learning rate too small to move a float32 weight, the continued planner is
    the adapter it continued; the same run from GLPFT's start is not. The other stages
    are reused, the card names the start, and the fingerprint chains from the source."""
    source = glpft.out / "planner"
    continued = train(
        make_config(
            tiny,
            "continued",
            stage_lr={"planner": 1e-12},
            continue_from={"planner": str(source)},
        ),
        progress=False,
        reuse_from=[glpft.out],
    )
    assert max_difference(tensors(continued.out / "planner"), tensors(source)) < 1e-6
    for stage in ("global", "caller", "summarizer"):
        assert continued.stages[stage]["reused_from"] == str(glpft.out / stage), stage
    summary = continued.stages["planner"]
    assert "reused_from" not in summary
    assert summary["init_from"] == str(source)
    assert str(source) in (continued.out / "README.md").read_text()
    assert summary["fingerprint"] != glpft.stages["planner"]["fingerprint"]

    fresh = train(make_config(tiny, "not-continued", stage_lr={"planner": 1e-12}), progress=False)
    assert max_difference(tensors(fresh.out / "planner"), tensors(source)) > 1e-4
    assert fresh.stages["planner"]["fingerprint"] != summary["fingerprint"]


def test_continuing_a_folder_that_is_not_a_finished_adapter_is_refused(
    tiny: dict[str, Any],  # noqa: F811
    glpft: TrainResult,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A missing folder, or an adapter without its ``done`` record, is named in the error
    before anything trains."""
    half = tmp_path / "half"
    shutil.copytree(glpft.out / "planner", half)
    (half / "done").unlink()
    for start in (tmp_path / "missing", half):
        config = make_config(tiny, f"bad-{start.name}", continue_from={"planner": str(start)})
        with pytest.raises(ConfigError, match=f"continues {start}.*not a finished adapter"):
            train(config, progress=False)
        assert not (Path(config.out) / "planner" / "done").exists()


def test_continue_from_names_known_stages_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="continue_from has unknown stages"):
        TrainConfig(data="d.json", out="o", continue_from={"planer": "x"})
    config = TrainConfig(data="d.json", out="o", continue_from={"planner": "x"})
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_cli_continue_from_takes_stage_equals_dir() -> None:
    assert parse_continue_from(["planner=a/b", " caller = c "]) == {
        "planner": "a/b",
        "caller": "c",
    }
    import typer

    for bad in ("planner", "=a", "planner="):
        with pytest.raises(typer.BadParameter, match="STAGE=DIR"):
            parse_continue_from([bad])


def test_train_cli_passes_continue_from(tiny: dict[str, Any], glpft: TrainResult) -> None:  # noqa: F811
    """`umiq train --continue-from planner=DIR` records the start in the run's config."""
    import typer

    from worker.training.cli import register

    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command keeps `train` a subcommand
        """Unused."""

    out = tiny["root"] / "cli-continued"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data", str(tiny["data"]),
            "--out", str(out),
            "--base", str(tiny["base"]),
            "--max-samples", "2",
            "--max-length", "64",
            "--max-cut-share", "1",
            "--epochs-global", "1", "--epochs-planner", "1",
            "--epochs-caller", "1", "--epochs-summarizer", "1",
            "--no-progress",
            "--continue-from", f"planner={glpft.out / 'planner'}",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "train-config.json").read_text())
    assert config["continue_from"] == {"planner": str(glpft.out / "planner")}
    done = json.loads((out / "planner" / "done").read_text())
    assert done["init_from"] == str(glpft.out / "planner")

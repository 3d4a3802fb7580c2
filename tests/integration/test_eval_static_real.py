"""``umiq eval static`` with the real, untuned SmolLM2-135M base on reference trajectories."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")

import typer
from rich.console import Console
from typer.testing import CliRunner

from worker.evaluation.cli import register
from worker.settings import get_settings

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

METRICS = ("plan_acc", "act_em", "hallu_rate", "arg_f1", "rouge_l")


@pytest.fixture
def real_settings(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Process settings that point at the shared model store, with short generations."""
    monkeypatch.setenv("UMIQ_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("UMIQ_MAX_NEW_TOKENS", "48")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("real_settings")
def test_eval_static_on_the_untuned_base(toolbench_dir: Path, tmp_path: Path) -> None:
    """One trajectory (two steps) through the real base yields five metrics in [0, 1]."""
    app = typer.Typer()
    app.command()(lambda: None)  # a second command keeps "eval" a sub-command
    register(app, console=Console(width=120))
    out = tmp_path / "eval"
    data = toolbench_dir / "raw_data_stage_2.json"
    run = CliRunner().invoke(
        app,
        [
            "eval",
            "static",
            "--data",
            str(data),
            "--limit",
            "1",
            "--max-steps",
            "2",
            "--out",
            str(out),
        ],
    )
    assert run.exit_code == 0, run.output
    print(run.output)  # the metrics table, for the record (pytest -s)
    metrics = json.loads((out / "metrics.json").read_text())
    for name in METRICS:
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["steps"] == 2
    assert metrics["run"]["max_new_tokens"] == 48
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 2 and all(p["predictions"] for p in predictions)

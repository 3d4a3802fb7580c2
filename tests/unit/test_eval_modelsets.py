"""Model-set specs: parsing, the environment they put in force, and ``eval static --model-set``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from worker.agent.roles import Generation, GenerationRequest
from worker.errors import ConfigError
from worker.evaluation.cli import register
from worker.evaluation.modelsets import MODEL_ENV, ModelSet, applied, parse_named


def test_shipped_is_the_default_adapters() -> None:
    """``shipped`` turns the shipped adapters on and sets nothing else."""
    ms = ModelSet.parse("shipped")
    assert (ms.name, ms.spec, ms.path) == ("shipped", "shipped", None)
    assert ms.env == {"UMIQ_SHIPPED_ADAPTERS": "1"}
    assert "shipped" in ms.description


def test_base_turns_the_shipped_adapters_off() -> None:
    """``base`` is the untuned base: UMIQ_SHIPPED_ADAPTERS=0."""
    assert ModelSet.parse("base").env == {"UMIQ_SHIPPED_ADAPTERS": "0"}


def test_adapters_points_at_a_training_output(tmp_path: Path) -> None:
    """``adapters:DIR`` sets UMIQ_ADAPTERS_DIR to the absolute folder."""
    ms = ModelSet.parse(f"adapters:{tmp_path}")
    assert ms.name == "adapters"
    assert ms.env["UMIQ_ADAPTERS_DIR"] == str(tmp_path.resolve())
    assert ms.path == str(tmp_path.resolve())


def test_single_sets_the_agent_mode_and_its_adapter(tmp_path: Path) -> None:
    """``single:DIR`` sets UMIQ_AGENT=single and UMIQ_ADAPTERS_DIR=DIR."""
    ms = ModelSet.parse(f"single:{tmp_path}")
    assert ms.env["UMIQ_AGENT"] == "single"
    assert ms.env["UMIQ_ADAPTERS_DIR"] == str(tmp_path.resolve())
    assert "backbone" in ms.description


def test_checkpoint_is_an_untuned_local_base(tmp_path: Path) -> None:
    """``checkpoint:DIR`` makes DIR the base and runs it without the shipped adapters."""
    ms = ModelSet.parse(f"checkpoint:{tmp_path}")
    assert ms.env == {"UMIQ_BASE_MODEL": str(tmp_path.resolve()), "UMIQ_SHIPPED_ADAPTERS": "0"}


def test_a_name_before_the_spec_names_the_set(tmp_path: Path) -> None:
    """``NAME=SPEC`` names the set; the spec keeps the folder as written."""
    ms = ModelSet.parse(f"glpft=adapters:{tmp_path}")
    assert (ms.name, ms.spec) == ("glpft", f"adapters:{tmp_path}")


def test_a_folder_with_an_equals_sign_is_not_a_name(tmp_path: Path) -> None:
    """An ``=`` after the kind's colon belongs to the folder, not to a name."""
    ms = ModelSet.parse("adapters:/data/run=3")
    assert (ms.name, ms.path) == ("adapters", "/data/run=3")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tuned", "unknown model set"),
        ("adapters", "needs a folder"),
        ("single:", "needs a folder"),
        ("base:/x", "takes no folder"),
        ("=base", "name before '=' is empty"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(spec: str, message: str) -> None:
    """A spec that is not one of the five kinds is refused, saying what is accepted."""
    with pytest.raises(ConfigError, match=message):
        ModelSet.parse(spec)


def test_check_refuses_a_missing_folder(tmp_path: Path) -> None:
    """``check()`` names a folder that does not exist."""
    with pytest.raises(ConfigError, match="is not a directory"):
        ModelSet.parse(f"adapters:{tmp_path / 'nope'}").check()
    ModelSet.parse(f"adapters:{tmp_path}").check()


def test_environ_clears_the_variables_the_set_does_not_set(tmp_path: Path) -> None:
    """Adapter variables left in the environment cannot leak into a ``base`` run."""
    inherited = {
        "UMIQ_ADAPTERS_DIR": "/old",
        "UMIQ_AGENT": "single",
        "UMIQ_BASE_MODEL": "/ckpt",
        "UMIQ_MAX_STEPS": "3",
    }
    env = ModelSet.parse("base").environ(inherited)
    assert env == {"UMIQ_SHIPPED_ADAPTERS": "0", "UMIQ_BASE_MODEL": "/ckpt", "UMIQ_MAX_STEPS": "3"}
    assert all(key not in env for key in MODEL_ENV if key != "UMIQ_SHIPPED_ADAPTERS")


def test_shipped_drops_an_inherited_base() -> None:
    """The shipped adapters fit the default base only, so ``shipped`` drops UMIQ_BASE_MODEL."""
    env = ModelSet.parse("shipped").environ({"UMIQ_BASE_MODEL": "/ckpt"})
    assert env == {"UMIQ_SHIPPED_ADAPTERS": "1"}


def test_applied_puts_the_set_in_force_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside ``applied`` the settings see the set; afterwards the environment is as before."""
    from worker.settings import Settings

    monkeypatch.setenv("UMIQ_ADAPTERS_DIR", "/old")
    with applied(ModelSet.parse("base")):
        settings = Settings()
        assert "UMIQ_ADAPTERS_DIR" not in os.environ
    assert settings.adapters_dir is None and settings.shipped_adapters is False
    assert settings.resolved_adapters_dir is None
    assert os.environ["UMIQ_ADAPTERS_DIR"] == "/old"


def test_names_must_be_unique() -> None:
    """Two sets of one name are refused; bare specs are named after their kind."""
    assert [s.name for s in parse_named(["base", "ours=shipped"])] == ["base", "ours"]
    with pytest.raises(ConfigError, match="unique"):
        parse_named(["base", "base=shipped"])


def test_record_is_json() -> None:
    """``record()`` is what result files store: name, env, description, spec, path."""
    record = ModelSet.parse("base").record()
    assert json.loads(json.dumps(record)) == record
    assert set(record) == {"name", "env", "description", "spec", "path"}


class _Scripted:
    """Calls every step and concludes nothing: enough for the harness to score."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [Generation(text="Next: give up.", model="scripted") for _ in requests]

    def describe(self) -> dict[str, Any]:
        return {"backend": "scripted"}


def test_eval_static_takes_a_model_set(
    toolbench_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eval static --model-set base`` loads the untuned base and records the set and command."""
    monkeypatch.setenv("UMIQ_ADAPTERS_DIR", str(tmp_path))  # must not leak into the run
    seen: list[Any] = []
    app = typer.Typer()
    app.command()(lambda: None)
    register(app, load_model=lambda s: seen.append(s) or _Scripted(), console=Console(width=200))
    out = tmp_path / "out"
    run = CliRunner().invoke(
        app,
        [
            "eval",
            "static",
            "--data",
            str(toolbench_dir / "raw_data_stage_2.json"),
            "--limit",
            "1",
            "--model-set",
            "untuned=base",
            "--out",
            str(out),
        ],
    )
    assert run.exit_code == 0, run.output
    assert seen[0].adapters_dir is None and seen[0].resolved_adapters_dir is None
    recorded = json.loads((out / "metrics.json").read_text())["run"]
    assert recorded["model_set"]["name"] == "untuned"
    assert recorded["model_set"]["env"] == {"UMIQ_SHIPPED_ADAPTERS": "0"}
    assert recorded["command"].startswith("umiq eval static --data ")
    assert "--model-set untuned=base" in recorded["command"]


def test_eval_static_without_a_model_set_keeps_the_environment(
    toolbench_dir: Path, tmp_path: Path
) -> None:
    """Without ``--model-set`` static runs on the settings as before and records none."""
    app = typer.Typer()
    app.command()(lambda: None)
    register(app, load_model=lambda s: _Scripted(), console=Console(width=200))
    out = tmp_path / "out"
    data = str(toolbench_dir / "raw_data_stage_2.json")
    run = CliRunner().invoke(
        app, ["eval", "static", "--data", data, "--limit", "1", "--out", str(out)]
    )
    assert run.exit_code == 0, run.output
    assert json.loads((out / "metrics.json").read_text())["run"]["model_set"] is None


def test_eval_static_card_records_the_figures_for_the_run(
    toolbench_dir: Path, tmp_path: Path
) -> None:
    """``eval static --card RUN`` writes RUN/umiq-eval.json, leaves RUN/umiq-train.json
    as it was, and the run's model card shows the figures."""
    import shutil

    from worker.settings import SHIPPED_ADAPTERS

    card = tmp_path / "run"
    card.mkdir()
    shutil.copy(SHIPPED_ADAPTERS / "umiq-train.json", card / "umiq-train.json")
    before = (card / "umiq-train.json").read_bytes()
    app = typer.Typer()
    app.command()(lambda: None)
    register(app, load_model=lambda s: _Scripted(), console=Console(width=200))
    data = toolbench_dir / "raw_data_stage_2.json"
    args = ["eval", "static", "--data", str(data), "--limit", "1", "--out", str(tmp_path / "o")]
    run = CliRunner().invoke(app, [*args, "--card", str(card)])
    assert run.exit_code == 0, run.output
    name = f"static {data.name} (first 1)"
    recorded = json.loads((card / "umiq-eval.json").read_text())["evaluation"][name]
    assert recorded["command"].endswith(f"--card {card}")
    assert (card / "umiq-train.json").read_bytes() == before
    assert f"| {name} | {recorded['plan_acc']:.3f} |" in (card / "README.md").read_text()

"""``umiq eval report`` from synthetic result files: tables, plots, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from worker.errors import ConfigError
from worker.evaluation.cli import register
from worker.evaluation.live import LiveResult, LiveTask
from worker.evaluation.report import (
    LIVE_PLOT,
    MARKDOWN,
    STATIC_PLOT,
    gather,
    markdown,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"


def write_static(folder: Path, plan: float, act: float, command: str) -> Path:
    folder.mkdir(parents=True)
    metrics = {
        "plan_acc": plan,
        "act_em": act,
        "hallu_rate": 0.125,
        "arg_f1": 0.75,
        "rouge_l": 0.4,
        "steps": 8,
        "call_steps": 4,
        "arg_f1_steps": 3,
        "finish_steps": 2,
        "run": {
            "command": command,
            "model_set": {"name": folder.name, "spec": folder.name, "description": "d"},
        },
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def task(uid: str, family: str, passed: bool, cause: str | None, steps: int) -> LiveTask:
    return LiveTask(
        uid=uid,
        family=family,
        department="finance",
        instruction="…",
        task_id=uid,
        passed=passed,
        checker_passed=passed,
        reasons=[] if passed else ["r"],
        outcome="answered" if passed else "step_limit",
        reason="",
        answer="",
        steps=steps,
        audit_steps=steps * 3,
        calls=steps,
        tokens=1000 * steps,
        wall_s=10.0 * steps,
        cause=cause,
    )


def write_live(folder: Path, tasks: list[LiveTask], command: str) -> Path:
    run = {
        "command": command,
        "model_set": {"name": folder.name, "spec": folder.name, "description": "live set"},
        "split": "test",
        "seed": 0,
        "limit": len(tasks),
        "settings": {"max_steps": 3, "max_new_tokens": 32, "broker": "sqla+sqlite:///b"},
    }
    LiveResult(tasks, run).write(folder)
    return folder


@pytest.fixture
def results(tmp_path: Path) -> dict[str, list[str]]:
    """Static and live results of two model sets, as NAME=DIR items."""
    root = tmp_path / "results"
    write_static(root / "static" / "base", 0.5, 0.0, "umiq eval static --model-set base")
    write_static(root / "static" / "shipped", 0.5, 1.0, "umiq eval static --model-set shipped")
    write_live(
        root / "live" / "base",
        [
            task("invoice_status.test.000", "invoice_status", False, "step limit", 3),
            task("leave_balance.test.000", "leave_balance", False, "wrong tool", 2),
        ],
        "umiq eval live --model-set base",
    )
    write_live(
        root / "live" / "shipped",
        [
            task("invoice_status.test.000", "invoice_status", True, None, 2),
            task("leave_balance.test.000", "leave_balance", False, "wrong plan", 1),
        ],
        "umiq eval live --model-set shipped",
    )
    return {
        "static": [f"{n}={root / 'static' / n}" for n in ("base", "shipped")],
        "live": [f"{n}={root / 'live' / n}" for n in ("base", "shipped")],
    }


def test_static_table_shows_each_metric_with_its_denominator(results) -> None:
    """One row per model set; each cell is the value and the steps it is over."""
    page = markdown(gather(results["static"], results["live"]))
    assert "| base | 0.500 (n=8) | 0.000 (n=4) | 0.125 (n=8) | 0.750 (n=3) | 0.400 (n=2) |" in page
    assert "| shipped | 0.500 (n=8) | 1.000 (n=4) |" in page


def test_live_table_shows_pass_rate_means_and_causes(results) -> None:
    """The live row holds tasks, passed, pass rate, mean steps, tokens, wall s and causes."""
    page = markdown(gather(results["static"], results["live"]))
    assert "| base | 2 | 0 | 0.000 | 2.50 | 2500 | 25.0 | step limit 1, wrong tool 1 |" in page
    assert "| shipped | 2 | 1 | 0.500 | 1.50 | 1500 | 15.0 | wrong plan 1 |" in page


def test_family_table_and_commands(results) -> None:
    """Passed/tasks per family for each set, and the command behind every result."""
    page = markdown(gather(results["static"], results["live"], command="umiq eval report"))
    assert "| invoice_status | 0/1 | 1/1 |" in page
    assert "| leave_balance | 0/1 | 0/1 |" in page
    assert "- live `shipped`: `umiq eval live --model-set shipped`" in page
    assert "- static `base`: `umiq eval static --model-set base`" in page
    assert "Regenerate this page: `umiq eval report`" in page


def test_plots_are_written_and_not_empty(results, tmp_path: Path) -> None:
    """Both plots are PNG files with content; the page links them."""
    out = tmp_path / "docs"
    written = write_report(gather(results["static"], results["live"]), out)
    assert {p.name for p in written} == {MARKDOWN, STATIC_PLOT, LIVE_PLOT}
    for name in (STATIC_PLOT, LIVE_PLOT):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    page = (out / MARKDOWN).read_text()
    assert f"]({STATIC_PLOT})" in page and f"]({LIVE_PLOT})" in page


def test_report_is_idempotent_and_leaves_the_readme_alone(results, tmp_path: Path) -> None:
    """A second run rewrites identical bytes; the hand-written README is never touched."""
    out = tmp_path / "docs"
    out.mkdir()
    readme = out / "README.md"
    readme.write_text("# Results\n\nhand-written\n")
    inputs = gather(results["static"], results["live"])
    write_report(inputs, out)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    write_report(gather(results["static"], results["live"]), out)
    second = {p.name: p.read_bytes() for p in out.iterdir()}
    assert first == second
    assert readme.read_text() == "# Results\n\nhand-written\n"


def test_live_only_report_has_no_static_plot(results, tmp_path: Path) -> None:
    """Without static results there is no static section and no static plot."""
    out = tmp_path / "docs"
    write_report(gather([], results["live"]), out)
    assert not (out / STATIC_PLOT).exists()
    assert "Static metrics" not in (out / MARKDOWN).read_text()


def test_config_file_lists_results_relative_to_itself(results, tmp_path: Path) -> None:
    """A TOML config names result folders; relative ones are read from its folder."""
    config = tmp_path / "results" / "report.toml"
    config.write_text(
        '[static]\nbase = "static/base"\n\n[live]\nbase = "live/base"\nshipped = "live/shipped"\n'
    )
    inputs = gather(config=config)
    assert [r.name for r in inputs.static] == ["base"]
    assert [r.name for r in inputs.live] == ["base", "shipped"]


def test_bad_inputs_are_refused(results, tmp_path: Path) -> None:
    """No inputs, a folder without results, a missing name, or a name twice: refused."""
    with pytest.raises(ConfigError, match="nothing to report"):
        gather()
    with pytest.raises(ConfigError, match=r"no metrics\.json"):
        gather([f"x={tmp_path}"])
    with pytest.raises(ConfigError, match="NAME=DIR"):
        gather([str(tmp_path)])
    with pytest.raises(ConfigError, match="named twice"):
        gather([], [results["live"][0], results["live"][0]])


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(lambda: None)  # a second command keeps "eval" a sub-command
    register(app, console=Console(width=300))
    return app


def test_cli_report_writes_the_page(results, tmp_path: Path) -> None:
    """``eval report`` writes acme.md and the plots, recording its own command."""
    out = tmp_path / "docs"
    args = ["eval", "report", "--out", str(out)]
    for item in results["static"]:
        args += ["--static", item]
    for item in results["live"]:
        args += ["--live", item]
    run = CliRunner().invoke(_app(), args)
    assert run.exit_code == 0, run.output
    page = (out / MARKDOWN).read_text()
    assert "Regenerate this page: `umiq eval report --static base=" in page
    assert (out / LIVE_PLOT).is_file() and (out / STATIC_PLOT).is_file()
    failed = CliRunner().invoke(_app(), ["eval", "report", "--out", str(out)])
    assert failed.exit_code == 2 and "nothing to report" in failed.output


def test_eval_all_dry_run_lists_every_command(tmp_path: Path) -> None:
    """``eval all --dry-run`` prints static and live per model set, then the report."""
    run = CliRunner().invoke(
        _app(),
        [
            "eval",
            "all",
            "--limit",
            "2",
            "--model-set",
            "base=base",
            "--model-set",
            f"mine=adapters:{tmp_path}",
            "--out",
            str(tmp_path / "eval"),
            "--report-out",
            str(tmp_path / "docs"),
            "--dry-run",
        ],
    )
    assert run.exit_code == 0, run.output
    lines = [line for line in run.output.splitlines() if line.startswith("umiq eval")]
    assert [line.split()[2] for line in lines] == ["static", "live", "static", "live", "report"]
    assert f"--model-set mine=adapters:{tmp_path}" in lines[3]
    assert "--limit 2" in lines[1]
    assert f"--live mine={tmp_path / 'eval' / 'live' / 'mine'}" in lines[4]
    assert not (tmp_path / "eval").exists()


def write_shard(folder: Path, tasks: list[LiveTask], shard: str | None, wall_s: float) -> None:
    run = {
        "command": f"umiq eval live --shard {shard}",
        "model_set": {"name": "v5", "spec": "v5", "description": "live set"},
        "split": "test",
        "shard": shard,
        "wall_s": wall_s,
        "settings": {"max_steps": 3, "max_new_tokens": 32, "broker": "sqla+sqlite:///b"},
    }
    LiveResult(tasks, run).write(folder)


def test_a_folder_of_shards_is_merged_into_one_run(tmp_path: Path) -> None:
    write_shard(
        tmp_path / "v5" / "a",
        [task("a.test.000", "a", True, None, 2), task("b.test.000", "b", False, "wrong plan", 1)],
        "1/2",
        100.0,
    )
    write_shard(tmp_path / "v5" / "b", [task("a.test.001", "a", True, None, 2)], "2/2", 80.0)
    (live,) = gather(live=[f"v5={tmp_path / 'v5'}"]).live
    assert [t["uid"] for t in live.data["tasks"]] == ["a.test.000", "a.test.001", "b.test.000"]
    summary = live.data["summary"]
    assert (summary["tasks"], summary["passed"]) == (3, 2)
    assert summary["per_family"]["a"] == {"tasks": 2, "passed": 2, "pass_rate": 1.0}
    assert live.data["run"]["wall_s"] == 100.0  # the shards ran side by side
    assert [r["shard"] for r in live.data["run"]["shards"]] == ["1/2", "2/2"]
    page = markdown(gather(live=[f"v5={tmp_path / 'v5'}"]))
    assert "| v5 | 3 | 2 |" in page
    assert "`umiq eval live --shard 1/2` and `umiq eval live --shard 2/2`" in page


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        (["1/2"], "missing"),  # half a run is not the run
        (["1/2", "1/2"], "parts K/N"),
        (["1/2", "2/3"], "parts K/N"),
        (["1/2", None], "parts K/N"),
    ],
)
def test_shards_that_are_not_one_whole_run_are_refused(
    tmp_path: Path, shards: list[str | None], message: str
) -> None:
    for i, shard in enumerate(shards):
        write_shard(
            tmp_path / "v5" / str(i), [task(f"a.test.{i:03d}", "a", True, None, 1)], shard, 1.0
        )
    with pytest.raises(ConfigError, match=message):
        gather(live=[f"v5={tmp_path / 'v5'}"])

"""``umiq eval report`` (tables and plots from result folders) and ``umiq eval all``
(static and live for each model set, then the report)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from worker.errors import UmiqError
from worker.evaluation.cli.common import CliEnv, Split, command_line, parse_families


def report_command(env: CliEnv) -> Callable[..., None]:
    """``eval report``, printing the files it writes to ``env.console``."""

    def report(
        static: list[str] = typer.Option(
            [], "--static", help="NAME=DIR of an `eval static` result (repeatable)."
        ),
        live: list[str] = typer.Option(
            [], "--live", help="NAME=DIR of an `eval live` result (repeatable)."
        ),
        config: Path | None = typer.Option(
            None, exists=True, dir_okay=False, help="TOML/JSON with [static] and [live] tables."
        ),
        out: Path = typer.Option(Path("docs/results"), help="Where to write acme.md and plots."),
    ) -> None:
        """Tables (acme.md) and plots from static and live result folders."""
        from worker.evaluation.report import gather, write_report

        command = command_line(
            ["eval", "report"],
            [("--static", static), ("--live", live), ("--config", config), ("--out", out)],
        )
        try:
            written = write_report(gather(static, live, config, command=command), out)
        except UmiqError as exc:
            raise env.fail(exc) from exc
        for path in written:
            env.console.print(f"wrote {path}")

    return report


def all_command(env: CliEnv) -> Callable[..., None]:
    """``eval all``, printing its commands and their output to ``env.console``."""

    def run_all(
        split: Split = typer.Option(Split.test, help="Catalogue split (held out from training)."),
        limit: int | None = typer.Option(None, min=1, help="Tasks (and trajectories) to run."),
        families: str | None = typer.Option(None, help="Comma-separated task families."),
        seed: int = typer.Option(0, help="Seed of the Acme world and of the task draw."),
        per_family: int = typer.Option(2, min=1, help="Tasks per family drawn from the split."),
        model_set: list[str] = typer.Option(
            ["base=base", "shipped=shipped"],
            "--model-set",
            help="NAME=SPEC, repeatable (default: base and shipped).",
        ),
        out: Path = typer.Option(
            Path(".umiq/eval"), help="Results: OUT/data, OUT/static/NAME, OUT/live/NAME."
        ),
        report_out: Path = typer.Option(
            Path("docs/results"), help="Where the report (acme.md, plots) goes."
        ),
        max_steps: int | None = typer.Option(None, min=1, help="Live step limit per task."),
        max_new_tokens: int | None = typer.Option(None, min=1, help="Token limit per output."),
        dry_run: bool = typer.Option(False, help="Print the commands and stop."),
    ) -> None:
        """Static and live evaluation of every model set, then the report: one command.

        Writes the expert's trajectories of the chosen tasks to OUT/data/SPLIT.json, runs
        `umiq eval static` on them and `umiq eval live` on the same tasks for each model
        set (each a subprocess that records its command), then writes the report.

        Run time on a 2-core CPU (measured here, the cores shared with a training job):
        one generation over the ~1,200-token Acme prompts takes 20-75 s. Static costs
        about two generations per gold step (~2.5 steps a task); live about two per
        planner step, up to 2 x max-steps a task (the shipped set: 500 s for a task it
        answered in 6 steps). Budget ~1-2 min per static task and ~2 x max-steps x 45 s
        per live task, per model set: --limit 2 --max-steps 3 with two sets takes about
        25 min; the whole test split (54 tasks) with 12 steps many hours.
        """
        from worker.evaluation.live import write_split_trajectories
        from worker.evaluation.modelsets import parse_named
        from worker.evaluation.report import gather, write_report

        split_name = split.value
        command = command_line(
            ["eval", "all"],
            [
                ("--split", split_name),
                ("--limit", limit),
                ("--families", families),
                ("--seed", seed),
                ("--per-family", per_family),
                ("--model-set", model_set),
                ("--out", out),
                ("--report-out", report_out),
                ("--max-steps", max_steps),
                ("--max-new-tokens", max_new_tokens),
            ],
        )

        try:
            sets = parse_named(model_set)
        except UmiqError as exc:
            raise env.fail(exc) from exc
        data = out / "data" / f"{split_name}.json"
        steps: list[list[str]] = []
        for chosen in sets:
            named = f"{chosen.name}={chosen.spec}"
            steps += [
                _static_args(data, named, out / "static" / chosen.name, max_new_tokens),
                _live_args(
                    named,
                    out / "live" / chosen.name,
                    split=split_name,
                    seed=seed,
                    per_family=per_family,
                    options=[
                        ("--limit", limit),
                        ("--families", families),
                        ("--max-steps", max_steps),
                        ("--max-new-tokens", max_new_tokens),
                    ],
                ),
            ]
        static_dirs = [f"{chosen.name}={out / 'static' / chosen.name}" for chosen in sets]
        live_dirs = [f"{chosen.name}={out / 'live' / chosen.name}" for chosen in sets]
        report_args = ["eval", "report", "--out", str(report_out)]
        report_args += [arg for item in static_dirs for arg in ("--static", item)]
        report_args += [arg for item in live_dirs for arg in ("--live", item)]
        env.console.print(f"gold trajectories of the {split_name} tasks → {data}")
        for args in [*steps, report_args]:  # one line each, unwrapped, to copy and paste
            env.console.print(
                shlex.join(["umiq", *args]), soft_wrap=True, markup=False, highlight=False
            )
        if dry_run:
            return
        try:
            count = write_split_trajectories(
                data,
                split=split_name,
                seed=seed,
                per_family=per_family,
                families=parse_families(families),
                limit=limit,
            )
        except UmiqError as exc:
            raise env.fail(exc) from exc
        env.console.print(f"wrote {count} trajectories to {data}")
        _run_steps(env, steps)
        env.console.rule("umiq eval report")
        try:  # in-process, so that the page names this command as the one that remakes it
            written = write_report(gather(static_dirs, live_dirs, command=command), report_out)
        except UmiqError as exc:
            raise env.fail(exc) from exc
        for path in written:
            env.console.print(f"wrote {path}")

    return run_all


def _static_args(data: Path, named: str, out: Path, max_new_tokens: int | None) -> list[str]:
    """``eval static``'s arguments for the model set ``named`` (NAME=SPEC)."""
    args = ["eval", "static", "--data", str(data), "--model-set", named, "--out", str(out)]
    if max_new_tokens:
        args += ["--max-new-tokens", str(max_new_tokens)]
    return args


def _live_args(
    named: str,
    out: Path,
    *,
    split: str,
    seed: int,
    per_family: int,
    options: list[tuple[str, object]],
) -> list[str]:
    """``eval live``'s arguments for the model set ``named``; ``options`` that are unset
    are left out."""
    args = ["eval", "live", "--split", split, "--seed", str(seed)]
    args += ["--per-family", str(per_family), "--model-set", named, "--out", str(out)]
    for name, value in options:
        if value:
            args += [name, str(value)]
    return args


def _run_steps(env: CliEnv, steps: list[list[str]]) -> None:
    """Run each ``umiq`` command in a subprocess; the first that fails ends the run."""
    for args in steps:
        env.console.rule(shlex.join(["umiq", *args[:2]]))
        done = subprocess.run([sys.executable, "-m", "worker.cli", *args], check=False)
        if done.returncode != 0:
            env.console.print(f"[red]failed ({done.returncode}):[/red] umiq {shlex.join(args)}")
            raise typer.Exit(done.returncode)

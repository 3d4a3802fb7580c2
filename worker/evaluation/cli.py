"""``umiq eval``: static, live, report and all (wired in by ``worker.cli``).

- ``eval static``: teacher-forced α-UMi metrics on ToolBench-format trajectories;
- ``eval score``: score an existing ``predictions.json``;
- ``eval live``: held-out Acme tasks end to end through a real worker
  (``worker.evaluation.live``);
- ``eval report``: result folders → ``acme.md`` and plots (``worker.evaluation.report``);
- ``eval all``: static and live for each model set, then the report, in one command.

``--model-set`` (static, live, all) picks the role models: ``shipped`` (default),
``base``, ``adapters:DIR``, ``single:DIR``, ``checkpoint:DIR``
(``worker.evaluation.modelsets``). Every result file records the command that made it.
"""

from __future__ import annotations

import enum
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.errors import UmiqError
from worker.evaluation.live import Hooks
from worker.evaluation.metrics import STATIC_METRICS


class Split(enum.StrEnum):
    """The catalogue splits held out from training."""

    dev = "dev"
    test = "test"


if TYPE_CHECKING:
    from worker.agent.roles import RoleModel
    from worker.evaluation.live import LiveResult
    from worker.evaluation.metrics import StaticMetrics
    from worker.settings import Settings

ModelLoader = Callable[["Settings"], "RoleModel"]


def metrics_table(metrics: StaticMetrics, title: str = "static metrics") -> Table:
    """The five metrics, each with its denominator."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("over", justify="right")
    for label, name, count in STATIC_METRICS:
        table.add_row(label, f"{getattr(metrics, name):.4f}", str(getattr(metrics, count)))
    return table


def plan_misses(metrics: StaticMetrics) -> str:
    """Plan ACC's misses by kind, most frequent first: where the planner goes wrong."""
    misses = [
        (pair, n) for pair, n in metrics.plan_confusion.items() if len(set(pair.split("→"))) == 2
    ]
    if not misses:
        return "plan misses: none"
    ranked = sorted(misses, key=lambda kv: (-kv[1], kv[0]))
    return "plan misses (gold → predicted): " + ", ".join(f"{pair} {n}" for pair, n in ranked)


def command_line(words: Sequence[str], options: Sequence[tuple[str, Any]]) -> str:
    """``umiq <words> --opt value …`` for the options that are set (lists repeat the option)."""
    parts = ["umiq", *words]
    for name, value in options:
        if value is None or value is False or value == []:
            continue
        if value is True:
            parts.append(name)
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            parts += [name, str(item)]
    return shlex.join(parts)


def live_tables(result: LiveResult) -> tuple[Table, Table]:
    """A row per task, and the summary with failures by cause."""
    tasks = Table(title="live tasks")
    for column, justify in (
        ("task", "left"),
        ("dept", "left"),
        ("passed", "center"),
        ("outcome", "left"),
        ("steps", "right"),
        ("tokens", "right"),
        ("wall s", "right"),
        ("cause", "left"),
    ):
        tasks.add_column(column, justify=justify)  # type: ignore[arg-type]
    for task in result.tasks:
        tasks.add_row(
            task.uid,
            task.department,
            "[green]yes[/green]" if task.passed else "[red]no[/red]",
            str(task.outcome),
            str(task.steps),
            str(task.tokens),
            f"{task.wall_s:.1f}",
            task.cause or "",
        )
    s = result.summary
    summary = Table(title=f"live summary ({result.run['model_set']['name']})")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_row("pass rate", f"{s['pass_rate']:.3f} ({s['passed']}/{s['tasks']})")
    summary.add_row("mean steps", f"{s['mean_steps']:.2f}")
    summary.add_row("mean tokens", f"{s['mean_tokens']:.0f}")
    summary.add_row("mean wall s", f"{s['mean_wall_s']:.1f}")
    for cause, count in s["causes"].items():
        if count:
            summary.add_row(f"failed: {cause}", str(count))
    return tasks, summary


def _load_model(settings: Settings) -> RoleModel:
    from worker.models import load_role_model

    return load_role_model(settings)


def _families(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [f.strip() for f in text.split(",") if f.strip()]


def register(
    app: typer.Typer,
    *,
    load_model: ModelLoader | None = None,
    console: Console | None = None,
) -> typer.Typer:
    """Add the ``eval`` sub-app to ``app``; ``load_model`` replaces the real model (tests)."""
    eval_app = typer.Typer(no_args_is_help=True, help="Evaluate the role models.")
    app.add_typer(eval_app, name="eval")
    out_console = console or Console()
    loader = load_model or _load_model

    def fail(exc: Exception) -> typer.Exit:
        out_console.print(f"[red]error:[/red] {exc}")
        return typer.Exit(2)

    @eval_app.command("static")
    def static(
        data: Path = typer.Option(
            ..., exists=True, help="ToolBench-format trajectories: a JSON list file or a folder."
        ),
        adapters: Path | None = typer.Option(
            None, help="Folder with planner/, caller/, summarizer/ LoRA adapters."
        ),
        base: str | None = typer.Option(
            None, help="Base model: a model-store name or a local checkpoint folder."
        ),
        model_set: str | None = typer.Option(
            None,
            "--model-set",
            help="shipped, base, adapters:DIR, single:DIR or checkpoint:DIR (NAME=SPEC names "
            "it); default: the settings from the environment.",
        ),
        limit: int | None = typer.Option(None, min=1, help="Evaluate the first N trajectories."),
        max_steps: int | None = typer.Option(None, min=1, help="Evaluate at most N steps."),
        out: Path = typer.Option(Path("eval-static"), help="Where to write the result files."),
        constrained: bool = typer.Option(
            False, help="Constrain the caller to the step's tools and JSON arguments."
        ),
        batch_size: int = typer.Option(8, min=1, help="Requests per generate() call."),
        max_new_tokens: int | None = typer.Option(
            None, min=1, help="Token limit per role output (default: the settings')."
        ),
        card: Path | None = typer.Option(
            None,
            help="A `umiq train` output folder (or the shipped one): add the figures to its "
            "model card, named after the data file and limit.",
        ),
    ) -> None:
        """Teacher-forced α-UMi static metrics; writes predictions.json and metrics.json."""
        from worker.agent.samples import load_trajectories
        from worker.evaluation.modelsets import ModelSet, applied
        from worker.evaluation.static import evaluate_static, evaluation_steps
        from worker.settings import Settings, get_settings

        command = command_line(
            ["eval", "static"],
            [
                ("--data", data),
                ("--adapters", adapters),
                ("--base", base),
                ("--model-set", model_set),
                ("--limit", limit),
                ("--max-steps", max_steps),
                ("--out", out),
                ("--constrained", constrained),
                ("--batch-size", batch_size if batch_size != 8 else None),
                ("--max-new-tokens", max_new_tokens),
                ("--card", card),
            ],
        )
        try:
            chosen = None
            if model_set is not None:
                chosen = ModelSet.parse(model_set)
                chosen.check()
                with applied(chosen):
                    settings = Settings()
            else:
                settings = get_settings()
            update: dict[str, Any] = {}
            if adapters is not None:
                update["adapters_dir"] = adapters
            if base is not None:
                update["base_model"] = base
            if max_new_tokens is not None:
                update["max_new_tokens"] = max_new_tokens
            settings = settings.model_copy(update=update)
            agent = getattr(settings, "agent", "multi")
            steps = evaluation_steps(load_trajectories(data), limit=limit, max_steps=max_steps)
            with out_console.status("loading the role models…"):
                model = loader(settings)
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=out_console,
            ) as bar:
                task = bar.add_task("generating", total=len(steps))
                extra: dict[str, Any] = {"agent": agent} if agent != "multi" else {}
                result = evaluate_static(
                    model,
                    steps,
                    max_new_tokens=settings.max_new_tokens,
                    batch_size=batch_size,
                    constrained=constrained,
                    progress=lambda n: bar.advance(task, n),
                    on_total=lambda total: bar.update(task, total=total),
                    **extra,
                )
        except UmiqError as exc:
            raise fail(exc) from exc
        result.run["data"] = str(data)
        result.run["limit"] = limit
        result.run["command"] = command
        result.run["model_set"] = chosen.record() if chosen is not None else None
        predictions, metrics = result.write(out)
        out_console.print(metrics_table(result.metrics))
        out_console.print(plan_misses(result.metrics))
        out_console.print(f"wrote {predictions} and {metrics}")
        if card is not None:
            from dataclasses import asdict

            from worker.training.card import record_evaluation

            name = f"static {data.name}" + (f" (first {limit})" if limit else "")
            figures = {**asdict(result.metrics), "command": command}
            try:
                path = record_evaluation(card, name, figures)
            except UmiqError as exc:
                raise fail(exc) from exc
            out_console.print(f"added to the model card {path}")

    @eval_app.command("score")
    def score_file(
        predictions: Path = typer.Argument(
            ..., exists=True, dir_okay=False, help="A predictions.json in the α-UMi form."
        ),
    ) -> None:
        """Score an existing predictions.json (ours or the α-UMi pipeline's)."""
        from worker.evaluation.metrics import score

        try:
            metrics = score(json.loads(predictions.read_text(encoding="utf-8")))
        except UmiqError as exc:
            raise fail(exc) from exc
        out_console.print(metrics_table(metrics, title=str(predictions)))

    @eval_app.command("live")
    def live(
        split: Split = typer.Option(Split.test, help="Catalogue split (held out from training)."),
        limit: int | None = typer.Option(None, min=1, help="Run the first N tasks."),
        families: str | None = typer.Option(
            None, help="Comma-separated task families (default: all the systems support)."
        ),
        seed: int = typer.Option(0, help="Seed of the Acme world and of the task draw."),
        per_family: int = typer.Option(
            2,
            min=1,
            help="Tasks per family drawn from the split: the first N of what `umiq data build` "
            "draws there with the same seed.",
        ),
        model_set: str = typer.Option(
            "shipped",
            "--model-set",
            help="shipped, base, adapters:DIR, single:DIR or checkpoint:DIR (NAME=SPEC).",
        ),
        out: Path = typer.Option(Path("eval-live"), help="Where to write live.json."),
        max_steps: int | None = typer.Option(
            None, min=1, help="Step limit per task (default: UMIQ_MAX_STEPS, 12)."
        ),
        max_new_tokens: int | None = typer.Option(
            None, min=1, help="Token limit per role output (default: UMIQ_MAX_NEW_TOKENS)."
        ),
        timeout: float | None = typer.Option(
            None, min=1, help="Seconds to wait for one task (default: 300 + 180 per step)."
        ),
        work_dir: Path | None = typer.Option(
            None, help="Broker, audit log, worker log and Acme data (default: OUT/work)."
        ),
    ) -> None:
        """Held-out Acme tasks end to end through a real worker; writes live.json."""
        from worker.evaluation.live import LiveConfig, run_live
        from worker.evaluation.modelsets import ModelSet

        split_name = split.value

        command = command_line(
            ["eval", "live"],
            [
                ("--split", split_name),
                ("--limit", limit),
                ("--families", families),
                ("--seed", seed),
                ("--per-family", per_family),
                ("--model-set", model_set),
                ("--out", out),
                ("--max-steps", max_steps),
                ("--max-new-tokens", max_new_tokens),
                ("--timeout", timeout),
                ("--work-dir", work_dir),
            ],
        )
        try:
            config = LiveConfig(
                out=out,
                model_set=ModelSet.parse(model_set),
                split=split_name,
                limit=limit,
                families=_families(families),
                seed=seed,
                per_family=per_family,
                max_steps=max_steps,
                max_new_tokens=max_new_tokens,
                timeout=timeout,
                work_dir=work_dir,
                command=command,
            )
            with _LiveProgress(out_console) as hooks:
                result = run_live(config, hooks)
        except UmiqError as exc:
            raise fail(exc) from exc
        path = result.write(out)
        for table in live_tables(result):
            out_console.print(table)
        out_console.print(f"wrote {path}")

    @eval_app.command("report")
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
            raise fail(exc) from exc
        for path in written:
            out_console.print(f"wrote {path}")

    @eval_app.command("all")
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
            raise fail(exc) from exc
        data = out / "data" / f"{split_name}.json"
        steps: list[list[str]] = []
        for chosen in sets:
            named = f"{chosen.name}={chosen.spec}"
            static_args = ["eval", "static", "--data", str(data), "--model-set", named]
            static_args += ["--out", str(out / "static" / chosen.name)]
            if max_new_tokens:
                static_args += ["--max-new-tokens", str(max_new_tokens)]
            live_args = ["eval", "live", "--split", split_name, "--seed", str(seed)]
            live_args += ["--per-family", str(per_family), "--model-set", named]
            live_args += ["--out", str(out / "live" / chosen.name)]
            for name, value in (
                ("--limit", limit),
                ("--families", families),
                ("--max-steps", max_steps),
                ("--max-new-tokens", max_new_tokens),
            ):
                if value:
                    live_args += [name, str(value)]
            steps += [static_args, live_args]
        static_dirs = [f"{chosen.name}={out / 'static' / chosen.name}" for chosen in sets]
        live_dirs = [f"{chosen.name}={out / 'live' / chosen.name}" for chosen in sets]
        report_args = ["eval", "report", "--out", str(report_out)]
        report_args += [arg for item in static_dirs for arg in ("--static", item)]
        report_args += [arg for item in live_dirs for arg in ("--live", item)]
        out_console.print(f"gold trajectories of the {split_name} tasks → {data}")
        for args in [*steps, report_args]:  # one line each, unwrapped, to copy and paste
            out_console.print(
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
                families=_families(families),
                limit=limit,
            )
        except UmiqError as exc:
            raise fail(exc) from exc
        out_console.print(f"wrote {count} trajectories to {data}")
        for args in steps:
            out_console.rule(shlex.join(["umiq", *args[:2]]))
            done = subprocess.run([sys.executable, "-m", "worker.cli", *args], check=False)
            if done.returncode != 0:
                out_console.print(f"[red]failed ({done.returncode}):[/red] umiq {shlex.join(args)}")
                raise typer.Exit(done.returncode)
        out_console.rule("umiq eval report")
        try:  # in-process, so that the page names this command as the one that remakes it
            written = write_report(gather(static_dirs, live_dirs, command=command), report_out)
        except UmiqError as exc:
            raise fail(exc) from exc
        for path in written:
            out_console.print(f"wrote {path}")

    return eval_app


class _LiveProgress(Hooks):
    """A rich progress bar over ``run_live``'s hooks."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.bar.add_task("preparing", total=None)
        self.passed = 0
        self.done = 0

    def __enter__(self) -> _LiveProgress:
        self.bar.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.bar.stop()

    def status(self, text: str) -> None:
        self.bar.update(self.task, description=text)

    def tasks(self, total: int) -> None:
        self.bar.update(self.task, total=total, description=f"{total} tasks")

    def task_started(self, index: int, instance: Any) -> None:
        self.bar.update(self.task, description=f"{instance.uid} ({self.passed}/{self.done} passed)")

    def task_done(self, task: Any) -> None:
        self.done += 1
        self.passed += int(task.passed)
        self.bar.update(
            self.task, advance=1, description=f"{task.uid} ({self.passed}/{self.done} passed)"
        )

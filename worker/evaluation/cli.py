"""``umiq eval``: static evaluation of the role models (wired in by ``worker.cli``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.errors import UmiqError

if TYPE_CHECKING:
    from worker.agent.roles import RoleModel
    from worker.evaluation.metrics import StaticMetrics
    from worker.settings import Settings

ModelLoader = Callable[["Settings"], "RoleModel"]

_ROWS = (
    ("Plan ACC", "plan_acc", "steps"),
    ("Act. EM", "act_em", "call_steps"),
    ("Hallu. rate", "hallu_rate", "steps"),
    ("Arg. F1", "arg_f1", "arg_f1_steps"),
    ("R-L", "rouge_l", "finish_steps"),
)


def metrics_table(metrics: StaticMetrics, title: str = "static metrics") -> Table:
    """The five metrics, each with its denominator."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("over", justify="right")
    for label, name, count in _ROWS:
        table.add_row(label, f"{getattr(metrics, name):.4f}", str(getattr(metrics, count)))
    return table


def _load_model(settings: Settings) -> RoleModel:
    from worker.models import load_role_model

    return load_role_model(settings)


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
    ) -> None:
        """Teacher-forced α-UMi static metrics; writes predictions.json and metrics.json."""
        from worker.agent.samples import load_trajectories
        from worker.evaluation.static import evaluate_static, evaluation_steps
        from worker.settings import get_settings

        settings = get_settings()
        update: dict[str, Any] = {}
        if adapters is not None:
            update["adapters_dir"] = adapters
        if base is not None:
            update["base_model"] = base
        if max_new_tokens is not None:
            update["max_new_tokens"] = max_new_tokens
        settings = settings.model_copy(update=update)
        try:
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
                result = evaluate_static(
                    model,
                    steps,
                    max_new_tokens=settings.max_new_tokens,
                    batch_size=batch_size,
                    constrained=constrained,
                    progress=lambda n: bar.advance(task, n),
                    on_total=lambda total: bar.update(task, total=total),
                )
        except UmiqError as exc:
            out_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        result.run["data"] = str(data)
        result.run["limit"] = limit
        predictions, metrics = result.write(out)
        out_console.print(metrics_table(result.metrics))
        out_console.print(f"wrote {predictions} and {metrics}")

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
            out_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        out_console.print(metrics_table(metrics, title=str(predictions)))

    return eval_app

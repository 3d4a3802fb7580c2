"""``umiq eval static`` and ``umiq eval score``: teacher-forced α-UMi metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from worker.errors import UmiqError
from worker.evaluation.cli.common import CliEnv, command_line
from worker.evaluation.cli.tables import metrics_table, plan_misses, progress_bar

if TYPE_CHECKING:
    from worker.evaluation.modelsets import ModelSet
    from worker.evaluation.static import StaticResult
    from worker.settings import Settings


def static_command(env: CliEnv) -> Callable[..., None]:
    """``eval static``, printing to ``env.console`` and loading models with ``env.loader``."""

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
            settings, chosen = _settings(model_set, adapters, base, max_new_tokens)
            result = _evaluate(
                env,
                settings,
                data,
                limit=limit,
                max_steps=max_steps,
                batch_size=batch_size,
                constrained=constrained,
            )
        except UmiqError as exc:
            raise env.fail(exc) from exc
        result.run["data"] = str(data)
        result.run["limit"] = limit
        result.run["command"] = command
        result.run["model_set"] = chosen.record() if chosen is not None else None
        predictions, metrics = result.write(out)
        env.console.print(metrics_table(result.metrics))
        env.console.print(plan_misses(result.metrics))
        env.console.print(f"wrote {predictions} and {metrics}")
        if card is not None:
            _add_to_card(env, card, result, data=data, limit=limit, command=command)

    return static


def _settings(
    model_set: str | None, adapters: Path | None, base: str | None, max_new_tokens: int | None
) -> tuple[Settings, ModelSet | None]:
    """The settings to load the role models with (the model set's, else the environment's,
    with the options on top) and the model set, if one was named."""
    from worker.evaluation.modelsets import ModelSet, applied
    from worker.settings import Settings, get_settings

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
    return settings.model_copy(update=update), chosen


def _evaluate(
    env: CliEnv,
    settings: Settings,
    data: Path,
    *,
    limit: int | None,
    max_steps: int | None,
    batch_size: int,
    constrained: bool,
) -> StaticResult:
    """Load the role models and generate every step of ``data`` under a progress bar."""
    from worker.data.samples import load_trajectories
    from worker.evaluation.static import evaluate_static, evaluation_steps

    agent = getattr(settings, "agent", "multi")
    steps = evaluation_steps(load_trajectories(data), limit=limit, max_steps=max_steps)
    with env.console.status("loading the role models…"):
        model = env.loader(settings)
    with progress_bar(env.console) as bar:
        task = bar.add_task("generating", total=len(steps))
        extra: dict[str, Any] = {"agent": agent} if agent != "multi" else {}
        return evaluate_static(
            model,
            steps,
            max_new_tokens=settings.max_new_tokens,
            batch_size=batch_size,
            constrained=constrained,
            progress=lambda n: bar.advance(task, n),
            on_total=lambda total: bar.update(task, total=total),
            **extra,
        )


def _add_to_card(
    env: CliEnv, card: Path, result: StaticResult, *, data: Path, limit: int | None, command: str
) -> None:
    """Record the metrics for the ``umiq train`` output ``card`` (evaluation's own file,
    ``umiq-eval.json``) and re-render its model card, which shows them."""
    from dataclasses import asdict

    from worker.evaluation.records import record_evaluation
    from worker.training.card import write_readme

    name = f"static {data.name}" + (f" (first {limit})" if limit else "")
    figures = {**asdict(result.metrics), "command": command}
    try:
        path = record_evaluation(card, name, figures)
        readme = write_readme(card)
    except UmiqError as exc:
        raise env.fail(exc) from exc
    env.console.print(f"recorded in {path}; model card {readme}")


def score_command(env: CliEnv) -> Callable[..., None]:
    """``eval score``, printing to ``env.console``."""

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
            raise env.fail(exc) from exc
        env.console.print(metrics_table(metrics, title=str(predictions)))

    return score_file

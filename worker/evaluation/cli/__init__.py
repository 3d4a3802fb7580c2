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

One module per command (``cmd_static``: static and score, ``cmd_live``, ``cmd_report``:
report and all), the tables and progress bar they print in ``tables``, what they share
in ``common``; ``register`` adds each to the ``eval`` group.
"""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console

from worker.evaluation.cli import cmd_live, cmd_report, cmd_static
from worker.evaluation.cli.common import CliEnv, ModelLoader, Split, command_line, real_loader
from worker.evaluation.cli.tables import LiveProgress, live_tables, metrics_table, plan_misses

#: ``eval`` commands in the order ``umiq eval --help`` lists them: name, maker.
COMMANDS: tuple[tuple[str, Callable[[CliEnv], Callable[..., None]]], ...] = (
    ("static", cmd_static.static_command),
    ("score", cmd_static.score_command),
    ("live", cmd_live.live_command),
    ("report", cmd_report.report_command),
    ("all", cmd_report.all_command),
)


def register(
    app: typer.Typer,
    *,
    load_model: ModelLoader | None = None,
    console: Console | None = None,
) -> typer.Typer:
    """Add the ``eval`` sub-app to ``app``; ``load_model`` replaces the real model (tests)."""
    eval_app = typer.Typer(no_args_is_help=True, help="Evaluate the role models.")
    app.add_typer(eval_app, name="eval")
    env = CliEnv(console or Console(), load_model or real_loader)
    for name, make in COMMANDS:
        eval_app.command(name)(make(env))
    return eval_app


__all__ = [
    "COMMANDS",
    "CliEnv",
    "LiveProgress",
    "ModelLoader",
    "Split",
    "command_line",
    "live_tables",
    "metrics_table",
    "plan_misses",
    "register",
]

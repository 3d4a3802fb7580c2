"""What the ``eval`` commands print: metric and live tables, and the live progress bar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.evaluation.live import Hooks
from worker.evaluation.metrics import STATIC_METRICS

if TYPE_CHECKING:
    from worker.evaluation.live import LiveResult
    from worker.evaluation.metrics import StaticMetrics


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


def progress_bar(console: Console) -> Progress:
    """A bar with its description, count and elapsed time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


class LiveProgress(Hooks):
    """A rich progress bar over ``run_live``'s hooks."""

    def __init__(self, console: Console) -> None:
        self.bar = progress_bar(console)
        self.task = self.bar.add_task("preparing", total=None)
        self.passed = 0
        self.done = 0

    def __enter__(self) -> LiveProgress:
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

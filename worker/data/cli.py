"""``umiq data``: build the world's dataset (Acme by default), import and export ToolBench data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    data_app = typer.Typer(
        no_args_is_help=True,
        help="Training data: the world's gold trajectories (UMIQ_WORLD, Acme), ToolBench.",
    )
    data_app.command("build")(build)
    data_app.command("import-toolbench")(import_toolbench)
    data_app.command("export-toolbench")(export_toolbench)
    app.add_typer(data_app, name="data")


def build(
    out: Path = typer.Option(..., "--out", help="Folder to write the dataset to."),
    seed: int = typer.Option(0, "--seed", help="Seed of the world's systems and of the task draw."),
    per_family: int = typer.Option(
        20, "--per-family", help="Train tasks per family (dev/test: a fifth, at least 2)."
    ),
    raw: bool = typer.Option(
        False,
        "--raw",
        help="Write the raw records instead of what the model sees (tokens, minimized).",
    ),
    restate_request: bool = typer.Option(
        False,
        "--restate-request",
        help="Planner prompts repeat the request after the history (compact view; "
        "recorded in each trajectory's prompt_view, so training and serving follow).",
    ),
) -> None:
    """Solve the world's tasks on its fresh systems, check every one, write the splits."""
    from rich.progress import Progress

    from worker.data.build import BuildError, build_dataset

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("solving", total=None)

        def advance(family: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"solving {family}")

        try:
            result = build_dataset(
                out,
                seed=seed,
                per_family=per_family,
                progress=advance,
                view=not raw,
                restate=restate_request,
            )
        except BuildError as exc:
            console.print(f"[red]build failed:[/red] {exc}")
            raise typer.Exit(1) from exc
    print_stats(result.stats)
    console.print(f"wrote {out} ({result.stats['seconds']} s)")


def print_stats(stats: dict[str, Any]) -> None:
    """The build statistics as tables."""
    families = Table(title="Tasks per family")
    for column in ("family", "kind", "systems", "train", "dev", "test"):
        families.add_column(
            column, justify="right" if column in ("train", "dev", "test") else "left"
        )
    for fid, row in stats["families"].items():
        families.add_row(
            fid, row["kind"], ",".join(row["systems"]),
            *(str(row.get(split, 0)) for split in ("train", "dev", "test")),
        )  # fmt: skip
    families.add_row(
        "total", "", "", *(str(stats["tasks"].get(s, 0)) for s in ("train", "dev", "test"))
    )
    console.print(families)
    roles = Table(title=f"Train samples and token lengths ({stats['tokenizer']})")
    for column in (
        "role",
        "samples",
        "input mean",
        "input p95",
        "input max",
        "target mean",
        "target max",
    ):
        roles.add_column(column, justify="left" if column == "role" else "right")
    for role, n in stats["train_samples"].items():
        tokens = stats["train_tokens"][role]
        roles.add_row(
            role, str(n),
            *(str(tokens["input"].get(k, "-")) for k in ("mean", "p95", "max")),
            *(str(tokens["target"].get(k, "-")) for k in ("mean", "max")),
        )  # fmt: skip
    console.print(roles)
    console.print(f"outcomes: {stats['outcomes']}")
    console.print(f"tool calls per trajectory: {stats['tool_calls_per_trajectory']}")


def import_toolbench(
    source: Path = typer.Argument(
        ..., help="A JSON list (stage 1 or answer files) or a folder of answer files."
    ),
    out: Path = typer.Argument(..., help="Where to write the normalised trajectories (JSON list)."),
) -> None:
    """Normalise ToolBench answers as the α-UMi preprocessing does (stages 1 and 2)."""
    from worker.data.toolbench import import_toolbench as convert

    records: list[Any] = []
    files = sorted(source.rglob("*.json")) if source.is_dir() else [source]
    for file in files:
        data = json.loads(file.read_text(encoding="utf-8"))
        records.extend(data if isinstance(data, list) else [data])
    trajectories = convert(records)
    out.write_text(json.dumps(trajectories, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    console.print(f"{len(trajectories)} trajectories from {len(records)} records → {out}")


def export_toolbench(
    source: Path = typer.Argument(..., help="Normalised trajectories (a JSON list)."),
    out: Path = typer.Argument(..., help="Where to write the stage-1 ToolBench form (JSON list)."),
) -> None:
    """Write normalised trajectories in ToolBench's stage-1 form (lossless round trip)."""
    from worker.data.toolbench import export_toolbench as convert
    from worker.errors import ProtocolError

    trajectories = json.loads(source.read_text(encoding="utf-8"))
    try:
        native = convert(trajectories)
    except ProtocolError as exc:
        console.print(f"[red]cannot export:[/red] {exc}")
        raise typer.Exit(1) from exc
    out.write_text(json.dumps(native, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    console.print(f"{len(native)} trajectories → {out}")

"""``umiq train``: train role adapters from ToolBench-format trajectories.

``register(app)`` adds the command to a Typer app; every :class:`TrainConfig` field is
an option, and options left unset keep the preset's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from worker.training.config import METHODS, PRESETS, STAGE_KEYS


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    app.command(name="train")(train_command)


def train_command(
    data: Path = typer.Option(..., help="Trajectory JSON file, or a folder of them."),
    out: Path = typer.Option(..., help="Output directory (adapters, checkpoints, card)."),
    preset: str = typer.Option("demo", help=f"Starting point: {', '.join(sorted(PRESETS))}."),
    method: str | None = typer.Option(None, help=f"One of {', '.join(METHODS)}."),
    base: str | None = typer.Option(None, help="Store name or checkpoint dir of the base."),
    seed: int | None = typer.Option(None, help="Seed for sampling, shuffling and LoRA init."),
    epochs_global: int | None = typer.Option(None, help="Epochs of the global/single stage."),
    epochs_planner: int | None = typer.Option(None, help="Epochs of the planner stage."),
    epochs_caller: int | None = typer.Option(None, help="Epochs of the caller stage."),
    epochs_summarizer: int | None = typer.Option(None, help="Epochs of the summarizer stage."),
    lr: float | None = typer.Option(None, help="Peak learning rate."),
    lr_global: float | None = typer.Option(None, help="Peak lr of the global/single stage."),
    lr_planner: float | None = typer.Option(None, help="Peak lr of the planner stage."),
    lr_caller: float | None = typer.Option(None, help="Peak lr of the caller stage."),
    lr_summarizer: float | None = typer.Option(None, help="Peak lr of the summarizer stage."),
    weight_decay: float | None = typer.Option(None, help="AdamW weight decay."),
    max_grad_norm: float | None = typer.Option(None, help="Gradient clipping norm (0: off)."),
    warmup_ratio: float | None = typer.Option(None, help="Warmup share of every stage."),
    lora_r: int | None = typer.Option(None, help="LoRA rank."),
    lora_alpha: int | None = typer.Option(None, help="LoRA alpha."),
    lora_dropout: float | None = typer.Option(None, help="LoRA dropout."),
    target_modules: str | None = typer.Option(
        None, help="Comma-separated layer names the LoRA adapts."
    ),
    batch_size: int | None = typer.Option(None, help="Examples per micro-batch."),
    grad_accum: int | None = typer.Option(None, help="Micro-batches per optimizer step."),
    max_length: int | None = typer.Option(None, help="Tokens per example (prompt cut left)."),
    max_cut_share: float | None = typer.Option(
        None,
        help="Largest share of a stage's prompts that may be cut to --max-length "
        "(default 0.05; 1 allows any): serving sends prompts whole.",
    ),
    max_samples: str | None = typer.Option(
        None,
        help="Samples per stage after a seeded shuffle: N for every stage (0: all), or "
        "STAGE=N,… (e.g. planner=192) to change only those stages.",
    ),
    balance: list[str] = typer.Option(
        [],
        "--balance",
        help="A stage (planner) whose samples are drawn with an equal share per decision "
        "(first call, later call, conclusion, give up) instead of at random. Repeatable; "
        "'none' draws every stage at random (a preset's balance off).",
    ),
    decision_share: list[str] = typer.Option(
        [],
        "--decision-share",
        help="DECISION=FRACTION fixes one decision's share of a balanced draw "
        "(caller_first, caller_next, conclusion, give_up; e.g. conclusion=0.4); the others "
        "split the rest equally. Repeatable; needs --balance.",
    ),
    continue_from: list[str] = typer.Option(
        [],
        "--continue-from",
        help="STAGE=DIR: train that stage on top of a finished adapter (e.g. "
        "planner=worker/models/shipped/acme-demo/planner) instead of its GLPFT start; its "
        "epochs are then more epochs. Repeatable.",
    ),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    dtype: str | None = typer.Option(None, help="auto, float32 or bfloat16."),
    pack: bool | None = typer.Option(
        None,
        "--pack/--no-pack",
        help="Train each trajectory's samples of a role as one prefix tree: the same "
        "losses, the shared prompt computed once.",
    ),
    autocast: str | None = typer.Option(
        None,
        help="Mixed precision: none, bfloat16, or auto (bfloat16 where the CPU or GPU "
        "computes it natively, e.g. AMX; about 1.5x faster on this project's CPU).",
    ),
    save_every: int | None = typer.Option(None, help="Steps between checkpoints (0: none)."),
    resume: bool = typer.Option(True, help="Continue an earlier run of the same config."),
    reuse_from: list[Path] = typer.Option(
        [],
        "--reuse-from",
        help="Another run's directory: stages with the same fingerprint (everything that "
        "decides their weights) are copied from it instead of trained. Repeatable.",
    ),
    reuse_any_precision: bool = typer.Option(
        False,
        "--reuse-any-precision",
        help="With --reuse-from: also reuse stages that differ only in mixed precision "
        "(e.g. the shipped bfloat16-autocast stages on a CPU without native bfloat16, "
        "where 'auto' means none); the card names each reused stage and its source.",
    ),
    stop_after: int | None = typer.Option(
        None, help="Checkpoint and stop after this many steps (re-run to continue)."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train role adapters (GLPFT by default) and write a model card."""
    from rich.console import Console

    from worker.errors import UmiqError
    from worker.training.config import TrainConfig
    from worker.training.run import train

    console = Console()
    overrides: dict[str, Any] = {
        "method": method,
        "base": base,
        "seed": seed,
        "lr": lr,
        "weight_decay": weight_decay,
        "max_grad_norm": max_grad_norm,
        "warmup_ratio": warmup_ratio,
        "lora_r": lora_r,
        "lora_alpha": lora_alpha,
        "lora_dropout": lora_dropout,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_length": max_length,
        "device": device,
        "dtype": dtype,
        "autocast": autocast,
        "pack": pack,
        "save_every": save_every,
        "max_cut_share": max_cut_share,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if balance:
        overrides["balance"] = tuple(b for b in balance if b != "none")
    if decision_share:
        overrides["decision_shares"] = {
            **PRESETS.get(preset, {}).get("decision_shares", {}),
            **parse_decision_shares(decision_share),
        }
    if continue_from:
        overrides["continue_from"] = parse_continue_from(continue_from)
    if target_modules is not None:
        overrides["target_modules"] = tuple(m.strip() for m in target_modules.split(",") if m)
    if max_samples is not None:
        overrides["max_samples"] = parse_max_samples(
            max_samples, PRESETS[preset].get("max_samples") if preset in PRESETS else None
        )
    epochs = {
        "global": epochs_global,
        "planner": epochs_planner,
        "caller": epochs_caller,
        "summarizer": epochs_summarizer,
    }
    if any(v is not None for v in epochs.values()):
        preset_epochs = PRESETS.get(preset, {}).get("epochs", {})
        overrides["epochs"] = {
            **preset_epochs,
            **{k: v for k, v in epochs.items() if v is not None},
        }
    stage_lr = {
        "global": lr_global,
        "planner": lr_planner,
        "caller": lr_caller,
        "summarizer": lr_summarizer,
    }
    if any(v is not None for v in stage_lr.values()):
        overrides["stage_lr"] = {
            **PRESETS.get(preset, {}).get("stage_lr", {}),
            **{k: v for k, v in stage_lr.items() if v is not None},
        }
    try:
        config = TrainConfig.preset(preset, data=str(data), out=str(out), **overrides)
        result = train(
            config,
            progress=progress,
            resume=resume,
            stop_after_steps=stop_after,
            reuse_from=reuse_from,
            reuse_any_precision=reuse_any_precision,
        )
    except UmiqError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    for name, stage in result.stages.items():
        console.print(
            f"{name:<10} steps {stage['steps']:>4}  final loss {stage['final_loss']:.4f}  "
            f"{stage['tokens_per_s']:.0f} tok/s  {stage['seconds']:.0f} s"
        )
    if not result.complete:
        console.print("[yellow]stopped early[/yellow]; re-run the same command to resume")
        return
    console.print(f"adapters in {result.out}; model card {result.card}")


def parse_max_samples(text: str, preset: Any) -> int | dict[str, int | None] | None:
    """``N`` caps every stage (0: all); ``stage=N,…`` changes those stages of ``preset``."""
    text = text.strip()
    try:
        if "=" not in text:
            return int(text) or None
        caps: dict[str, int | None] = (
            dict(preset) if isinstance(preset, dict) else dict.fromkeys(STAGE_KEYS, preset)
        )
        for item in text.split(","):
            stage, _, value = item.partition("=")
            caps[stage.strip()] = int(value) or None
    except ValueError:
        raise typer.BadParameter(
            f"--max-samples takes N or STAGE=N,… (stages: {', '.join(STAGE_KEYS)}), got {text!r}"
        ) from None
    return caps


def parse_decision_shares(items: list[str]) -> dict[str, float]:
    """``conclusion=0.4`` → ``{"conclusion": 0.4}``; ``give_up``/``give-up`` name ``give up``."""
    shares: dict[str, float] = {}
    for item in items:
        kind, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            shares[kind.strip().replace("_", " ").replace("-", " ")] = float(value)
        except ValueError:
            raise typer.BadParameter(
                f"--decision-share takes DECISION=FRACTION (e.g. conclusion=0.4), got {item!r}"
            ) from None
    return shares


def parse_continue_from(items: list[str]) -> dict[str, str]:
    """``planner=DIR`` → ``{"planner": "DIR"}``."""
    starts: dict[str, str] = {}
    for item in items:
        stage, sep, path = item.partition("=")
        if not sep or not stage.strip() or not path.strip():
            raise typer.BadParameter(
                f"--continue-from takes STAGE=DIR (e.g. planner=worker/models/shipped/"
                f"acme-demo/planner), got {item!r}"
            )
        starts[stage.strip()] = path.strip()
    return starts

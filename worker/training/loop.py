"""The training loop of one stage: AdamW, cosine warmup, accumulation, checkpoints.

Plain PyTorch, deterministic for a given config and machine: the step schedule comes
from :func:`worker.training.data.schedule`, dropout draws from the seeded torch RNG, and
a checkpoint holds everything a resumed run needs to continue bit for bit (trainable
tensors, optimizer, scheduler, RNG states, step, counters).

Checkpoints live in ``<out>/checkpoints/<stage>/`` and are replaced atomically (written
to a sibling directory, then renamed), so a crash while saving leaves the previous one.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import get_cosine_schedule_with_warmup

from worker.logs import get_logger
from worker.training.config import TrainConfig
from worker.training.data import Example, collate, schedule
from worker.training.packing import Packed, collate_packed

#: Called after every optimizer step with (stage, step); tests raise from it to crash a run.
StepHook = Callable[[str, int], None]


@dataclass
class StageOutcome:
    """What a stage did (counters include steps run before a resume)."""

    steps: int
    total_steps: int
    examples: int
    tokens: int = 0
    seconds: float = 0.0
    """Wall time of the stage across sessions, checkpoints included."""
    train_seconds: float = 0.0
    """Time spent in forward, backward and optimizer steps only."""
    losses: list[float] = field(default_factory=list)
    resumed_from: int | None = None

    @property
    def finished(self) -> bool:
        return self.steps >= self.total_steps

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "examples": self.examples,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 2),
            "train_seconds": round(self.train_seconds, 2),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "first_loss": self.losses[0] if self.losses else None,
            "final_loss": self.losses[-1] if self.losses else None,
            "resumed_from": self.resumed_from,
        }


class Reporter:
    """Progress display: a rich bar with stage, step, loss and tokens/s, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Reporter:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description:<10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[tps]} tok/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, stage: str, total: int, done: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(
                stage, total=total, completed=done, loss="-", tps="-"
            )

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, completed=step, loss=f"{loss:.4f}", tps=f"{tokens_per_s:.0f}"
            )

    def note(self, message: str) -> None:
        """Something worth a line beside the bar; nothing without a bar."""
        if self._progress is not None:
            self._progress.console.print(message)

    def warn(self, message: str) -> None:
        """A problem with the run the user should act on: beside the bar, or logged as a
        warning when there is no bar (``--no-progress``)."""
        if self._progress is not None:
            self._progress.console.print(f"[yellow]{message}")
        else:
            get_logger(__name__).warning("training_warning", message=message)


def train_stage(
    model: Any,
    examples: Sequence[Example | Packed],
    *,
    stage: str,
    config: TrainConfig,
    seed: int,
    out: Path,
    pad_id: int,
    reporter: Reporter,
    stop_after: Callable[[], bool] | None = None,
    on_step: StepHook | None = None,
) -> StageOutcome:
    """Train ``model``'s trainable parameters on ``examples``; resume from a checkpoint.

    ``stop_after()`` is asked after each step; True checkpoints and returns early.
    """
    device = next(model.parameters()).device
    mixed = config.resolved_autocast(device.type) == "bfloat16"
    steps = schedule(
        len(examples),
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        epochs=config.epochs_for(stage),
        seed=seed,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(params, lr=config.lr_for(stage), weight_decay=config.weight_decay)
    warmup = math.ceil(config.warmup_for(stage) * len(steps))
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, len(steps))
    outcome = StageOutcome(0, len(steps), len(examples))

    ckpt = out / "checkpoints" / stage
    if (ckpt / "state.json").is_file():
        _restore(ckpt, named, optimizer, scheduler, outcome, device)
        reporter.note(f"{stage}: resuming from step {outcome.steps} of {len(steps)}")

    metrics = (out / "metrics.jsonl").open("a", encoding="utf-8")
    reporter.start(stage, len(steps), outcome.steps)
    model.train()
    started = time.monotonic() - outcome.seconds
    try:
        for index in range(outcome.steps, len(steps)):
            tick = time.perf_counter()
            micro = steps[index]
            batch_examples = [[examples[i] for i in mb] for mb in micro]
            targets = sum(e.target_tokens for mb in batch_examples for e in mb)
            total_loss = 0.0
            tokens = 0
            for mb in batch_examples:
                packed = isinstance(mb[0], Packed)
                if packed:
                    # prefix trees: the logits at ``predict_at`` predict ``targets``
                    batch = collate_packed(mb)
                    keep = batch["predict_at"].to(device)
                else:
                    batch = collate(mb, pad_id)
                    keep = batch["keep"]
                # Mixed precision: bfloat16 matmuls, weights and gradients in ``dtype``.
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
                    output = model(
                        input_ids=batch["input_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device),
                        position_ids=batch["position_ids"].to(device),
                        logits_to_keep=keep,
                        use_cache=False,
                    )
                if packed:
                    logits = output.logits.float()
                    labels = batch["targets"].to(device)
                else:
                    logits = output.logits[:, :-1].float()
                    labels = batch["labels"][:, -(keep - 1) :].to(device)
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"
                )
                (loss / targets).backward()
                total_loss += float(loss.detach())
                tokens += batch["tokens"]
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            outcome.steps = index + 1
            outcome.tokens += tokens
            outcome.train_seconds += time.perf_counter() - tick
            outcome.seconds = time.monotonic() - started
            step_loss = total_loss / targets
            outcome.losses.append(step_loss)
            record = {
                "stage": stage,
                "step": outcome.steps,
                "loss": round(step_loss, 6),
                "lr": lr,
                "tokens": outcome.tokens,
                "elapsed": round(outcome.seconds, 3),
                "tokens_per_s": round(outcome.tokens_per_s, 1),
            }
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            reporter.update(outcome.steps, step_loss, outcome.tokens_per_s)
            if on_step is not None:
                on_step(stage, outcome.steps)
            stopping = stop_after is not None and stop_after()
            periodic = config.save_every and outcome.steps % config.save_every == 0
            if (periodic or stopping) and not outcome.finished:
                _save(ckpt, named, optimizer, scheduler, outcome)
            if stopping:
                break
    finally:
        metrics.close()
    outcome.seconds = time.monotonic() - started
    return outcome


def _save(
    ckpt: Path,
    named: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    outcome: StageOutcome,
) -> None:
    tmp = ckpt.with_name(f".{ckpt.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({n: p.detach().cpu() for n, p in named.items()}, tmp / "adapter.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    state = {
        "step": outcome.steps,
        "total_steps": outcome.total_steps,
        "tokens": outcome.tokens,
        "seconds": outcome.seconds,
        "train_seconds": outcome.train_seconds,
        "losses": outcome.losses,
    }
    (tmp / "state.json").write_text(json.dumps(state))
    old = ckpt.with_name(f".{ckpt.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _restore(
    ckpt: Path,
    named: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    outcome: StageOutcome,
    device: torch.device,
) -> None:
    from worker.errors import ConfigError

    state = json.loads((ckpt / "state.json").read_text())
    if state["total_steps"] != outcome.total_steps:
        raise ConfigError(
            f"checkpoint {ckpt} is for a {state['total_steps']}-step stage, this run has "
            f"{outcome.total_steps}; resume with the same config or pass --no-resume"
        )
    tensors = torch.load(ckpt / "adapter.pt", map_location="cpu", weights_only=True)
    if set(tensors) != set(named):
        raise ConfigError(
            f"checkpoint {ckpt} holds other adapter tensors than this run trains; "
            "resume with the same config or pass --no-resume"
        )
    with torch.no_grad():
        for name, param in named.items():
            param.copy_(tensors[name].to(device))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    rng = torch.load(ckpt / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    outcome.steps = state["step"]
    outcome.tokens = state["tokens"]
    outcome.seconds = state["seconds"]
    outcome.train_seconds = state["train_seconds"]
    outcome.losses = list(state["losses"])
    outcome.resumed_from = state["step"]

"""Orchestrate a training run: stages in order, resume, adapters, model card.

Output layout under ``config.out``::

    global/ planner/ caller/ summarizer/    glpft (global is the shared start)
    single/                                 single
    planner/ caller/ summarizer/            one_stage
    checkpoints/<stage>/                    the running stage's last checkpoint
    metrics.jsonl  training_curve.png  README.md  umiq-train.json  train-config.json

Each stage directory is what ``PeftModel.save_pretrained`` writes (adapter named after
the stage), so ``HFRoleModel(base, find_adapters(out))`` serves the role adapters. A
stage is finished when its directory holds a ``done`` file (its summary, JSON); a re-run
of the same config skips finished stages and resumes the running one from its
checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.errors import ConfigError
from worker.paths import portable_path
from worker.training import card as _card
from worker.training import reuse as _reuse
from worker.training.config import RUNTIME_FIELDS, TrainConfig
from worker.training.data import (
    Stage,
    data_hash,
    data_view,
    load_samples,
    role_hashes,
    select,
    select_balanced,
    stages_for,
    tokenize,
    truncation_warning,
)
from worker.training.packing import pack_all
from worker.training.reuse import DONE

CONFIG_FILE = "train-config.json"
#: What ``--no-resume`` removes before starting over (nothing else in ``out`` is touched).
ARTEFACTS = (
    *("checkpoints", "global", "planner", "caller", "summarizer", "single"),
    *(_card.METRICS, _card.CURVE, _card.CARD_MD, _card.CARD_JSON, CONFIG_FILE),
)


@dataclass
class TrainResult:
    """What a run produced; ``complete`` is False when it stopped early (resume later)."""

    out: Path
    method: str
    complete: bool
    adapters: dict[str, Path] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    card: Path | None = None
    curve: Path | None = None


def train(
    config: TrainConfig,
    progress: bool = True,
    *,
    resume: bool = True,
    stop_after_steps: int | None = None,
    on_step: Callable[[str, int], None] | None = None,
    reuse_from: Sequence[str | Path] = (),
    reuse_any_precision: bool = False,
) -> TrainResult:
    """Run every stage of ``config.method``; see the module docstring for the layout.

    ``resume=False`` removes this run's earlier artefacts from ``out`` first.
    ``stop_after_steps`` checkpoints and returns after that many optimizer steps in this
    call (a re-run continues). ``on_step(stage, step)`` is called after every step.
    ``reuse_from`` names other runs' directories: a stage whose fingerprint matches one
    of their finished stages is copied from there instead of trained (:mod:`reuse`);
    ``reuse_any_precision`` also takes a stage that differs only in its mixed precision
    (the stages after it are then fingerprinted as starting from that one).
    """
    import torch

    run_started = time.monotonic()
    out = Path(config.out).expanduser()
    samples = load_samples(config.data)
    digest = data_hash(samples)
    base_dir = _resolve_base(config.base)
    _prepare_out(out, config, digest, resume)

    device = config.resolved_device()
    dtype = getattr(torch, config.resolved_dtype(device))
    from worker.models.adapters import checkpoint_digest

    base_revision = checkpoint_digest(base_dir)
    keys = _reuse.StageKeys(config, digest, device, base_revision, role_hashes(samples))
    fingerprints: dict[str, str] = {}  # each stage's, chained from what it started from
    reusable: dict[str, Path] = {}
    for run_dir in reuse_from:
        if not Path(run_dir).expanduser().is_dir():
            raise ConfigError(f"--reuse-from {run_dir}: no such run directory")
        reusable |= _reuse.finished_stages(Path(run_dir))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    eos_id, pad_id = _special_ids(base_dir, tokenizer)

    from worker.training.loop import Reporter, train_stage

    stages = stages_for(config.method)
    summaries: dict[str, dict[str, Any]] = {}
    complete = True
    steps_run = 0

    def stop() -> bool:
        nonlocal steps_run
        steps_run += 1
        return stop_after_steps is not None and steps_run >= stop_after_steps

    deterministic = torch.are_deterministic_algorithms_enabled()
    if device == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        with Reporter(progress) as reporter:
            for index, stage in enumerate(stages):
                final = out / stage.name
                init = _reuse.start_fingerprint(config, stage, fingerprints)
                if (final / DONE).is_file():
                    summaries[stage.name] = json.loads((final / DONE).read_text())
                    fingerprints[stage.name] = summaries[stage.name].get(
                        "fingerprint"
                    ) or keys.fingerprint(index, stage, init=init)
                    reporter.note(f"{stage.name}: done earlier, skipped")
                    continue
                fingerprint, source = keys.find(
                    index, stage, init=init, reusable=reusable, any_precision=reuse_any_precision
                )
                fingerprints[stage.name] = fingerprint
                if source is not None:
                    summaries[stage.name] = _reuse.copy_stage(
                        source, final, {"fingerprint": fingerprint, "reused_from": str(source)}
                    )
                    _reuse.copy_metrics(source.parent, source.name, out, stage.name)
                    shutil.rmtree(out / "checkpoints" / stage.name, ignore_errors=True)
                    reporter.note(f"{stage.name}: same fingerprint as {source}, reused")
                    continue
                if stop_after_steps is not None and steps_run >= stop_after_steps:
                    complete = False
                    break
                seed = config.seed + index
                cap = config.max_samples_for(stage.name)
                if stage.name in config.balance:
                    chosen = select_balanced(
                        samples[stage.role], seed, cap, config.decision_shares or None
                    )
                else:
                    chosen = select(samples[stage.role], seed, cap)
                if not chosen:
                    raise ConfigError(
                        f"{config.data} yields no {stage.role} samples for stage {stage.name}"
                    )
                examples = [tokenize(s, tokenizer, config.max_length, eos_id) for s in chosen]
                warning = truncation_warning(stage.name, examples, config.max_length)
                if warning:
                    cut = sum(1 for e in examples if e.prompt_truncated) / len(examples)
                    if cut > config.max_cut_share:
                        raise ConfigError(
                            f"refusing to train: {warning} ({cut:.0%} cut; --max-cut-share "
                            f"{config.max_cut_share} allows at most "
                            f"{config.max_cut_share:.0%})"
                        )
                    reporter.warn(warning)
                # one prefix tree per trajectory: the same losses, the shared prompt once
                units = pack_all(chosen, examples) if config.pack else examples
                ckpt_state = out / "checkpoints" / stage.name / "state.json"
                done_steps = (
                    json.loads(ckpt_state.read_text())["step"] if ckpt_state.is_file() else 0
                )
                _card.prune_metrics(out, stage.name, done_steps)
                model = _build_model(base_dir, config, stage, out, device, dtype, seed)
                outcome = train_stage(
                    model,
                    units,
                    stage=stage.name,
                    config=config,
                    seed=seed,
                    out=out,
                    pad_id=pad_id,
                    reporter=reporter,
                    stop_after=stop,
                    on_step=on_step,
                )
                summary = {
                    "role": stage.role,
                    "init_from": _reuse.start_name(config, stage),
                    "seed": seed,
                    "epochs": config.epochs_for(stage.name),
                    "lr": config.lr_for(stage.name),
                    "total_steps": outcome.total_steps,
                    "prompts_truncated": sum(1 for e in examples if e.prompt_truncated),
                    "longest_example": max(e.full_length for e in examples),
                    **outcome.summary(),
                    **(_packing(units) if config.pack else {}),
                    "fingerprint": fingerprint,
                    "autocast": config.resolved_autocast(device),
                }
                summaries[stage.name] = summary
                if not outcome.finished:
                    complete = False
                    break
                _save_final(model, stage, out, summary)
                shutil.rmtree(out / "checkpoints" / stage.name, ignore_errors=True)
                del model
    finally:
        torch.use_deterministic_algorithms(deterministic)

    if complete:
        with contextlib.suppress(OSError):  # only when empty
            (out / "checkpoints").rmdir()
    adapters = {s.name: out / s.name for s in stages if (out / s.name / DONE).is_file()}
    record = _record(
        config,
        out,
        base_dir,
        base_revision,
        samples,
        keys,
        device,
        stages,
        summaries,
        adapters,
        complete,
    )
    card = _card.write_card(out, record)
    curve = _card.plot_curve(out, [s.name for s in stages])
    return TrainResult(
        out=out,
        method=config.method,
        complete=complete,
        adapters=adapters,
        stages=summaries,
        wall_seconds=round(time.monotonic() - run_started, 2),
        card=card,
        curve=curve,
    )


def _packing(units: Sequence[Any]) -> dict[str, Any]:
    """What packing did to a stage: samples, sequences, and tokens with and without it."""
    return {
        "packed_samples": sum(u.samples for u in units),
        "packed_sequences": len(units),
        "packed_tokens": sum(len(u.input_ids) for u in units),
        "unpacked_tokens": sum(u.unpacked_tokens for u in units),
    }


def _resolve_base(base: str) -> Path:
    from worker.models.store import resolve_base
    from worker.settings import get_settings

    settings = get_settings().model_copy(update={"base_model": base})
    return resolve_base(settings)


def _special_ids(base_dir: Path, tokenizer: Any) -> tuple[int, int]:
    """The EOS the backend stops at (generation config first, as it does) and a pad id."""
    from transformers import GenerationConfig

    eos: Any = None
    with contextlib.suppress(OSError):  # no generation_config.json: use the tokenizer's
        eos = GenerationConfig.from_pretrained(str(base_dir)).eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    if eos is None:
        raise ConfigError(f"{base_dir}: neither the model nor the tokenizer names an EOS token")
    pad = tokenizer.pad_token_id
    return int(eos), int(eos if pad is None else pad)


def _prepare_out(out: Path, config: TrainConfig, digest: str, resume: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / CONFIG_FILE
    if not resume:
        for name in ARTEFACTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif config_file.is_file():
        previous = json.loads(config_file.read_text())
        mine = {**config.weights_fields(), "data_hash": digest}
        theirs = {k: v for k, v in previous.items() if k not in RUNTIME_FIELDS}
        theirs.setdefault("balance", [])  # runs from before the field balanced nothing
        theirs.setdefault("stage_lr", {})  # … and used one learning rate for every stage
        theirs.setdefault("decision_shares", {})  # … and drew balanced decisions equally
        theirs.setdefault("autocast", "none")  # … and trained in full precision
        theirs.setdefault("pack", False)  # … and one sample per sequence
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if changed:
            raise ConfigError(
                f"{out} holds a run with a different config ({', '.join(changed)} differ); "
                "use another --out, the same settings, or --no-resume to start over"
            )
    config_file.write_text(json.dumps({**config.to_dict(), "data_hash": digest}, indent=2) + "\n")


def _build_model(
    base_dir: Path,
    config: TrainConfig,
    stage: Stage,
    out: Path,
    device: str,
    dtype: Any,
    seed: int,
) -> Any:
    """The base with a trainable LoRA named after the stage (fresh, or a finished stage's)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype).to(device)
    base.config.use_cache = False
    start = _reuse.start_dir(config, stage, out)
    if start is not None:
        if not (start / DONE).is_file():
            raise ConfigError(f"stage {stage.name} starts from {start}, which is not finished")
        return PeftModel.from_pretrained(
            base, str(start), adapter_name=stage.name, is_trainable=True
        )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora, adapter_name=stage.name)


def make_portable(adapter_dir: Path) -> None:
    """Rewrite ``adapter_config.json``'s ``base_model_name_or_path`` with ``portable_path``
    (peft writes the absolute path of the base it was given; loading compares names)."""
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text())
    base = config.get("base_model_name_or_path")
    if base and Path(base).is_absolute():
        config["base_model_name_or_path"] = portable_path(base)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_final(model: Any, stage: Stage, out: Path, summary: dict[str, Any]) -> None:
    """Save the adapter to ``out/<stage>/`` atomically, the ``done`` file last."""
    tmp = out / f".{stage.name}.saving"
    shutil.rmtree(tmp, ignore_errors=True)
    # peft writes a non-default adapter into <dir>/<adapter name>/.
    model.save_pretrained(str(tmp), selected_adapters=[stage.name])
    saved = tmp / stage.name
    make_portable(saved)
    (saved / DONE).write_text(json.dumps(summary, indent=2) + "\n")
    final = out / stage.name
    shutil.rmtree(final, ignore_errors=True)
    saved.rename(final)
    shutil.rmtree(tmp, ignore_errors=True)


def _record(
    config: TrainConfig,
    out: Path,
    base_dir: Path,
    base_revision: str,
    samples: dict[str, list[Any]],
    keys: _reuse.StageKeys,
    device: str,
    stages: list[Stage],
    summaries: dict[str, dict[str, Any]],
    adapters: dict[str, Path],
    complete: bool,
) -> dict[str, Any]:
    from worker import __version__
    from worker.models.adapters import read_adapter
    from worker.models.store import checkpoint_name, read_stamp

    stamp = read_stamp(base_dir) or {}
    versions = {
        name: {"path": str(path.relative_to(out)), "version": read_adapter(name, path).version}
        for name, path in adapters.items()
    }
    return {
        "umiq_train": 1,
        "umiq_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": config.method,
        "complete": complete,
        "base": {
            "name": checkpoint_name(base_dir),
            "path": portable_path(base_dir),
            "revision": base_revision,
            "source": stamp.get("source"),
        },
        "data": {
            "path": portable_path(config.data),
            "hash": keys.digest,
            "role_hashes": dict(keys.role_digests),
            "samples": {role: len(items) for role, items in samples.items()},
        },
        "prompt_view": data_view(config.data),
        # The card names no machine's layout: data and out as portable paths (neither
        # decides the weights, so a run found by its card still matches: ``reuse``).
        "config": {
            **config.to_dict(),
            "data": portable_path(config.data),
            "out": portable_path(config.out),
        },
        "hardware": _card.hardware(device),
        # What dtype and autocast resolved to here ("auto" depends on the hardware): the
        # stages this run trained were computed so, and their fingerprints say so.
        "precision": {
            "dtype": config.resolved_dtype(device),
            "autocast": config.resolved_autocast(device),
        },
        "stages": {s.name: summaries[s.name] for s in stages if s.name in summaries},
        "adapters": versions,
        "wall_seconds": round(sum(s.get("seconds", 0.0) for s in summaries.values()), 2),
    }

"""The model card of a training run: ``README.md``, ``umiq-train.json``, the loss curve.

``umiq-train.json`` is the machine-readable record (base id and revision, data hash,
config, hardware, per-stage time, tokens/s and losses, adapter versions); ``README.md``
renders it for people, with the figures evaluation recorded for the run
(``umiq-eval.json``, written by ``worker.evaluation.records``, never by training).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.evaluation.records import evaluation_lines, read_evaluation
from worker.models.adapters import TRAIN_RECORD

CARD_JSON = TRAIN_RECORD
CARD_MD = "README.md"
CURVE = "training_curve.png"
METRICS = "metrics.jsonl"


def hardware(device: str) -> dict[str, Any]:
    """CPU model, core and thread counts, and the GPU name when training on cuda."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "device": device,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        "python": platform.python_version(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _version(package: str) -> str | None:
    """The installed version of ``package`` (None when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def read_metrics(out: Path) -> list[dict[str, Any]]:
    """The records of ``<out>/metrics.jsonl`` (empty when there is none)."""
    path = out / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prune_metrics(out: Path, stage: str, keep_through: int) -> None:
    """Drop ``stage``'s records after step ``keep_through`` (they are about to be redone)."""
    records = read_metrics(out)
    kept = [r for r in records if r["stage"] != stage or r["step"] <= keep_through]
    if len(kept) != len(records):
        text = "".join(json.dumps(r) + "\n" for r in kept)
        (out / METRICS).write_text(text)


def plot_curve(out: Path, stage_order: list[str]) -> Path | None:
    """Loss against step, one line per stage laid end to end; None without metrics."""
    records = read_metrics(out)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    offset = 0
    for stage in stage_order:
        points = sorted((r["step"], r["loss"]) for r in records if r["stage"] == stage)
        if not points:
            continue
        xs = [offset + s for s, _ in points]
        ax.plot(xs, [loss for _, loss in points], marker=".", label=stage)
        if offset:
            ax.axvline(offset + 0.5, color="grey", linewidth=0.5, linestyle=":")
        offset += points[-1][0]
    ax.set_xlabel("optimizer step (stages in training order)")
    ax.set_ylabel("loss (mean over target tokens)")
    ax.set_title(f"umiq training: {out.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / CURVE
    fig.savefig(path)
    plt.close(fig)
    return path


def write_card(out: Path, record: dict[str, Any]) -> Path:
    """Write ``umiq-train.json`` and ``README.md``. An ``evaluation`` section that an
    older record holds (figures from before ``umiq-eval.json``) is kept as it was."""
    json_path = out / CARD_JSON
    if json_path.is_file():
        previous = json.loads(json_path.read_text())
        if previous.get("evaluation"):
            record = {**record, "evaluation": previous["evaluation"]}
    json_path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    write_readme(out)
    return json_path


def write_readme(out: Path) -> Path:
    """(Re)write ``README.md`` of the run in ``out`` from its training record and the
    figures evaluation recorded for it (``umiq eval static --card`` calls it too)."""
    path = Path(out) / CARD_MD
    path.write_text(render(read_card_record(out), read_evaluation(out)), encoding="utf-8")
    return path


def read_card_record(out: Path) -> dict[str, Any]:
    """The training record (``umiq-train.json``) of the run in ``out``."""
    return json.loads((Path(out) / CARD_JSON).read_text(encoding="utf-8"))


def _cut(stage: dict[str, Any]) -> str:
    """How many of a stage's prompts were cut to the max length; "–" in older records."""
    if "prompts_truncated" not in stage:
        return "–"
    return f"{stage['prompts_truncated']} of {stage['examples']}"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(record: dict[str, Any], evaluation: Mapping[str, Any] | None = None) -> str:
    """The README.md text of a training record and the run's evaluation figures."""
    cfg = record["config"]
    base = record["base"]
    hw = record["hardware"]
    status = "complete" if record["complete"] else "INCOMPLETE (re-run the command to resume)"
    lines = [
        f"# umiq role adapters ({record['method']})",
        "",
        f"Status: **{status}**. Trained by umiq {record['umiq_version']} on {record['created']}.",
        "",
        "## Base and data",
        "",
        f"- Base: `{base['name']}` revision `{base['revision']}` ({base['path']})",
        f"- Data: `{record['data']['path']}`, sha256 `{record['data']['hash']}`",
        "- Samples available: "
        + ", ".join(f"{r} {n}" for r, n in record["data"]["samples"].items()),
        "",
        "## Adapters",
        "",
        "| stage | role samples | starts from | version | dir |",
        "|---|---|---|---|---|",
    ]
    for name, stage in record["stages"].items():
        adapter = record["adapters"].get(name, {})
        lines.append(
            f"| {name} | {stage['role']} | {stage['init_from'] or 'fresh LoRA'} | "
            f"{adapter.get('version', '–')} | `{adapter.get('path', '–')}` |"
        )
    lines += [
        "",
        "## Training",
        "",
        f"LoRA r={cfg['lora_r']} alpha={cfg['lora_alpha']} dropout={cfg['lora_dropout']} on "
        f"{', '.join(cfg['target_modules'])}; AdamW lr {cfg['lr']}{_stage_lr(cfg)}, weight decay "
        f"{cfg['weight_decay']}, cosine schedule with warmup; batch {cfg['batch_size']} × "
        f"accumulation {cfg['grad_accum']}; max length {cfg['max_length']} (longer prompts "
        f"lose their start: *prompts cut*); seed {cfg['seed']}.{_draw(cfg)}",
        "",
        "| stage | epochs | examples | prompts cut | steps | tokens | wall s | tokens/s | "
        "first loss | final loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in record["stages"].items():
        lines.append(
            f"| {name} | {s['epochs']} | {s['examples']} | {_cut(s)} | {s['steps']} | "
            f"{s['tokens']} | {_fmt(s['seconds'])} | {_fmt(s['tokens_per_s'])} | "
            f"{_fmt(s['first_loss'])} | {_fmt(s['final_loss'])} |"
        )
    cut = {n: s for n, s in record["stages"].items() if s.get("prompts_truncated")}
    if cut:
        lines += [
            "",
            "Inference sends prompts whole (unless `UMIQ_PROMPT_WINDOW` cuts them the same "
            "way), so a cut prompt is one the adapter trained on but will not see. "
            + (
                f"`--max-length {max(s['longest_example'] for s in cut.values())}` "
                "trains on whole prompts."
                if all("longest_example" in s for s in cut.values())
                else "A larger `--max-length` trains on whole prompts."
            ),
        ]
    reused = {n: s["reused_from"] for n, s in record["stages"].items() if s.get("reused_from")}
    if reused:
        lines += [
            "",
            "Reused, not retrained in this run (same stage fingerprint: data, base, LoRA, "
            "optimizer, the stage's schedule, seed, start and device; times are the "
            "original run's): " + "; ".join(f"{n} from `{p}`" for n, p in reused.items()) + ".",
        ]
    gpu = f", {hw['gpu']}" if "gpu" in hw else ""
    lines += [
        "",
        f"Hardware: {hw['device']}{gpu}; {hw['cpu']} ({hw['cpu_count']} cores, "
        f"{hw['torch_threads']} torch threads); torch {hw['torch']}"
        + "".join(f", {lib} {hw[lib]}" for lib in ("transformers", "peft") if hw.get(lib))
        + "."
        + (
            f" Precision: {precision['dtype']}, autocast {precision['autocast']}"
            " (stages reused from another run keep theirs)."
            if (precision := record.get("precision"))
            else ""
        ),
        f"Wall time: {_fmt(record['wall_seconds'])} s.",
        "",
        f"![training curve]({CURVE})",
        "",
        "## Evaluation",
        "",
    ]
    if evaluation:
        lines += evaluation_lines(evaluation)
    else:
        lines.append("Not evaluated yet.")
    lines += [
        "",
        "## Config",
        "",
        "```json",
        json.dumps(cfg, indent=2, ensure_ascii=False),
        "```",
        "",
    ]
    return "\n".join(lines)


def _draw(cfg: dict[str, Any]) -> str:
    """`` Samples of planner: …`` for the stages drawn balanced by decision, else nothing."""
    stages = cfg.get("balance") or []
    if not stages:
        return ""
    shares = cfg.get("decision_shares") or {}
    how = (
        ", ".join(f"{kind} {share:g}" for kind, share in shares.items())
        + ", the other decisions equal"
        if shares
        else "an equal share per decision"
    )
    return f" Samples of {', '.join(stages)}: drawn by decision ({how})."


def _stage_lr(cfg: dict[str, Any]) -> str:
    """`` (planner 0.002)`` for the stages with their own learning rate, else nothing."""
    rates = cfg.get("stage_lr") or {}
    return f" ({', '.join(f'{k} {v}' for k, v in rates.items())})" if rates else ""

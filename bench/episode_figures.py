"""The figures of bench/episodes.py: its generation records and tasks aggregated per level,
the markdown table, the weights on disk and the plot. Pure functions but for the plot and
``weight_files`` (which reads file sizes)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common import file_mib

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
LABELS = {
    "hf": "in process, batched (hf)",
    "hf-serial": "in process, one at a time (hf-serial)",
    "openai": "llama.cpp (openai), client picks slots",
    "openai-engine-slots": "llama.cpp (openai), engine picks slots",
    "scripted": "scripted",
}


def in_flight(records: Iterable[Mapping[str, Any]]) -> tuple[int, float]:
    """The most generate calls in progress at once, and the time-weighted mean number
    while any was (records of one call, e.g. a batch, count once)."""
    calls = {(r.get("task_id"), r["at"], r["ms"]) for r in records}
    events = sorted(
        [(at, 1) for _, at, _ in calls] + [(at + ms / 1000, -1) for _, at, ms in calls],
        key=lambda e: (e[0], e[1]),
    )
    now = peak = 0
    busy = weighted = 0.0
    last = None
    for at, step in events:
        if last is not None and now > 0:
            busy += at - last
            weighted += now * (at - last)
        now += step
        peak = max(peak, now)
        last = at
    return peak, (weighted / busy if busy else 0.0)


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize(
    backend: str,
    level: int,
    records: Sequence[Mapping[str, Any]],
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    overhead_ms_per_step: float | None = None,
    worker_memory: Mapping[str, float] | None = None,
    engine_memory: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One level's row. ``records`` are its generations (``bench/timed_model.py``);
    ``tasks`` maps each task id to ``received`` and ``ended`` (datetimes; ``ended`` None
    while it has no outcome) and ``outcome``."""
    ended = [t for t in tasks.values() if t.get("ended") is not None]
    received = [t["received"] for t in tasks.values() if t.get("received") is not None]
    wall = 0.0
    if ended and received:
        wall = (max(t["ended"] for t in ended) - min(received)).total_seconds()
    completion = sum(int(r.get("completion_tokens") or 0) for r in records)
    prompt = sum(int(r.get("prompt_tokens") or 0) for r in records)
    cached = [r for r in records if r.get("cached_tokens") is not None]
    cached_prompt = sum(int(r.get("prompt_tokens") or 0) for r in cached)
    prefill = [float(r["prompt_ms"]) for r in records if r.get("prompt_ms") is not None]
    decode = [float(r["decode_ms"]) for r in records if r.get("decode_ms") is not None]
    peak, mean_in_flight = in_flight(records)
    return {
        "backend": backend,
        "level": level,
        "tasks": len(tasks),
        "ended": len(ended),
        "wall_s": round(wall, 2),
        "episodes_per_min": round(60 * len(ended) / wall, 2) if wall else None,
        "completion_tok_per_s": round(completion / wall, 2) if wall else None,
        "prompt_tok_per_s": round(prompt / wall, 2) if wall else None,
        "generations": len(records),
        "completion_tokens": completion,
        "prompt_tokens": prompt,
        "generate_ms": _mean([float(r["ms"]) for r in records]),
        "queue_ms": _mean([float(r["queue_ms"]) for r in records if "queue_ms" in r]),
        "prefill_ms": _mean(prefill),
        "decode_ms": _mean(decode),
        "prefill_share": (
            sum(prefill) / (sum(prefill) + sum(decode))
            if prefill and sum(prefill + decode)
            else None
        ),
        "batch": _mean([float(r["batch"]) for r in records if "batch" in r]),
        "cache_hit": (
            sum(int(r["cached_tokens"]) for r in cached) / cached_prompt if cached_prompt else None
        ),
        "in_flight_max": peak,
        "in_flight_mean": round(mean_in_flight, 2),
        "overhead_ms_per_step": overhead_ms_per_step,
        "worker_memory_mib": dict(worker_memory) if worker_memory else None,
        "engine_memory_mib": dict(engine_memory) if engine_memory else None,
        "outcomes": dict(sorted(Counter(str(t.get("outcome")) for t in ended).items())),
    }


def weights(base_mib: float | None, adapters_mib: Mapping[str, float]) -> dict[str, Any] | None:
    """Weights on disk: one base plus the role adapters, against one full model per role
    (each as large as the base: an adapter merged into it changes no shape)."""
    if base_mib is None:
        return None
    return {
        "base_mib": round(base_mib, 1),
        "adapters_mib": {k: round(v, 1) for k, v in sorted(adapters_mib.items())},
        "base_plus_adapters_mib": round(base_mib + sum(adapters_mib.values()), 1),
        "full_models_mib": round(base_mib * max(1, len(adapters_mib)), 1),
    }


def _f(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}{suffix}"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as one markdown table (what docs/performance.md shows)."""
    lines = [
        "| backend | episodes at once | episodes | wall s | episodes/min | completion tok/s "
        "| generate ms | queue ms | prefill ms | decode ms | prompt-cache hit "
        "| generations in flight (max / mean) | overhead ms/step | worker RSS MiB (peak) "
        "| engine RSS MiB (peak) | outcomes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        cache = _f(100 * r["cache_hit"], 0, "%") if r.get("cache_hit") is not None else "–"
        worker = r.get("worker_memory_mib") or {}
        engine = r.get("engine_memory_mib") or {}
        outcomes = ", ".join(f"{k} {v}" for k, v in (r.get("outcomes") or {}).items()) or "–"
        lines.append(
            f"| {LABELS.get(r['backend'], r['backend'])} | {r['level']} "
            f"| {r['ended']}/{r['tasks']} | {_f(r['wall_s'])} | {_f(r['episodes_per_min'], 2)} "
            f"| {_f(r['completion_tok_per_s'])} | {_f(r['generate_ms'], 0)} "
            f"| {_f(r['queue_ms'], 0)} | {_f(r['prefill_ms'], 0)} | {_f(r['decode_ms'], 0)} "
            f"| {cache} | {r['in_flight_max']} / {_f(r['in_flight_mean'], 2)} "
            f"| {_f(r['overhead_ms_per_step'])} | {_f(worker.get('peak'), 0)} "
            f"| {_f(engine.get('peak'), 0)} | {outcomes} |"
        )
    return "\n".join(lines) + "\n"


def ratio_lines(rows: Sequence[Mapping[str, Any]]) -> str:
    """Episodes/min as ratios measured in the same run: each backend against the first
    backend at the same level (the baseline), and each level against that backend's
    lowest level."""
    rate = {(r["backend"], r["level"]): r.get("episodes_per_min") for r in rows}
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    if not backends:
        return ""
    baseline = backends[0]
    lines = []
    for backend in backends:
        levels = sorted(level for b, level in rate if b == backend)
        for level in levels:
            parts = []
            base = rate.get((baseline, level))
            mine = rate.get((backend, level))
            if backend != baseline and base and mine:
                parts.append(f"{mine / base:.2f}x {LABELS.get(baseline, baseline)}")
            low = rate.get((backend, levels[0]))
            if level != levels[0] and low and mine:
                parts.append(f"{mine / low:.2f}x its own {levels[0]} at once")
            if parts:
                lines.append(
                    f"- {LABELS.get(backend, backend)}, {level} at once: episodes/min "
                    + ", ".join(parts)
                )
    return "\n".join(lines) + ("\n" if lines else "")


def weights_lines(found: Mapping[str, Mapping[str, Any] | None]) -> str:
    """One line per backend: base + adapters on disk against one full model per role."""
    lines = []
    for backend, w in found.items():
        if w is None:
            continue
        lines.append(
            f"- {LABELS.get(backend, backend)} weights on disk: base {w['base_mib']} MiB + "
            f"{len(w['adapters_mib'])} adapters {sum(w['adapters_mib'].values()):.1f} MiB = "
            f"{w['base_plus_adapters_mib']} MiB, against {w['full_models_mib']} MiB for "
            f"{len(w['adapters_mib'])} full models"
        )
    return "\n".join(lines) + ("\n" if lines else "")


def plot(rows: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Episodes/min against episodes at once, one line per backend (when matplotlib is
    installed)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend and r["episodes_per_min"]]
        ax.plot(
            [r["level"] for r in mine],
            [r["episodes_per_min"] for r in mine],
            "o-",
            label=LABELS.get(backend, backend),
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("episodes at once (worker concurrency)")
    ax.set_ylabel("episodes/min")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def weight_files(backend: str, settings: Any) -> dict[str, Any] | None:
    """The backend's weights on disk (None where they are not there)."""

    def size(path: Path) -> float:
        files = [path] if path.is_file() else list(path.rglob("*")) if path.is_dir() else []
        return file_mib(*[f for f in files if f.is_file() and f.suffix in WEIGHT_SUFFIXES])

    if backend.startswith("openai"):
        from worker.models.llamacpp import gguf_files

        files = gguf_files(settings.data_dir)
        if "base" not in files:
            return None
        return weights(size(files["base"]), {r: size(p) for r, p in files.items() if r != "base"})
    if backend in ("hf", "hf-serial"):
        from worker.models.adapters import find_adapters
        from worker.models.store import STORE

        base = Path(settings.base_model).expanduser()
        if not base.is_dir() and settings.base_model in STORE:
            base = settings.resolved_model_dir / STORE[settings.base_model].name
        if not base.is_dir():
            return None
        found = find_adapters(settings.resolved_adapters_dir)
        return weights(size(base), {r: size(p) for r, p in found.items()})
    return None

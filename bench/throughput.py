"""Role-request throughput of the in-process path and the engine path at several concurrencies.

    nice -n 19 python bench/throughput.py --levels 1 4 16 --requests 32 --start --threads 2

A skeleton of the issue-23 benchmark: it drives role requests (the Acme test
trajectories' planner, caller and summarizer prompts, mixed) from ``c`` client threads,
as ``c`` concurrent episodes would, not whole episodes through a worker on RabbitMQ.
For each backend and level it prints requests/min, completion tokens/s, mean latency
and, for the engine, the share of prompt tokens served from its prompt cache and its
prefill vs decode milliseconds. Figures only: nothing is asserted. ``--json`` and
``--markdown`` also write the rows to files (``bench/gpu.sh`` does, against vLLM).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import start_llama_server, stop  # noqa: E402
from equivalence import requests_from  # noqa: E402

from worker.settings import Settings  # noqa: E402


def run_level(model: Any, requests: list[Any], level: int, total: int) -> dict[str, Any]:
    """``total`` requests from ``level`` threads, round-robin over ``requests``."""
    source = itertools.cycle(requests)
    lock = threading.Lock()
    results: list[tuple[float, Any]] = []
    left = [total]

    def client() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
                request = next(source)
            started = time.monotonic()
            (out,) = model.generate([request])
            with lock:
                results.append((time.monotonic() - started, out))

    threads = [threading.Thread(target=client) for _ in range(level)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    outs = [o for _, o in results]
    prompt = sum(o.prompt_tokens for o in outs)
    cached = sum(o.extra.get("cached_tokens", 0) or 0 for o in outs)
    return {
        "level": level,
        "requests": len(outs),
        "wall_s": wall,
        "req_per_min": 60 * len(outs) / wall,
        "tok_per_s": sum(o.completion_tokens for o in outs) / wall,
        "latency_s": statistics.mean(t for t, _ in results),
        "cache_hit": cached / prompt
        if prompt and any(o.extra.get("cached_tokens") is not None for o in outs)
        else None,
        "prefill_ms": sum(o.extra.get("prompt_ms", 0) or 0 for o in outs),
        "decode_ms": sum(o.extra.get("decode_ms", 0) or 0 for o in outs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".umiq/data/acme/test.json")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=32, help="requests per level")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--backends", nargs="+", default=["hf", "openai"])
    parser.add_argument("--engine-url", default=None)
    parser.add_argument(
        "--dialect", choices=["llama.cpp", "vllm"], default=None, help="engine dialect"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write a markdown table")
    parser.add_argument("--start", action="store_true", help="start llama-server from the GGUF")
    parser.add_argument("--threads", type=int, default=2, help="llama-server threads (--start)")
    args = parser.parse_args()

    settings = Settings(max_new_tokens=args.max_new_tokens)
    requests = requests_from(args.data, 8, args.max_new_tokens)
    rows = []
    for backend in args.backends:
        proc = None
        try:
            if backend == "hf":
                from worker.models.backend import from_settings

                model = from_settings(settings)
            else:
                from worker.models.engine import from_settings as engine_from_settings

                url = args.engine_url or settings.engine_url
                if args.start:
                    log = Path(tempfile.gettempdir()) / "bench-llama-server.log"
                    proc, url = start_llama_server(
                        settings.data_dir, parallel=max(args.levels), threads=args.threads, log=log
                    )
                update: dict[str, Any] = {"engine_url": url, "engine_concurrency": max(args.levels)}
                if args.dialect:
                    update["engine_dialect"] = args.dialect
                model = engine_from_settings(settings.model_copy(update=update))
            for level in args.levels:
                row = run_level(model, requests, level, args.requests)
                rows.append({"backend": backend, **row})
                print(rows[-1], flush=True)
        finally:
            stop(proc)

    print(f"\n{'backend':<8} {'conc':>4} {'req/min':>8} {'tok/s':>7} {'lat s':>6} {'cache':>6}")
    for r in rows:
        cache = f"{r['cache_hit']:.0%}" if r["cache_hit"] is not None else "-"
        print(
            f"{r['backend']:<8} {r['level']:>4} {r['req_per_min']:>8.1f} {r['tok_per_s']:>7.1f} "
            f"{r['latency_s']:>6.1f} {cache:>6}"
        )
    if args.json is not None:
        run = {
            "argv": sys.argv[1:],
            "machine": platform.machine(),
            "python": platform.python_version(),
            "prompts": len(requests),
            "rows": rows,
        }
        args.json.write_text(json.dumps(run, indent=1))
    if args.markdown is not None:
        args.markdown.write_text(markdown_table(rows))
    return 0


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (what docs/performance.md shows)."""
    lines = [
        "| backend | concurrency | requests | wall s | requests/min | completion tok/s "
        "| mean latency s | prompt cache hit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cache = f"{r['cache_hit']:.0%}" if r["cache_hit"] is not None else "–"
        lines.append(
            f"| {r['backend']} | {r['level']} | {r['requests']} | {r['wall_s']:.1f} "
            f"| {r['req_per_min']:.1f} | {r['tok_per_s']:.1f} | {r['latency_s']:.2f} | {cache} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

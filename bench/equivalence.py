"""Greedy outputs of the engine path against the in-process path, on the same prompts.

    python bench/equivalence.py --data .umiq/data/acme/test.json --per-role 8 --start

Role prompts come from ToolBench-format trajectories (``worker.data.samples``, in the
view each trajectory names: the Acme data's compact view is what the shipped adapters
see at run time). Each prompt runs through the in-process backend (transformers + peft,
one prompt per batch, so padding plays no part) and through the engine backend
(``UMIQ_ENGINE_URL``, or a llama-server that ``--start`` starts from the exported GGUF).
Caller prompts whose tools are all Acme tools are constrained on both paths (xgrammar in
process, GBNF in the engine), and each output is checked to be a valid call.

Prints the agreement rate by role (exact text match), per-role timings, and writes every
pair of outputs as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import start_llama_server, stop  # noqa: E402

from connectors import ToolSpec, tools_from_openapi  # noqa: E402
from connectors._schema import is_valid  # noqa: E402
from worker.agent import protocol  # noqa: E402
from worker.agent.roles import CallerConstraint, GenerationRequest  # noqa: E402
from worker.data.samples import load_trajectories, role_samples  # noqa: E402
from worker.errors import ProtocolError  # noqa: E402
from worker.settings import Settings  # noqa: E402

ROLES = ("planner", "caller", "summarizer")


def acme_specs() -> dict[str, ToolSpec]:
    """Every Acme tool with its JSON schema (ERP from its OpenAPI document, HR, mail)."""
    from connectors._smtp import SEND_EMAIL
    from examples.acme.erp.app import create_app
    from examples.acme.hr.queries import QUERIES

    with tempfile.TemporaryDirectory() as tmp:
        openapi = create_app(Path(tmp) / "erp.sqlite").openapi()
    specs = [*tools_from_openapi(openapi), *(q.spec() for q in QUERIES), SEND_EMAIL]
    return {spec.name: spec for spec in specs}


def requests_from(path: Path, per_role: int, max_new_tokens: int) -> list[GenerationRequest]:
    specs = acme_specs()
    picked: dict[str, list[GenerationRequest]] = defaultdict(list)
    for trajectory in load_trajectories(path):
        samples = role_samples(trajectory, reference_quirks=False)
        for role in ROLES:
            for sample in samples[role]:
                if len(picked[role]) >= per_role:
                    break
                constraint = None
                if role == "caller":
                    names = [t["Name"] for t in sample["tools"]]
                    if names and all(n in specs for n in names):
                        constraint = CallerConstraint(tuple(specs[n] for n in names))
                picked[role].append(
                    GenerationRequest(role, sample["input"], max_new_tokens, constraint)
                )
        if all(len(picked[r]) >= per_role for r in ROLES):
            break
    return [r for role in ROLES for r in picked[role]]


def valid_call(text: str, request: GenerationRequest) -> bool:
    if not isinstance(request.constraint, CallerConstraint):
        return True
    try:
        call = protocol.parse_caller(text)
    except ProtocolError:
        return False
    spec = {t.name: t for t in request.constraint.tools}.get(call.tool)
    return spec is not None and is_valid(call.arguments, spec.parameters)


def in_process(
    requests: list[GenerationRequest], settings: Settings, args: argparse.Namespace
) -> tuple[list[str], float]:
    """The in-process outputs (one prompt per batch), from the cache file when it has them."""
    cache = args.in_process_cache
    key = [[r.role, r.prompt, r.max_new_tokens, r.constraint is not None] for r in requests]
    if cache is not None and cache.is_file():
        stored = json.loads(cache.read_text())
        if stored["key"] == key:
            print(f"in-process outputs from {cache}", flush=True)
            return stored["texts"], stored["seconds"]
    import torch

    from worker.models.backend import from_settings as hf_from_settings

    torch.set_num_threads(args.torch_threads)
    local = hf_from_settings(settings)
    t0 = time.monotonic()
    texts = []
    for i, request in enumerate(requests):
        texts.append(local.generate([request])[0].text)
        print(f"in-process {i + 1}/{len(requests)} {request.role}", flush=True)
    seconds = time.monotonic() - t0
    if cache is not None:
        cache.write_text(json.dumps({"key": key, "texts": texts, "seconds": seconds}))
    return texts, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".umiq/data/acme/test.json")
    parser.add_argument("--per-role", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--engine-url", default=None)
    parser.add_argument("--start", action="store_true", help="start llama-server from the GGUF")
    parser.add_argument("--threads", type=int, default=1, help="llama-server threads (--start)")
    parser.add_argument("--out", type=Path, default=Path("equivalence.json"))
    parser.add_argument(
        "--in-process-cache",
        type=Path,
        default=None,
        help="reuse (or first write) the in-process outputs of these prompts from this file",
    )
    parser.add_argument("--in-process-only", action="store_true", help="stop after in-process")
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()

    from worker.models.engine import from_settings as engine_from_settings

    settings = Settings(max_new_tokens=args.max_new_tokens)
    requests = requests_from(args.data, args.per_role, args.max_new_tokens)
    print(f"{len(requests)} prompts from {args.data}", flush=True)

    inproc, local_s = in_process(requests, settings, args)
    if args.in_process_only:
        return 0

    proc = None
    url = args.engine_url or settings.engine_url
    if args.start:
        log = Path(tempfile.gettempdir()) / "eq.log"
        proc, url = start_llama_server(settings.data_dir, parallel=1, threads=args.threads, log=log)
    try:
        engine = engine_from_settings(settings.model_copy(update={"engine_url": url}))
        t0 = time.monotonic()
        served = [engine.generate([r])[0] for r in requests]
        engine_s = time.monotonic() - t0
    finally:
        stop(proc)

    rows: list[dict[str, Any]] = []
    for req, a, b in zip(requests, inproc, served, strict=True):
        rows.append(
            {
                "role": req.role,
                "constrained": req.constraint is not None,
                "same": a == b.text,
                "in_process": a,
                "engine": b.text,
                "in_process_valid": valid_call(a, req),
                "engine_valid": valid_call(b.text, req),
            }
        )
    args.out.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    print(f"\n{'role':<11} {'prompts':>7} {'same':>5} {'agree':>6} {'valid in/eng':>13}")
    for role in ROLES:
        mine = [r for r in rows if r["role"] == role]
        if not mine:
            continue
        same = sum(r["same"] for r in mine)
        valid = f"{sum(r['in_process_valid'] for r in mine)}/{sum(r['engine_valid'] for r in mine)}"
        print(f"{role:<11} {len(mine):>7} {same:>5} {same / len(mine):>6.0%} {valid:>13}")
    print(f"\nin-process {local_s:.1f} s, engine {engine_s:.1f} s (one prompt at a time)")
    print(f"pairs written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

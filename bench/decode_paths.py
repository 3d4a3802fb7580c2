"""In-process decoding of the role models three ways, on the same prompts, in one run.

    python bench/decode_paths.py --data .umiq/data/acme/dev.json \
        --adapters worker/models/shipped/acme-demo [--prompts 6] [--new-tokens 32] [--threads 2]

Decoding a 135M model on a CPU is bound by memory: every new token reads every weight
once (about 540 MB in fp32). The paths:

- ``peft``: today's serving path (``worker.models.backend``): one base in memory, the
  three LoRA adapters applied per row (``adapter_names``);
- ``merged``: each role's adapter merged into its own copy of the base (three full
  models; no LoRA arithmetic per token);
- ``merged-int8``: the merged models with their linear layers quantized to int8 per
  token (``torch.ao.quantization.quantize_dynamic``): a quarter of the weight bytes.

For each path: prefill seconds per prompt, decode milliseconds per token (greedy, a fixed
number of new tokens, no stop), resident memory its models added, and how many of
its greedy outputs equal the ``peft`` path's (its text must not drift for a faster path
to serve). Prompts are the split's role samples, a few per role. Prints a table with each
path's ratio to ``peft`` measured in the same run; run it on a quiet machine and say
what else ran.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import memory_mib

ROLES = ("planner", "caller", "summarizer")


def rss_mb() -> float:
    """This process's resident memory now, in MiB (0 where /proc cannot be read)."""
    return (memory_mib(os.getpid()) or {}).get("rss", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="trajectories (a data build's split)")
    parser.add_argument("--adapters", required=True, help="a dir with planner/ caller/ summarizer/")
    parser.add_argument("--base", default="smollm2-135m-instruct", help="model-store name")
    parser.add_argument("--prompts", type=int, default=6, help="prompts per role")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", nargs="+", default=["peft", "merged", "merged-int8"])
    parser.add_argument("--out", help="write the figures here (JSON)")
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from worker.data.samples import load_trajectories, role_samples
    from worker.models import resolve_base
    from worker.settings import get_settings

    torch.set_num_threads(args.threads)
    base_dir = resolve_base(get_settings().model_copy(update={"base_model": args.base}))
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    adapters = Path(args.adapters)
    prompts: list[tuple[str, str]] = []
    for trajectory in load_trajectories(args.data):
        samples = role_samples(trajectory)
        for role in ROLES:
            if sum(r == role for r, _ in prompts) < args.prompts and samples[role]:
                prompts.append((role, samples[role][0]["input"]))
    print(f"{len(prompts)} prompts, {args.new_tokens} new tokens each", flush=True)

    def load_base() -> object:
        return AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()

    def build(path: str) -> dict[str, object]:
        if path == "peft":
            model = PeftModel.from_pretrained(
                load_base(), str(adapters / "planner"), adapter_name="planner"
            )
            for role in ROLES[1:]:
                model.load_adapter(str(adapters / role), adapter_name=role)
            return dict.fromkeys(ROLES, model.eval())
        base = load_base()
        models = {}
        for role in ROLES:
            merged = PeftModel.from_pretrained(copy.deepcopy(base), str(adapters / role))
            merged = merged.merge_and_unload().eval()
            if path == "merged-int8":
                merged = torch.ao.quantization.quantize_dynamic(
                    merged, {torch.nn.Linear}, dtype=torch.qint8
                )
            models[role] = merged
        return models

    def run(path: str, models: dict[str, object]) -> dict[str, object]:
        prefill = decode = 0.0
        texts = []
        for role, prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")
            kwargs = {"adapter_names": [role]} if path == "peft" else {}
            with torch.inference_mode():
                started = time.perf_counter()
                models[role].generate(**ids, max_new_tokens=1, do_sample=False, **kwargs)
                first = time.perf_counter() - started
                started = time.perf_counter()
                out = models[role].generate(
                    **ids,
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                    **kwargs,
                )
                whole = time.perf_counter() - started
            prefill += first
            decode += max(0.0, whole - first)
            texts.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :]))
        return {
            "prefill_s": prefill / len(prompts),
            "decode_ms_per_token": 1000 * decode / (len(prompts) * max(1, args.new_tokens - 1)),
            "texts": texts,
        }

    results: dict[str, dict[str, object]] = {}
    for path in args.paths:
        gc.collect()
        before = rss_mb()
        models = build(path)
        results[path] = run(path, models)
        results[path]["models_mb"] = max(0.0, rss_mb() - before)
        print(f"{path}: done", flush=True)
        del models
    reference = results.get("peft")
    print(f"{'path':<12} {'prefill s':>10} {'decode ms/tok':>14} {'x peft':>7} {'same text':>10}")
    for path, r in results.items():
        ratio = same = "-"
        if reference is not None:
            ratio = f"{reference['decode_ms_per_token'] / r['decode_ms_per_token']:.2f}"
            agree = sum(a == b for a, b in zip(r["texts"], reference["texts"], strict=True))
            same = f"{agree}/{len(prompts)}"
        print(
            f"{path:<12} {r['prefill_s']:>10.2f} {r['decode_ms_per_token']:>14.1f} "
            f"{ratio:>7} {same:>10}"
        )
    print(
        "resident memory its models added (MiB):",
        {p: round(r["models_mb"]) for p, r in results.items()},
    )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

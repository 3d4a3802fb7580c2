"""Which tool the caller writes, teacher-forced on every caller step of a data split.

    python bench/caller_tools.py --data .umiq/data/acme/dev.json \
        --adapter worker/models/shipped/acme-demo/caller [--threads 2] [--limit N]

For each caller sample of the trajectories (the prompt serving would send, with the
expert's thought), it feeds ``Action:`` and compares, against the expert's tool:

- ``greedy``: the tool greedy decoding writes when only the allowed names can follow
  (one token at a time over the names' own tokenizations, as the caller's grammar does);
- ``whole``: the allowed name with the highest log-probability as a whole.

The two differ when names share their first tokens (``get_``, ``list_``): greedy
decoding picks the prefix whose names together are likeliest. Prints each miss with the
three likeliest names, and the counts.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import adapter_bench_parser

ALLOWED = re.compile(r"should be exactly in \[([^\]]*)\]")
ACTION = re.compile(r"Action: (\S+)")


def allowed(prompt: str) -> list[str]:
    found = ALLOWED.search(prompt)
    if found is None:
        raise SystemExit("a caller prompt without its allowed tools")
    return [name.strip() for name in found.group(1).split(",")]


def main() -> None:
    parser = adapter_bench_parser(__doc__, "caller")
    parser.add_argument("--limit", type=int, default=0, help="first N caller steps (0: all)")
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from worker.data.samples import load_trajectories, role_samples
    from worker.models import resolve_base
    from worker.settings import get_settings

    torch.set_num_threads(args.threads)
    base = resolve_base(get_settings().model_copy(update={"base_model": args.base}))
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, args.adapter).eval()
    samples = [s for t in load_trajectories(args.data) for s in role_samples(t)["caller"]]
    samples = samples[: args.limit or None]
    print(f"{len(samples)} caller steps in {args.data}", flush=True)
    counts = {"steps": 0, "greedy": 0, "whole": 0, "greedy != whole": 0}
    started = time.monotonic()
    for k, sample in enumerate(samples):
        gold = ACTION.match(sample["target"]).group(1)
        names = allowed(sample["input"])
        ids = tokenizer(sample["input"] + "Action:", return_tensors="pt").input_ids
        with torch.no_grad():
            out = model(ids, use_cache=True)
        first = out.logits[0, -1].log_softmax(-1)
        seqs = {n: tokenizer(f" {n}\n", add_special_tokens=False).input_ids for n in names}
        whole = {}
        for name, seq in seqs.items():
            with torch.no_grad():
                o = model(
                    torch.tensor([seq[:-1]]),
                    past_key_values=copy.deepcopy(out.past_key_values),
                    use_cache=True,
                )
            lps = torch.cat([first[None], o.logits[0].log_softmax(-1)], 0)
            whole[name] = float(sum(lps[i, t] for i, t in enumerate(seq)))
        live, pos, logp, past = dict(seqs), 0, first, copy.deepcopy(out.past_key_values)
        while len(live) > 1:
            best = max({seq[pos] for seq in live.values()}, key=lambda t: float(logp[t]))
            live = {n: seq for n, seq in live.items() if seq[pos] == best}
            if len(live) > 1:
                with torch.no_grad():
                    o = model(torch.tensor([[best]]), past_key_values=past, use_cache=True)
                past, logp = o.past_key_values, o.logits[0, -1].log_softmax(-1)
            pos += 1
        greedy, top = next(iter(live)), max(whole, key=whole.get)
        counts["steps"] += 1
        counts["greedy"] += greedy == gold
        counts["whole"] += top == gold
        counts["greedy != whole"] += greedy != top
        if greedy != gold or top != gold:
            likeliest = sorted(whole.items(), key=lambda kv: -kv[1])[:3]
            shown = ", ".join(f"{n} {v:.2f}" for n, v in likeliest)
            print(f"{k}: expert {gold}, greedy {greedy}, whole {top} ({shown})", flush=True)
    print(json.dumps(counts), f"{time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()

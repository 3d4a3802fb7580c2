"""How much of the role prompts an engine's prompt cache could skip, computed from the prompts.

    python bench/prompt_reuse.py --data .umiq/data/acme/test.json

Every role prompt of every trajectory, rendered as served (``split_roles``), is compared
with the previous prompt *of the same role* in the same task followed by its answer: the
longest shared start is what a slot that kept that role's cache would not compute again.
A cache computed under another adapter is of no use (LoRA changes every layer's keys and
values), so prompts of other roles never count. Prints, per prompt view, the characters
of all prompts and those left to compute, and the recall of the gold tool at each caller
step (``recall_at_k``). Views:

- ``compact``: the shipped view (tools ranked on the request and the thoughts so far);
- ``request``: the tools ranked on the request alone, so one task's prompts keep one tool
  list (plus any tool already called): what a view made for caching would show.

Pure computation: no model, no engine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker.agent.protocol import Tool, Turn  # noqa: E402
from worker.agent.views import (  # noqa: E402
    PromptView,
    called_tools,
    rank,
    recall_at_k,
    request_of,
)
from worker.data.samples import role_samples  # noqa: E402
from worker.models.slots import shared_prefix  # noqa: E402

ROLES = ("planner", "caller", "summarizer")


class RequestView(PromptView):
    """The compact view with the tools ranked on the request alone (stable per task)."""

    def shown(self, tools: Sequence[Tool], turns: Sequence[Turn]) -> list[Tool]:
        ranked = [name for name, _ in rank(tools, request_of(turns))]
        keep = set(ranked[: self.top_k]) | set(called_tools(turns))
        return [tool for tool in tools if tool["Name"] in keep]


def reuse(trajectories: Sequence[dict[str, Any]], view: PromptView) -> dict[str, Any]:
    """All prompt characters, and those a per-role cache leaves to compute, per role."""
    total: dict[str, int] = dict.fromkeys(ROLES, 0)
    left: dict[str, int] = dict.fromkeys(ROLES, 0)
    for trajectory in trajectories:
        samples = role_samples(dict(trajectory), reference_quirks=False, view=view)
        for role in ROLES:
            cached = ""
            for sample in samples.get(role, []):
                prompt = sample["input"]
                total[role] += len(prompt)
                left[role] += len(prompt) - shared_prefix(cached, prompt)
                cached = prompt + sample["target"]
    return {
        "prompt_chars": sum(total.values()),
        "to_compute": sum(left.values()),
        "per_role": {r: {"prompt_chars": total[r], "to_compute": left[r]} for r in ROLES},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="trajectories (umiq data build)")
    parser.add_argument("--top-k", type=int, nargs="+", default=[6, 8, 10])
    args = parser.parse_args()
    trajectories = json.loads(args.data.read_text())
    rows = []
    for name, cls in (("compact", PromptView), ("request", RequestView)):
        for k in args.top_k:
            view = cls("compact", k)
            row = {"view": name, "top_k": k, **reuse(trajectories, view)}
            row["recall"] = recall_at_k(trajectories, view)["recall"]
            rows.append(row)
    base = rows[0]["prompt_chars"]
    print("| view | top k | prompt chars | to compute | of the shipped view's prompts | recall |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        share = r["to_compute"] / base
        print(
            f"| {r['view']} | {r['top_k']} | {r['prompt_chars']:,} | {r['to_compute']:,} "
            f"| {share:.2f} | {r['recall']} |"
        )
    print(json.dumps(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

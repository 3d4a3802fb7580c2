"""What the summarizer answers on the expert's own histories, judged as live tasks are.

    python bench/summarizer_answers.py --data .umiq/data/acme/dev.json \
        --adapter worker/models/shipped/acme-demo/summarizer [--threads 2] [--limit N]

For every trajectory of a data split that ends in an answer, the summarizer gets the
prompt serving would send after the expert's calls (the conclusion sample of
``role_samples``: the same function builds training and serving prompts), greedy, with
the settings' token limit. Each answer is then read as a live task's answer is:

- ``facts``: the task's checker (``examples.acme.tasks.checkers.answer_reasons``) finds
  the expected facts and none of the forbidden ones;
- ``held``: the ``claims`` policy would hold it (a change no call of the history made, or
  a degenerate text: ``policies.check_claims``, ``check_form``);
- ``passed``: both right; the expert's own answer is checked the same way (it must pass).

The calls are the expert's, so this isolates the summarizer: a live failure whose cause
is ``wrong answer`` after the right calls is one of these. Prints each failure with its
reasons, the counts, and the counts by family. The tasks come from the data build's
``tasks_<split>.json`` beside ``--data``, in the trajectories' order.

The model answers in the task's tokens (``<NAME_1>``); live, the requester and the
checker read the raw values (``worker.agent.guard.reveal``). Here the token map is read
off the same split built with ``--raw`` (``umiq data build --raw``, same seed and
sizes; ``--raw-data``): each token of a turn is the text the raw turn holds in its
place.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import adapter_bench_parser

TOKEN = re.compile(r"<[A-Z][A-Z_]*_\d+>")


def token_map(view: list[dict], raw: list[dict]) -> dict[str, str]:
    """The raw text of each token of ``view``'s turns, aligned with ``raw``'s."""
    found: dict[str, str] = {}
    for seen, original in zip(view, raw, strict=True):
        text = seen["value"]
        tokens = TOKEN.findall(text)
        if not tokens:
            continue
        parts = TOKEN.split(text)
        pattern = "(.+?)".join(re.escape(part) for part in parts)
        match = re.fullmatch(pattern, original["value"], re.DOTALL)
        if match is not None:
            found.update(zip(tokens, match.groups(), strict=True))
    return found


def reveal(text: str, tokens: dict[str, str]) -> str:
    return TOKEN.sub(lambda m: tokens.get(m.group(0), m.group(0)), text)


def judge(expected: dict, answer: str, history: list[dict], writes: set[str]) -> list[str]:
    """Why ``answer`` would fail its task after ``history`` (empty: it passes)."""
    from examples.acme.tasks.checkers import answer_reasons
    from policies import check_claims, check_form
    from worker.agent.episode import claims_evidence

    reasons = list(answer_reasons(expected, answer))
    done, seen = claims_evidence(history, writes)
    for decision in (check_claims(answer, writes=done, responses=seen), check_form(answer)):
        if not decision.allowed:
            reasons += [f"held: {r}" for r in decision.reasons]
    return reasons


def main() -> None:
    parser = adapter_bench_parser(__doc__, "summarizer")
    parser.add_argument(
        "--raw-data", required=True, help="the same split built with --raw (the token map)"
    )
    parser.add_argument("--limit", type=int, default=0, help="first N answers (0: all)")
    parser.add_argument("--out", help="write every answer and its reasons here (JSON)")
    args = parser.parse_args()

    import torch

    from worker.agent.roles import GenerationRequest
    from worker.data.samples import load_trajectories, role_samples
    from worker.models import resolve_base
    from worker.models.backend import HFRoleModel
    from worker.settings import get_settings

    torch.set_num_threads(args.threads)
    settings = get_settings().model_copy(update={"base_model": args.base})
    data = Path(args.data)
    tasks_file = data.with_name(f"tasks_{data.stem}.json")
    tasks = json.loads(tasks_file.read_text())  # in the trajectories' order
    model = HFRoleModel(resolve_base(settings), adapters={"summarizer": Path(args.adapter)})

    trajectories = load_trajectories(data)
    raws = load_trajectories(args.raw_data)
    if not len(trajectories) == len(raws) == len(tasks):
        raise SystemExit(
            f"{len(tasks)} tasks, {len(trajectories)} trajectories and {len(raws)} raw ones"
        )
    cases = []
    for task, trajectory, raw in zip(tasks, trajectories, raws, strict=True):
        tokens = token_map(trajectory["conversations"], raw["conversations"])
        for sample in role_samples(trajectory)["summarizer"]:
            cases.append((task, sample, tokens))
    cases = cases[: args.limit or None]
    print(f"{len(cases)} answers in {data}", flush=True)

    counts: Counter[str] = Counter()
    by_family: dict[str, Counter[str]] = {}
    rows = []
    started = time.monotonic()
    for k, (task, sample, tokens) in enumerate(cases):
        request = GenerationRequest(
            role="summarizer", prompt=sample["input"], max_new_tokens=settings.max_new_tokens
        )
        answer = reveal(model.generate([request])[0].text.strip(), tokens)
        # The history's calls are the expert's: every one it made backs what it did
        # (the data has no tool effects; a read backs no claim of a change anyway).
        writes = {tool["Name"] for tool in sample["tools"]}
        reasons = judge(task["expected"], answer, sample["history"], writes)
        expert = judge(
            task["expected"], reveal(sample["target"], tokens), sample["history"], writes
        )
        family = by_family.setdefault(task["family"], Counter())
        for counter in (counts, family):
            counter["answers"] += 1
            counter["passed"] += not reasons
            counter["held"] += any(r.startswith("held:") for r in reasons)
            counter["expert passed"] += not expert
        rows.append({"uid": task["uid"], "answer": answer, "reasons": reasons, "expert": expert})
        if reasons:
            print(f"{k} {task['uid']}: {answer!r}\n    " + "; ".join(reasons), flush=True)
    print(json.dumps(dict(counts)), f"{time.monotonic() - started:.0f} s", flush=True)
    for name, family in sorted(by_family.items()):
        print(f"  {name}: {family['passed']}/{family['answers']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"counts": counts, "answers": rows}, indent=1))


if __name__ == "__main__":
    main()

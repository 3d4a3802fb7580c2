"""Training data: stages per method, tokenized examples, a seeded step schedule.

Samples come from :func:`worker.data.samples.role_samples` with
``reference_quirks=False``, so every prompt is exactly what the agent loop sends at
inference. An example is the prompt's tokens (tokenizer defaults, as at inference)
followed by the target's tokens and the end-of-sequence token; the loss sees only the
target and the end-of-sequence token (prompt labels are ``-100``). A prompt too long
for ``max_length`` loses its left part (after a leading BOS, which is kept), so the
target and the turns nearest to it stay.

Nothing here imports torch except :func:`collate`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.agent import protocol
from worker.agent.roles import AGENT_ROLES, ALL_ROLES
from worker.data.samples import load_trajectories, role_samples
from worker.errors import ConfigError
from worker.prompt_window import cut_prompt

IGNORE = -100


@dataclass(frozen=True)
class Stage:
    """One training stage: its name (also its output dir), its samples' role, its start."""

    name: str
    role: str
    init_from: str | None = None
    """The stage whose final adapter this one starts from; None starts a fresh LoRA."""


def stages_for(method: str) -> list[Stage]:
    """The stages of a method, in order."""
    if method == "glpft":
        return [
            Stage("global", "backbone"),
            *(Stage(r, r, "global") for r in AGENT_ROLES),
        ]
    if method == "single":
        return [Stage("single", "backbone")]
    if method == "one_stage":
        return [Stage(r, r) for r in AGENT_ROLES]
    raise ConfigError(f"unknown training method {method!r}")


def load_samples(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Every role's samples from the trajectories at ``path``, in trajectory order."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"training data {path} does not exist; pass a trajectory file or folder")
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in ALL_ROLES}
    for trajectory in load_trajectories(path):
        for role, samples in role_samples(trajectory, reference_quirks=False).items():
            out[role].extend(samples)
    return out


def data_view(path: str | Path) -> dict[str, Any] | None:
    """The prompt view every trajectory at ``path`` was written for (``PromptView.spec``),
    or None when they name different views. The card records it: serving shows a model
    set the prompts it was trained on."""
    from worker.agent.views import view_of

    specs = {
        json.dumps(view_of(t).spec(), sort_keys=True)
        for t in load_trajectories(Path(path).expanduser())
    }
    return json.loads(specs.pop()) if len(specs) == 1 else None


def _sha256_json(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def data_hash(samples: dict[str, list[dict[str, Any]]]) -> str:
    """sha256 of the canonical JSON of the samples (roles sorted, keys sorted)."""
    return _sha256_json({role: samples[role] for role in sorted(samples)})


def role_hashes(samples: Mapping[str, Sequence[Any]]) -> dict[str, str]:
    """sha256 of each role's samples alone (canonical JSON). A stage trains on its role's
    samples only, so these, not :func:`data_hash`, decide its weights: data that differs
    in the planner's prompts alone leaves the other stages' fingerprints as they were."""
    return {role: _sha256_json(list(samples[role])) for role in sorted(samples)}


def select(samples: Sequence[Any], seed: int, max_samples: int | None) -> list[Any]:
    """A seeded shuffle of ``samples``, cut to ``max_samples``."""
    order = list(range(len(samples)))
    random.Random(f"select:{seed}").shuffle(order)
    if max_samples is not None:
        order = order[:max_samples]
    return [samples[i] for i in order]


def decision(sample: dict[str, Any]) -> str:
    """The decision a planner sample teaches: ``give up``, ``conclusion``, ``caller first``
    (the first call, nothing observed yet) or ``caller next`` (a call after an observation).
    """
    route = protocol.parse_planner(sample["target"]).next
    if route != "caller":
        return route
    called = any(turn.get("from") == "caller" for turn in sample.get("history", ()))
    return "caller next" if called else "caller first"


def decision_quotas(
    counts: Mapping[str, int], total: int, shares: Mapping[str, float] | None = None
) -> dict[str, int]:
    """How many of ``total`` places each decision present in ``counts`` gets.

    Without ``shares`` every decision gets ``total // kinds`` places, the remainder going
    to the largest decisions. ``shares`` fixes some decisions' fractions
    (``{"conclusion": 0.4}``); the decisions it leaves out split the rest equally. Shares
    of decisions the data lacks are dropped and the others scaled to fill the total.
    Places are rounded down, the remainder going to the largest fractional parts.
    """
    kinds = sorted(counts, key=lambda k: (-counts[k], k))
    if not kinds:
        return {}
    if not shares:
        return {
            k: total // len(kinds) + (1 if n < total % len(kinds) else 0)
            for n, k in enumerate(kinds)
        }
    fixed = {k: float(shares[k]) for k in kinds if k in shares}
    free = [k for k in kinds if k not in fixed]
    rest = max(0.0, 1.0 - sum(fixed.values()))
    weights = {**fixed, **{k: rest / len(free) for k in free}} if free else dict(fixed)
    scale = sum(weights.values())
    if scale <= 0:
        raise ConfigError(f"decision shares {dict(shares)} leave no place for any decision")
    exact = {k: total * weights[k] / scale for k in kinds}
    quotas = {k: int(exact[k]) for k in kinds}
    by_fraction = sorted(kinds, key=lambda k: (-(exact[k] - quotas[k]), kinds.index(k)))
    for k in by_fraction[: total - sum(quotas.values())]:
        quotas[k] += 1
    return quotas


def select_balanced(
    samples: Sequence[Any],
    seed: int,
    max_samples: int | None,
    shares: Mapping[str, float] | None = None,
) -> list[Any]:
    """A seeded selection with a set share of each :func:`decision`, shuffled.

    Random selection mirrors the data: in Acme's planner samples a third are first calls
    (the easiest step) and 36 of 1,031 give-ups. Here each decision gets the places
    :func:`decision_quotas` gives it (by default an equal share); a decision with fewer
    samples than its places repeats them, each before any twice.
    """
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(decision(sample), []).append(i)
    if not groups:
        return []
    total = len(samples) if max_samples is None else max_samples
    quotas = decision_quotas({k: len(v) for k, v in groups.items()}, total, shares)
    rng = random.Random(f"balance:{seed}")
    chosen: list[int] = []
    for kind in sorted(groups):
        members = groups[kind]
        picked: list[int] = []
        while len(picked) < quotas[kind]:
            order = list(members)
            rng.shuffle(order)
            picked += order[: quotas[kind] - len(picked)]
        chosen += picked
    rng.shuffle(chosen)
    return [samples[i] for i in chosen]


@dataclass(frozen=True)
class Example:
    """A tokenized sample: ``labels`` is ``-100`` on the prompt."""

    input_ids: list[int]
    labels: list[int]
    prompt_truncated: int
    """How many prompt tokens were cut from the left."""

    @property
    def target_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    @property
    def full_length(self) -> int:
        """Tokens the example would take uncut (its prompt as inference sends it)."""
        return len(self.input_ids) + self.prompt_truncated


def truncation_warning(stage: str, examples: Sequence[Example], max_length: int) -> str | None:
    """What cutting prompts to ``max_length`` costs a stage, or None when nothing was cut.

    The agent sends prompts whole at inference, so a cut prompt (its start, where the
    tool list begins, is gone) is one the adapter trains on but never sees.
    """
    cut = [e for e in examples if e.prompt_truncated]
    if not cut:
        return None
    longest = max(e.full_length for e in examples)
    return (
        f"{stage}: {len(cut)} of {len(examples)} prompts are longer than max_length "
        f"{max_length} and lose up to {max(e.prompt_truncated for e in cut)} tokens from "
        f"their start; inference sends them whole. --max-length {longest} trains on whole "
        "prompts."
    )


def tokenize(sample: dict[str, Any], tokenizer: Any, max_length: int, eos_id: int) -> Example:
    """Prompt tokens (tokenizer defaults) + target tokens + EOS, left-truncated to fit."""
    prompt = list(tokenizer(sample["input"])["input_ids"])
    target = [*tokenizer(sample["target"], add_special_tokens=False)["input_ids"], eos_id]
    # A target longer than the window keeps its start and leaves a quarter for the prompt.
    target = target[: max_length - min(len(prompt), max_length // 4)]
    original = len(prompt)
    prompt = cut_prompt(prompt, max_length - len(target), tokenizer.bos_token_id)
    ids = prompt + target
    return Example(ids, [IGNORE] * len(prompt) + target, original - len(prompt))


def schedule(
    n_examples: int, *, batch_size: int, grad_accum: int, epochs: int, seed: int
) -> list[list[list[int]]]:
    """Optimizer steps, each a list of micro-batches of example indices.

    Each epoch reshuffles with its own seeded RNG; an epoch's last step may hold fewer
    micro-batches. The schedule depends only on its arguments, so a resumed run
    continues at ``steps[k]`` exactly where the interrupted one stopped.
    """
    steps: list[list[list[int]]] = []
    for epoch in range(epochs):
        order = list(range(n_examples))
        random.Random(f"epoch:{seed}:{epoch}").shuffle(order)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        steps += [batches[i : i + grad_accum] for i in range(0, len(batches), grad_accum)]
    return steps


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Left-pad a micro-batch: every target ends at the last column, so the loss needs
    only the last ``keep`` positions' logits (``keep`` = longest target + 1)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids, labels, mask = [], [], []
    for e in examples:
        pad = width - len(e.input_ids)
        ids.append([pad_id] * pad + e.input_ids)
        labels.append([IGNORE] * pad + e.labels)
        mask.append([0] * pad + [1] * len(e.input_ids))
    attention = torch.tensor(mask)
    keep = 1 + max(
        len(e.labels) - next(i for i, x in enumerate(e.labels) if x != IGNORE) for e in examples
    )
    return {
        "input_ids": torch.tensor(ids),
        "attention_mask": attention,
        # Left padding: positions count real tokens only, as generate() does at inference.
        "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
        "labels": torch.tensor(labels),
        "keep": min(keep, width),
        "tokens": int(attention.sum()),
    }

"""Prefix packing: one forward pass for all the samples of a trajectory.

A role's samples from one trajectory share most of their tokens: the planner's prompt
at step k+1 is its prompt at step k (system text, tool docs, history) plus what happened
since. Trained one by one, each sample pays for that shared prefix again; a planner
trajectory of three decisions costs about three full prompts.

Packing lays the samples of a group out as a prefix tree in one sequence: every token
sequence (prompt + target + EOS, exactly as :func:`worker.training.data.tokenize` made
it) shares the longest token prefix it has with an earlier one and adds only the rest.
Each token attends to its own sample's earlier tokens and nothing else (a 4D attention
mask), and carries its position within its own sample, so every logit is the logit the
sample alone would give, and the loss is the sum of the samples' losses. Nothing about
tokenization is assumed: sharing is decided on the token ids themselves.

Samples are grouped by request (their tool docs and first turn): the samples of one
trajectory. Nothing here imports torch except :func:`collate_packed`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.training.data import IGNORE, Example

#: The most samples one packed sequence holds.
MAX_GROUP = 16


@dataclass(frozen=True)
class Packed:
    """Samples laid out as a prefix tree: ``paths[k]`` are the flat indices of sample
    ``k``'s tokens in order; ``predict_at[i]``'s logits predict ``targets[i]``."""

    input_ids: list[int]
    positions: list[int]
    paths: list[list[int]]
    predict_at: list[int]
    targets: list[int]
    unpacked_tokens: int
    """Tokens the samples take one by one (what packing saves is the difference)."""
    prompt_truncated: int = 0
    longest: int = 0

    @property
    def target_tokens(self) -> int:
        return len(self.targets)

    @property
    def samples(self) -> int:
        return len(self.paths)

    @property
    def full_length(self) -> int:
        """The longest sample's uncut length (as :attr:`Example.full_length`)."""
        return self.longest


def group_key(sample: Mapping[str, Any]) -> str:
    """Samples with the same tool docs and first turn come from one trajectory."""
    history = sample.get("history") or []
    first = history[0].get("value", "") if history else sample.get("input", "")[:2000]
    return json.dumps([sample.get("tools"), first], sort_keys=True, ensure_ascii=False)


def groups(samples: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Indices of ``samples`` by :func:`group_key`, first seen first, at most
    :data:`MAX_GROUP` per group."""
    by_key: dict[str, list[list[int]]] = {}
    order: list[list[int]] = []
    for i, sample in enumerate(samples):
        chunks = by_key.setdefault(group_key(sample), [])
        if not chunks or len(chunks[-1]) >= MAX_GROUP:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(i)
    return order


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pack(examples: Sequence[Example]) -> Packed:
    """``examples`` as one prefix tree (each shares its longest prefix with an earlier
    one); the loss positions are those of each example's target."""
    flat: list[int] = []
    positions: list[int] = []
    paths: list[list[int]] = []
    predict_at: list[int] = []
    targets: list[int] = []
    for example in examples:
        ids = example.input_ids
        shared, parent = 0, -1
        for k, earlier in enumerate(examples[: len(paths)]):
            n = _common(ids, earlier.input_ids)
            if n > shared:
                shared, parent = n, k
        path = paths[parent][:shared] if parent >= 0 else []
        for depth in range(shared, len(ids)):
            path.append(len(flat))
            flat.append(ids[depth])
            positions.append(depth)
        paths.append(path)
        start = next(i for i, x in enumerate(example.labels) if x != IGNORE)
        # the logit at a token predicts the next token of the same sample
        predict_at += path[start - 1 : len(ids) - 1]
        targets += ids[start:]
    return Packed(
        input_ids=flat,
        positions=positions,
        paths=paths,
        predict_at=predict_at,
        targets=targets,
        unpacked_tokens=sum(len(e.input_ids) for e in examples),
        prompt_truncated=max(e.prompt_truncated for e in examples),
        longest=max(e.full_length for e in examples),
    )


def pack_all(samples: Sequence[Mapping[str, Any]], examples: Sequence[Example]) -> list[Packed]:
    """The examples of ``samples`` (same order) packed by trajectory."""
    return [pack([examples[i] for i in group]) for group in groups(samples)]


def collate_packed(batch: Sequence[Packed]) -> dict[str, Any]:
    """One sequence of the batch's trees side by side (a block-diagonal mask): the
    model inputs, the positions whose logits are scored, and their targets."""
    import numpy as np
    import torch

    width = sum(len(p.input_ids) for p in batch)
    mask = np.zeros((width, width), dtype=bool)
    ids: list[int] = []
    positions: list[int] = []
    predict_at: list[int] = []
    targets: list[int] = []
    for packed in batch:
        offset = len(ids)
        for path in packed.paths:
            index = np.asarray(path, dtype=np.int64) + offset
            # a token sees its own sample's tokens up to itself
            mask[index[:, None], index[None, :]] |= np.tril(np.ones((len(path),) * 2, bool))
        ids += packed.input_ids
        positions += packed.positions
        predict_at += [i + offset for i in packed.predict_at]
        targets += packed.targets
    return {
        "input_ids": torch.tensor([ids]),
        "attention_mask": torch.from_numpy(mask)[None, None],
        "position_ids": torch.tensor([positions]),
        "predict_at": torch.tensor(predict_at),
        "targets": torch.tensor([targets]),
        "tokens": width,
    }

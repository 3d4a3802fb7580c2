"""Which of an engine's slots a role request takes, chosen by the client.

``llama-server`` keeps one KV cache per slot (``--parallel``) and reuses the part of a
new prompt that the slot's cached tokens already hold. Left to itself it picks the slot
whose cache shares the longest prefix with the prompt, whatever adapter filled it; a
slot whose adapter differs from the request's is then cleared (a cache computed under
one LoRA is not valid under another). In an α-UMi episode the prompt most like the next
planner prompt is the caller prompt just before it, so the engine kept choosing the
caller's slot and throwing its cache away: 0.1 % of prompt tokens came from the cache
(docs/performance.md).

:class:`SlotTable` makes that choice on the client, where the role is known: a request
takes a free slot that last served its own role and whose text shares the longest
prefix with its prompt; else an empty slot; else the least recently used one. The
request then names it (llama.cpp's ``id_slot``). One table per engine client, shared by
every episode of the process; a request waits while every slot of the table is busy.
Several worker processes on one engine each take their own range of its slots
(``UMIQ_ENGINE_SLOTS=A-B``): two processes that name the same slot only wait for each
other (the engine defers a request for a busy slot), they never share a cache wrongly.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from worker.errors import ConfigError, ModelError

#: Engine slots per concurrent episode: one per role, so the planner, caller and
#: summarizer each keep their prompt cache (16 episodes: 16 slots kept 4.6 % of prompt
#: tokens cached, 48 kept 24 %; docs/performance.md).
SLOTS_PER_EPISODE = 3


@dataclass
class _Slot:
    role: str | None = None
    text: str = ""
    busy: bool = False
    used: int = 0


@dataclass(frozen=True)
class Choice:
    """The slot a request took and how much of its prompt the slot's cache holds."""

    slot: int
    shared: int
    """Characters of the prompt at the start of the slot's cached text (same role only)."""
    reason: str
    """``prefix``, ``empty`` or ``lru``."""


class SlotTable:
    """The client's view of an engine's slots: what role and text each last held."""

    def __init__(self, slots: int | Sequence[int], *, min_share: float = 0.1) -> None:
        ids = list(range(slots)) if isinstance(slots, int) else list(slots)
        if not ids:
            raise ValueError("a slot table needs at least one slot")
        self.min_share = min_share
        """A same-role slot is preferred to an empty one when it holds at least this share
        of the prompt (llama-server's own threshold, ``--slot-prompt-similarity``, is 0.1)."""
        self._slots = {i: _Slot() for i in ids}
        self._free = threading.Condition()
        self._clock = itertools.count(1)

    def __len__(self) -> int:
        return len(self._slots)

    def acquire(self, role: str, text: str, *, timeout: float | None = None) -> Choice:
        """Take the best free slot for a ``role`` request whose prompt is ``text``; wait
        while none is free (ModelError after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._free:
            while True:
                choice = self._best(role, text)
                if choice is not None:
                    self._slots[choice.slot].busy = True
                    return choice
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ModelError(
                        f"no engine slot came free in {timeout:.0f} s ({len(self)} slots, all busy)"
                    )
                self._free.wait(left)

    def release(self, slot: int, role: str, text: str | None) -> None:
        """Give ``slot`` back; it now caches ``text`` under ``role``'s adapter (None: its
        cache is unknown, e.g. the request failed, so nothing is expected of it)."""
        with self._free:
            state = self._slots[slot]
            state.busy = False
            state.role = role if text is not None else None
            state.text = text or ""
            state.used = next(self._clock)
            self._free.notify()

    def _best(self, role: str, text: str) -> Choice | None:
        free = [(i, s) for i, s in self._slots.items() if not s.busy]
        if not free:
            return None
        same = [(shared_prefix(s.text, text), i) for i, s in free if s.role == role]
        shared, slot = max(same, default=(0, -1), key=lambda x: (x[0], -x[1]))
        if shared > 0 and shared >= self.min_share * len(text):
            return Choice(slot, shared, "prefix")
        empty = [i for i, s in free if s.role is None]
        if empty:
            return Choice(empty[0], 0, "empty")
        slot = min(free, key=lambda x: x[1].used)[0]
        return Choice(slot, 0, "lru")


def slot_ids(spec: str, count: int) -> list[int] | None:
    """The engine slot ids that ``UMIQ_ENGINE_SLOTS`` (``spec``) names on an engine with
    ``count`` slots: ``all``, ``A-B`` or ``off`` (None)."""
    if spec == "off":
        return None
    if spec == "all":
        return list(range(count))
    match = re.fullmatch(r"(\d+)-(\d+)", spec)
    if match is None:
        raise ConfigError(f"UMIQ_ENGINE_SLOTS must be all, off or a range A-B, got {spec!r}")
    first, last = int(match[1]), int(match[2])
    if first > last or last >= count:
        raise ConfigError(
            f"UMIQ_ENGINE_SLOTS={spec} names slots the engine does not have: it has {count} "
            f"(0-{count - 1}; its --parallel)"
        )
    return list(range(first, last + 1))


def shared_prefix(a: str, b: str) -> int:
    """How many characters ``a`` and ``b`` share at their start."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


__all__ = ["Choice", "SlotTable", "shared_prefix", "slot_ids"]

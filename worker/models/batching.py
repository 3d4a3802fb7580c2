"""Dynamic batching of concurrent ``generate`` calls, in process.

A worker's threads each run one episode and ask the role model for one request at a
time. A :class:`Batcher` gathers the requests of concurrent callers into shared batches:

- a caller queues its items and, when no batch is being run, becomes the *leader*: it
  waits until ``max_batch_size`` items are queued or the oldest queued item has waited
  ``wait_s`` (the gather window; 0 takes what is there), runs the oldest
  ``max_batch_size`` items as one batch, hands each item's caller its result, and goes on
  until its own items are done; then a caller whose items are still queued leads;
- the others (*followers*) wait for their results. Items queued while a batch runs go
  into the next one, so under load batches fill without any window.

A batch that raises hands its exception to every caller with an item in it (the same
exception object, as :class:`concurrent.futures.Future` does); their items still queued
are dropped and nobody else is touched. The batcher has no thread of its own: it has
nothing to stop at shutdown, and a caller never waits on a thread that has gone.

Pure threading, no torch: the backend passes the function that runs one batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

RunBatch = Callable[[Sequence[T], Sequence[float]], Sequence[R]]
"""Runs one batch: its items and the seconds each waited in the queue → one result each."""


class _Call:
    """One caller's items: their results as they come, or the error of their batch."""

    def __init__(self, size: int) -> None:
        self.asked = time.perf_counter()
        self.results: list[Any] = [None] * size
        self.left = size
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.left == 0 or self.error is not None


@dataclass
class _Item:
    call: _Call
    index: int
    value: Any


class Batcher(Generic[T, R]):
    """Serves concurrent callers' items in shared batches of at most ``max_batch_size``."""

    def __init__(
        self, run: RunBatch[T, R], *, max_batch_size: int = 16, wait_s: float = 0.0
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if wait_s < 0:
            raise ValueError(f"the gather window must be 0 s or more, got {wait_s}")
        self.run = run
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._leading = False

    def __call__(self, items: Sequence[T]) -> list[R]:
        """Each item's result, in order, once the batches holding them have run; the
        exception of a batch that failed holding one of them."""
        if not items:
            return []
        call = _Call(len(items))
        with self._cond:
            self._queue.extend(_Item(call, i, value) for i, value in enumerate(items))
            self._cond.notify_all()  # a leader gathering may now have a full batch
        while True:
            with self._cond:
                while self._leading and not call.done:
                    self._cond.wait()
                if call.done:
                    break
                self._leading = True
            try:
                self._run(self._take())
            except BaseException as exc:  # only what _run re-raises: the thread is stopping
                with self._cond:
                    call.error = call.error or exc
                    self._queue = deque(item for item in self._queue if item.call is not call)
                raise
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if call.error is not None:
            raise call.error
        return list(call.results)

    def _take(self) -> list[_Item]:
        """The next batch, once it is full or its oldest item has waited ``wait_s``."""
        with self._cond:
            while len(self._queue) < self.max_batch_size:
                left = self._queue[0].call.asked + self.wait_s - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            size = min(self.max_batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(size)]

    def _run(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            results = self.run(
                [item.value for item in batch], [started - item.call.asked for item in batch]
            )
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items gave {len(results)} results")
        except BaseException as exc:
            with self._cond:
                for item in batch:
                    item.call.error = item.call.error or exc
                self._queue = deque(item for item in self._queue if item.call.error is None)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit: the leader's thread stops too
            return
        with self._cond:
            for item, result in zip(batch, results, strict=True):
                if item.call.error is None:
                    item.call.results[item.index] = result
                    item.call.left -= 1

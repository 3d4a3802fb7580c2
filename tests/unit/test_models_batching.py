"""The batcher that gathers concurrent generate calls, on plain functions (no torch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tests.support import threads
from worker.models.batching import Batcher


def run_at_once(batcher: Batcher[Any, Any], calls: list[list[Any]]) -> list[Any]:
    """Each call's results (or exception), each made by its own thread at once."""
    return threads.at_once([lambda items=items: batcher(items) for items in calls], timeout=30)


class Doubler:
    """Doubles each item; records each batch and the waits it was given."""

    def __init__(self, fail_on: Any = None) -> None:
        self.batches: list[list[Any]] = []
        self.waits: list[list[float]] = []
        self.fail_on = fail_on

    def __call__(self, items: Sequence[Any], waited: Sequence[float]) -> list[Any]:
        self.batches.append(list(items))
        self.waits.append(list(waited))
        if self.fail_on in items:
            raise ValueError(f"cannot serve {self.fail_on}")
        return [2 * x for x in items]


def test_concurrent_calls_share_one_batch() -> None:
    """Calls made together run as one batch once it is full, and each gets its results."""
    run = Doubler()
    batcher = Batcher(run, max_batch_size=6, wait_s=30)
    out = run_at_once(batcher, [[1], [2, 3], [4], [5, 6]])
    assert out == [[2], [4, 6], [8], [10, 12]]
    assert len(run.batches) == 1
    assert sorted(run.batches[0]) == [1, 2, 3, 4, 5, 6]


def test_a_call_larger_than_a_batch_is_split_in_order() -> None:
    """A call with more items than max_batch_size runs in several batches, results in order."""
    run = Doubler()
    out = Batcher(run, max_batch_size=2)(list(range(5)))
    assert out == [0, 2, 4, 6, 8]
    assert run.batches == [[0, 1], [2, 3], [4]]


def test_the_gather_window_waits_for_others_and_reports_the_wait() -> None:
    """A lone call waits out the window for company, and its item reports that wait."""
    run = Doubler()
    assert Batcher(run, max_batch_size=4, wait_s=0.2)([1]) == [2]
    assert run.waits[0][0] >= 0.2


def test_no_gather_window_runs_a_lone_call_at_once() -> None:
    """With wait_s=0 a lone call does not wait, and empty calls return at once."""
    run = Doubler()
    batcher = Batcher(run, max_batch_size=4, wait_s=0)
    started = time.perf_counter()
    assert batcher([1]) == [2]
    assert batcher([]) == []
    assert time.perf_counter() - started < 5
    assert run.batches == [[1]]


def test_a_failing_batch_raises_in_each_of_its_callers_only() -> None:
    """Every caller with an item in a failing batch gets its exception, its items still
    queued are dropped, and callers in other batches get their results."""
    run = Doubler(fail_on=3)
    batcher = Batcher(run, max_batch_size=4, wait_s=1)
    out = run_at_once(batcher, [[1], [2, 3], [4], [5, 6, 7, 8]])
    failed = [o for o in out if isinstance(o, ValueError)]
    assert failed and all(e is failed[0] for e in failed)  # one exception, raised in each
    assert out[1] is failed[0]
    for call, result in zip([[1], [2, 3], [4], [5, 6, 7, 8]], out, strict=True):
        if not isinstance(result, ValueError):
            assert result == [2 * x for x in call]
    served = [x for batch in run.batches for x in batch]
    assert len(served) == len(set(served))  # nothing ran twice
    assert batcher([9]) == [18]


def test_a_wrong_number_of_results_fails_the_batch() -> None:
    """A run that returns fewer results than items fails its callers, not hangs them."""
    batcher = Batcher(lambda items, waited: list(items)[:-1], max_batch_size=2, wait_s=30)
    out = run_at_once(batcher, [[1], [2]])
    assert all(isinstance(o, RuntimeError) for o in out)


def test_a_leader_stopped_by_a_base_exception_hands_over() -> None:
    """When the thread running a batch is interrupted (KeyboardInterrupt), its batch's
    callers get the interruption and a waiting caller leads the next batch."""
    entered, release = threading.Event(), threading.Event()

    def run(items: Sequence[int], waited: Sequence[float]) -> list[int]:
        if 0 in items:
            entered.set()
            release.wait(timeout=30)
            raise KeyboardInterrupt
        return list(items)

    batcher = Batcher(run, max_batch_size=1)
    out: dict[str, Any] = {}

    def lead() -> None:
        try:
            batcher([0])
        except KeyboardInterrupt as exc:
            out["leader"] = exc

    leader = threading.Thread(target=lead)
    leader.start()
    entered.wait(timeout=30)
    follower = threading.Thread(target=lambda: out.setdefault("follower", batcher([7])))
    follower.start()
    release.set()
    leader.join(timeout=30)
    follower.join(timeout=30)
    assert not leader.is_alive() and not follower.is_alive()
    assert isinstance(out["leader"], KeyboardInterrupt)
    assert out["follower"] == [7]


@pytest.mark.parametrize(("size", "wait"), [(0, 0.0), (1, -1.0)])
def test_bad_settings_are_refused(size: int, wait: float) -> None:
    with pytest.raises(ValueError):
        Batcher(Doubler(), max_batch_size=size, wait_s=wait)

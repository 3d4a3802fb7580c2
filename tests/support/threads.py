"""Calls made by their own threads at once, for tests of what concurrent callers get."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def at_once(calls: list[Callable[[], Any]], *, timeout: float) -> list[Any]:
    """Each call's result (or the exception it raised), each made by its own thread, all
    released together by a barrier; fails the test if a caller is still waiting after
    ``timeout`` seconds."""
    start = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def ask(i: int) -> None:
        start.wait()
        try:
            out[i] = calls[i]()
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a caller hangs"
    return out

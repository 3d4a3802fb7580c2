"""Warm shutdown: the running episodes finish, or stop at a step boundary and go back.

A worker that receives SIGTERM (Celery's *warm shutdown*) stops consuming and waits for
the tasks it runs. Celery alone would wait for each episode to end, however long it
takes, and a SIGKILL at the end of the container's grace period would cut it anywhere.
umiq marks the moment the shutdown began (Celery's ``worker_shutting_down`` signal);
an episode may go on for ``shutdown_finish_s`` seconds after it (finishing if it can),
then stops before its next model step: every step so far is committed to the audit
log, so nothing is lost. The task publishes its own message again, unchanged (the same
retries count, not a redelivery), and is acknowledged; the next worker resumes it by
replay (``worker.agent.replay``): no step is generated or called twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from celery.signals import worker_shutting_down

_lock = threading.Lock()
_since: float | None = None


def request(now: float | None = None) -> None:
    """Mark that this process is shutting down (the first mark counts)."""
    global _since
    with _lock:
        if _since is None:
            _since = time.monotonic() if now is None else now


def requested() -> bool:
    """Whether a shutdown of this process has begun."""
    return _since is not None


def due(finish_s: float, now: float | None = None) -> bool:
    """Whether running episodes must stop at their next step boundary: a shutdown began
    at least ``finish_s`` seconds ago."""
    since = _since
    if since is None:
        return False
    return (time.monotonic() if now is None else now) - since >= finish_s


def checker(finish_s: float) -> Callable[[], bool]:
    """What an episode asks before each model step: must it stop now?"""
    return lambda: due(finish_s)


def reset() -> None:
    """Forget a shutdown mark (tests)."""
    global _since
    with _lock:
        _since = None


@worker_shutting_down.connect
def _on_worker_shutting_down(sig: Any = None, how: Any = None, **_: Any) -> None:
    # Runs in the worker's main thread, inside the signal handler: only set the mark.
    # A cold shutdown marks it too: an episode that reaches a step boundary before it is
    # killed goes back to the queue cleanly instead of waiting for the broker's requeue.
    # (No logging here: Celery has already said "worker: Warm shutdown".)
    request()

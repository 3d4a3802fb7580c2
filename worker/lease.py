"""One runner per task: a lease on the task id while its episode runs.

On Postgres the lease is a session advisory lock on a hash of the task id, held by a
connection of its own for as long as the episode runs: a duplicate delivery of the
same task (another thread, another worker, another host) waits for it and then finds
the task's recorded outcome instead of running it again. A worker that dies loses its
connection, and Postgres lets the lock go with it. On the embedded SQLite database (one
worker process) the lease is a lock in the process.

The lease connection never comes from the audit engine's pool: a lease is held for the
whole episode (minutes on a CPU), so leases drawn from the pool would take one pooled
connection per running episode and leave the episodes' own audit writes waiting for a
connection (with ``--concurrency`` above the pool's size, until the pool's timeout).
Each lease opens a connection of its own (``NullPool``: closed when the lease ends), so
a worker uses at most ``--concurrency`` lease connections beside its audit pool.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from worker.errors import AuditError

log = structlog.get_logger("umiq.lease")

#: The advisory-lock namespace of task leases (the first key of the two-key form).
NAMESPACE = 0x756D6971  # "umiq"
_POLL_S = 0.5

#: Process-local leases, striped: two task ids that share a stripe take turns.
_STRIPES = tuple(threading.Lock() for _ in range(256))


_LEASE_ENGINES: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_LEASE_ENGINES_LOCK = threading.Lock()


def lease_engine(engine: Engine) -> Engine:
    """The engine that leases on ``engine``'s database take their connections from: the
    same database and login, no pool (one connection per lease, closed with it). The
    lease runs only the advisory-lock functions, which need no grants, so it keeps the
    login's role rather than the audit engine's ``SET ROLE``."""
    with _LEASE_ENGINES_LOCK:
        found = _LEASE_ENGINES.get(engine)
        if found is None:
            found = create_engine(engine.url, poolclass=NullPool)
            _LEASE_ENGINES[engine] = found
        return found


def lock_key(task_id: str) -> int:
    """A task id's advisory-lock key: a signed 32-bit hash (the two-key form's second)."""
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


@contextmanager
def task_lease(engine: Engine, task_id: str, *, timeout: float = 3600.0) -> Iterator[float]:
    """Hold the lease on ``task_id`` for the block; yields the seconds waited for it.

    Raises AuditError when the database cannot be reached, or when the lease is still
    held by another runner after ``timeout`` seconds.
    """
    if engine.dialect.name != "postgresql":
        with _local_lease(task_id, timeout) as waited:
            yield waited
        return
    key = lock_key(task_id)
    started = time.monotonic()
    try:
        conn = lease_engine(engine).connect()
    except SQLAlchemyError as exc:
        raise AuditError(
            f"cannot take the lease on task {task_id!r}: {type(exc).__name__}"
        ) from exc
    try:
        try:
            while True:
                got = conn.execute(
                    text("SELECT pg_try_advisory_lock(:ns, :key)"), {"ns": NAMESPACE, "key": key}
                ).scalar()
                conn.commit()
                if got:
                    break
                if time.monotonic() - started > timeout:
                    raise AuditError(f"task {task_id!r} is still run by another worker")
                if time.monotonic() - started < _POLL_S * 1.5:
                    log.info("task.waiting_for_runner", task_id=task_id)
                time.sleep(_POLL_S)
        except SQLAlchemyError as exc:
            raise AuditError(
                f"cannot take the lease on task {task_id!r}: {type(exc).__name__}"
            ) from exc
        try:
            yield time.monotonic() - started
        finally:
            try:
                conn.execute(
                    text("SELECT pg_advisory_unlock(:ns, :key)"), {"ns": NAMESPACE, "key": key}
                )
                conn.commit()
            except SQLAlchemyError:
                # The connection is gone, and the lock with it.
                conn.invalidate()
    finally:
        conn.close()


@contextmanager
def _local_lease(task_id: str, timeout: float) -> Iterator[float]:
    lock = _STRIPES[lock_key(task_id) % len(_STRIPES)]
    started = time.monotonic()
    if not lock.acquire(timeout=timeout):
        raise AuditError(f"task {task_id!r} is still run by another thread")
    try:
        yield time.monotonic() - started
    finally:
        lock.release()

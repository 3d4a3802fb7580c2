"""Task leases on real Postgres hold connections of their own, never the audit pool's.

A lease is held for a whole episode. Drawn from the audit engine's pool, sixteen running
episodes held SQLAlchemy's default 5 + 10 connections and their own audit writes timed
out waiting for one ("QueuePool limit … reached", found by bench/episodes.py at
``--concurrency 16``). Here the audit pool holds one connection and no overflow, and
more leases than that are held at once while audit writes still go through.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from worker.audit import AuditLog, make_engine, upgrade
from worker.lease import NAMESPACE, task_lease

pytestmark = pytest.mark.integration

LEASES = 6


def _held_leases(url: str) -> int:
    probe = make_engine(url, role=None)
    try:
        with probe.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND classid = :ns AND granted"
                    ),
                    {"ns": NAMESPACE},
                ).scalar()
            )
    finally:
        probe.dispose()


def test_leases_held_at_once_leave_the_audit_pool_free(postgres_url: str) -> None:
    upgrade(postgres_url)
    log = AuditLog(
        make_engine(postgres_url, role=None, pool_size=1, max_overflow=0, pool_timeout=5)
    )
    holding = threading.Barrier(LEASES + 1)
    release = threading.Event()

    def episode(n: int) -> None:
        with task_lease(log.engine, f"lease-{n}", timeout=30):
            holding.wait(timeout=30)
            release.wait(timeout=60)

    try:
        with ThreadPoolExecutor(LEASES) as pool:
            running = [pool.submit(episode, n) for n in range(LEASES)]
            holding.wait(timeout=30)  # every lease is held now
            assert _held_leases(postgres_url) == LEASES
            # the audit pool (one connection, no overflow) still serves writes and reads
            for n in range(LEASES):
                log.append_task(
                    task_id=f"lease-{n}", department="finance", query="q", requested_by="r"
                )
            assert all(log.task(f"lease-{n}") is not None for n in range(LEASES))
            release.set()
            for future in running:
                future.result(timeout=30)
        assert _held_leases(postgres_url) == 0  # every lease let go with its connection
    finally:
        release.set()
        log.close()


def test_a_second_runner_of_the_same_task_waits_for_the_first(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url, role=None)
    order: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with task_lease(engine, "same-task", timeout=30):
            first_in.set()
            threading.Event().wait(1.0)
            order.append("first done")

    def second() -> None:
        first_in.wait(timeout=30)
        with task_lease(engine, "same-task", timeout=30) as waited:
            order.append(f"second in after {waited >= 0.5}")

    try:
        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(first), pool.submit(second)]:
                future.result(timeout=60)
        assert order == ["first done", "second in after True"]
    finally:
        engine.dispose()

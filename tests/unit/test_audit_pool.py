"""The audit engine's pool size on Postgres (``UMIQ_DATABASE_POOL_SIZE``, or the worker's
``--concurrency``). No server is needed: the engine connects lazily."""

from __future__ import annotations

import os

import pytest

from worker import cli
from worker.audit import make_engine
from worker.settings import get_settings

URL = "postgresql+psycopg://nobody@127.0.0.1:1/none"


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("UMIQ_DATABASE_POOL_SIZE", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _sizes(url: str = URL, **kwargs) -> tuple[int, int]:
    engine = make_engine(url, role=None, **kwargs)
    try:
        return engine.pool.size(), engine.pool._max_overflow
    finally:
        engine.dispose()


def test_unset_keeps_sqlalchemys_default() -> None:
    assert _sizes() == (5, 10)


def test_the_setting_sizes_pool_and_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMIQ_DATABASE_POOL_SIZE", "24")
    get_settings.cache_clear()
    assert _sizes() == (24, 24)
    assert _sizes(pool_size=2, max_overflow=0) == (2, 0)  # a caller's own choice wins


def test_the_worker_sizes_the_pool_to_its_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the worker command sets it
    cli._size_audit_pool(16)
    assert os.environ["UMIQ_DATABASE_POOL_SIZE"] == "16"
    assert _sizes() == (16, 16)


def test_a_small_worker_keeps_at_least_five(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", dict(os.environ))
    cli._size_audit_pool(1)
    assert _sizes() == (5, 5)


def test_an_operators_setting_wins_over_the_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMIQ_DATABASE_POOL_SIZE", "40")
    get_settings.cache_clear()
    cli._size_audit_pool(16)
    assert os.environ["UMIQ_DATABASE_POOL_SIZE"] == "40"
    assert _sizes() == (40, 40)

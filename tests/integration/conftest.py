"""Fixtures for tests against the real RabbitMQ, Postgres, ERP service and base model."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.required import unavailable

REPO = Path(__file__).resolve().parents[2]


def require_service(name: str, host: str, port: int) -> None:
    """Fail (under UMIQ_REQUIRE_SERVICES=1, as in CI) or skip when a service is unreachable."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        unavailable(f"{name} is not reachable on {host}:{port} ({exc})")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The real RabbitMQ on loopback."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def queue_names() -> tuple[str, str]:
    """A fresh work queue and dead-letter queue per test, so tests never see each other."""
    tag = uuid.uuid4().hex[:8]
    return f"umiq.test.{tag}", f"umiq.test.{tag}.dead"


@pytest.fixture
def erp(tmp_path: Path) -> Iterator[object]:
    """The real Acme ERP service on loopback, seeded."""
    from examples.acme.serve import start_erp

    with start_erp(tmp_path / "acme") as service:
        yield service

"""Shared test fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import ALLOW_PRIVILEGED_LOGIN
from tests.support.required import unavailable

# Every worker the tests start logs in to Postgres as the test server's superuser: the
# login gate (worker.login_gate) lets it, with a warning. The gate's tests drop it.
os.environ.update(ALLOW_PRIVILEGED_LOGIN)

#: The α-UMi reference trajectories and role samples (a copy of the α-UMi repository's
#: train-example data, see tests/fixtures/toolbench/README.md); UMIQ_FIXTURES points elsewhere.
TOOLBENCH_FIXTURES = Path(
    os.environ.get("UMIQ_FIXTURES", Path(__file__).resolve().parent / "fixtures" / "toolbench")
)


@pytest.fixture(scope="session")
def toolbench_dir() -> Path:
    """The folder of ToolBench reference fixtures; tests that need it skip without it."""
    if not (TOOLBENCH_FIXTURES / "raw_data_stage_2.json").is_file():
        pytest.fail(f"ToolBench fixtures not found in {TOOLBENCH_FIXTURES} (set UMIQ_FIXTURES)")
    return TOOLBENCH_FIXTURES


#: The Postgres server of the integration tests (trust auth on loopback, as in CI).
POSTGRES_SERVER = os.environ.get(
    "UMIQ_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh Postgres database ``umiq_test_<random>``, dropped afterwards.

    Without a reachable server the test is skipped, or failed when UMIQ_REQUIRE_SERVICES=1.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"umiq_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        unavailable(f"Postgres is not reachable at {POSTGRES_SERVER}: {exc.orig}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The model store shared by all tests (the base is fetched and converted once)."""
    from worker.models import resolve_base
    from worker.settings import Settings

    store = Path(os.environ.get("UMIQ_MODEL_DIR", REPO / ".umiq" / "models"))
    resolve_base(Settings(model_dir=store))
    return store

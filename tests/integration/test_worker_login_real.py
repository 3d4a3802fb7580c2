"""A real worker that connects to Postgres as its own login role (`umiq db login-role`),
not as a superuser with ``SET ROLE``: it runs a task end to end on RabbitMQ, Postgres and
the ERP, its result in Celery's ``celery_taskmeta`` included, and `umiq health` passes it.

The schema (audit tables and Celery's result tables) is made by an admin with `umiq db
upgrade`; the login may create nothing itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.support.cli import steps_of, umiq, worker_env
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}]


@pytest.fixture
def admin_env(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> dict[str, str]:
    """A worker's environment as the admin that ran `umiq db upgrade`."""
    env = worker_env(tmp_path / "data", amqp_url, postgres_url, queue_names, erp.url)
    env.pop("UMIQ_DATABASE_ROLE", None)
    return env


@pytest.fixture
def login_env(admin_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The same environment connecting as a login role made by `umiq db login-role`."""
    admin_url = admin_env["UMIQ_DATABASE_URL"]
    name = f"umiq_login_{uuid.uuid4().hex[:8]}"
    done = umiq(admin_env, "db", "login-role", name)
    assert done.returncode == 0, done.stdout + done.stderr
    url = make_url(admin_url).set(username=name, password=None).render_as_string(False)
    try:
        yield dict(admin_env, UMIQ_DATABASE_URL=url)
    finally:
        libpq = make_url(admin_url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def _result_rows(url: str, task_id: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT task_id, status FROM celery_taskmeta WHERE task_id = :t"),
                {"t": task_id},
            )
            return [(r[0], r[1]) for r in rows]
    finally:
        engine.dispose()


def test_a_worker_on_its_login_role_runs_a_task_end_to_end(
    admin_env: dict[str, str], login_env: dict[str, str], tmp_path: Path
) -> None:
    """As the login role the worker reads the ERP, audits each step and stores the result."""
    health = umiq(login_env, "health", "--check", "database", "--check", "login")
    assert health.returncode == 0, health.stdout + health.stderr
    assert "least privilege" in health.stdout, health.stdout

    task_id = f"login-{uuid.uuid4().hex[:6]}"
    envelope = {"task_id": task_id, "department": "finance", "requested_by": "ana",
                "query": "What is the status of invoice INV-1001?",
                "context": {"script": SCRIPT}}  # fmt: skip
    client = create_app(
        Settings(
            data_dir=tmp_path / "client",
            broker_url=admin_env["UMIQ_BROKER_URL"],
            database_url=admin_env["UMIQ_DATABASE_URL"],
            queue=admin_env["UMIQ_QUEUE"],
            dead_letter_queue=admin_env["UMIQ_DEAD_LETTER_QUEUE"],
        )
    )
    log = tmp_path / "worker.log"
    try:
        with WorkerProcess(login_env, log, ready_timeout=180):
            sent = client.send_task(TASK_NAME, args=[envelope])
            result = sent.get(timeout=180)
    finally:
        client.close()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "permission denied" not in text.lower(), text[-3000:]
    assert result["outcome"] == "answered", result
    kinds = [s["kind"] for s in steps_of(admin_env["UMIQ_DATABASE_URL"], task_id)]
    assert "tool" in kinds and kinds[-1] == "outcome", kinds
    # Celery's row, under the message's id, written by the login
    assert _result_rows(admin_env["UMIQ_DATABASE_URL"], sent.id) == [(sent.id, "SUCCESS")]

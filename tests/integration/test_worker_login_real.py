"""A real worker that connects to Postgres as its own login role (`umiq db login-role`),
not as a superuser with ``SET ROLE``: it runs a task end to end on RabbitMQ, Postgres and
the ERP, its result in Celery's ``celery_taskmeta`` included, and `umiq health` passes it.
Connected as the superuser it refuses to start (``worker.login_gate``) unless
``UMIQ_ALLOW_PRIVILEGED_LOGIN=1``.

The schema (audit tables and Celery's result tables) is made by an admin with `umiq db
upgrade`; the login may create nothing itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from kombu import Connection
from sqlalchemy.engine import make_url

from tests.support.cli import celery_client, steps_of, umiq, worker_env
from worker.celery_app import TASK_NAME, task_queue
from worker.errors import ConfigError
from worker.login_gate import EX_CONFIG, OVERRIDE
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
    """The same environment connecting as a login role made by `umiq db login-role`, and
    without the override that lets the tests' workers log in as the superuser."""
    admin_url = admin_env["UMIQ_DATABASE_URL"]
    name = f"umiq_login_{uuid.uuid4().hex[:8]}"
    done = umiq(admin_env, "db", "login-role", name)
    assert done.returncode == 0, done.stdout + done.stderr
    url = make_url(admin_url).set(username=name, password=None).render_as_string(False)
    try:
        env = dict(admin_env, UMIQ_DATABASE_URL=url)
        env.pop(OVERRIDE, None)
        yield env
    finally:
        libpq = make_url(admin_url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def _waiting(env: dict[str, str]) -> int:
    """Messages ready in the work queue of ``env`` (declared as the worker declares it)."""
    settings = Settings(queue=env["UMIQ_QUEUE"], dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"])
    queue = task_queue(settings)
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        channel = conn.channel()
        bound = queue(channel)
        bound.declare()
        declared = bound.queue_declare(passive=True)
        channel.close()
    return int(declared.message_count)


def _events(log_text: str, event: str) -> list[dict[str, object]]:
    """The JSON log lines of ``event``."""
    found = []
    for line in log_text.splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            found.append(json.loads(line))
    return found


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
    client = celery_client(admin_env, tmp_path)
    log = tmp_path / "worker.log"
    try:
        with WorkerProcess(login_env, log, ready_timeout=180):
            sent = client.send_task(TASK_NAME, args=[envelope])
            result = sent.get(timeout=180)
    finally:
        client.close()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "permission denied" not in text.lower(), text[-3000:]
    # the login gate let it through, without the override
    [checked] = _events(text, "worker.login_checked")
    assert checked["login"] == make_url(login_env["UMIQ_DATABASE_URL"]).username
    assert not _events(text, "worker.login_privileged"), text[-3000:]
    assert result["outcome"] == "answered", result
    kinds = [s["kind"] for s in steps_of(admin_env["UMIQ_DATABASE_URL"], task_id)]
    assert "tool" in kinds and kinds[-1] == "outcome", kinds
    # Celery's row, under the message's id, written by the login
    assert _result_rows(admin_env["UMIQ_DATABASE_URL"], sent.id) == [(sent.id, "SUCCESS")]


def test_a_worker_on_the_superuser_login_refuses_to_start_and_takes_no_task(
    admin_env: dict[str, str], tmp_path: Path
) -> None:
    """As the superuser, without UMIQ_ALLOW_PRIVILEGED_LOGIN, the worker exits with 78
    before it consumes: the task sent to it stays queued; the override starts it, warning."""
    refused_env = dict(admin_env)
    refused_env.pop(OVERRIDE)
    superuser = make_url(admin_env["UMIQ_DATABASE_URL"]).username
    task_id = f"refused-{uuid.uuid4().hex[:6]}"
    envelope = {"task_id": task_id, "department": "finance", "requested_by": "ana",
                "query": "What is the status of invoice INV-1001?",
                "context": {"script": SCRIPT}}  # fmt: skip
    assert _waiting(admin_env) == 0
    client = celery_client(admin_env, tmp_path)
    try:
        sent = client.send_task(TASK_NAME, args=[envelope])
        assert _waiting(admin_env) == 1

        log = tmp_path / "refused.log"
        with pytest.raises(ConfigError, match=f"exited with {EX_CONFIG}"):
            WorkerProcess(refused_env, log, ready_timeout=180).start()
        text = log.read_text(encoding="utf-8", errors="replace")
        [refused] = _events(text, "worker.login_refused")
        assert (refused["level"], refused["login"], refused["superuser"]) == (
            "error",
            superuser,
            True,
        )
        detail = str(refused["detail"])
        assert f"logs in as {superuser}, a superuser" in detail, detail
        assert "`umiq db login-role NAME` as an admin" in detail, detail
        assert _waiting(admin_env) == 1  # nothing consumed
        assert steps_of(admin_env["UMIQ_DATABASE_URL"], task_id) == []

        allowed = tmp_path / "allowed.log"
        with WorkerProcess(admin_env, allowed, ready_timeout=180):
            result = sent.get(timeout=180)
    finally:
        client.close()
    assert result["outcome"] == "answered", result
    text = allowed.read_text(encoding="utf-8", errors="replace")
    [warned] = _events(text, "worker.login_privileged")
    assert (warned["level"], warned["login"]) == ("warning", superuser)
    assert f"{OVERRIDE}=1" in str(warned["detail"])

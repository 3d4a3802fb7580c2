"""`umiq worker` and `umiq submit` as separate processes on RabbitMQ and Postgres."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kombu import Connection, Producer

from tests.support.cli import steps_of, umiq
from worker.celery_app import dead_letter_queue
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.real_model, pytest.mark.slow]


@pytest.fixture
def env(
    tmp_path: Path,
    amqp_url: str,
    postgres_url: str,
    queue_names: tuple[str, str],
    model_dir: Path,
    erp: Any,
) -> dict[str, str]:
    queue, dead = queue_names
    environment = dict(os.environ)
    environment.update(
        {
            "UMIQ_DATA_DIR": str(tmp_path / "data"),
            "UMIQ_MODEL_DIR": str(model_dir),
            "UMIQ_BROKER_URL": amqp_url,
            "UMIQ_DATABASE_URL": postgres_url,
            "UMIQ_QUEUE": queue,
            "UMIQ_DEAD_LETTER_QUEUE": dead,
            "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
            "UMIQ_MAX_STEPS": "2",
            "UMIQ_MAX_NEW_TOKENS": "24",
            "UMIQ_LOG_FORMAT": "json",
        }
    )
    done = umiq(environment, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    return environment


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    log_path = tmp_path / "worker.log"
    with WorkerProcess(env, log_path, (), ready_timeout=180):
        yield log_path


def wait_for_steps(url: str, task_id: str, kind: str, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = steps_of(url, task_id)
        if any(s["kind"] == kind for s in steps):
            return steps
        time.sleep(0.5)
    raise AssertionError(f"no {kind} step for {task_id} within {timeout}s")


def submit(env: dict[str, str], task_id: str, query: str) -> dict[str, Any]:
    done = umiq(
        env, "submit", query, "--department", "finance", "--task-id", task_id, "--timeout", "240"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout[done.stdout.index("{") :])


def test_submitted_task_completes_with_steps_in_postgres(env: dict[str, str], worker: Path):
    """A task submitted from another process ends, its steps are Postgres rows and verify passes."""
    task_id = f"it-{uuid.uuid4().hex[:8]}"
    outcome = submit(env, task_id, "What is the status of invoice INV-1001?")
    assert outcome["task_id"] == task_id
    assert outcome["outcome"] in {"answered", "held", "gave_up", "step_limit"}
    kinds = [s["kind"] for s in steps_of(env["UMIQ_DATABASE_URL"], task_id)]
    assert kinds[0] == "planner"
    assert kinds[-1] == "outcome"
    verify = umiq(env, "audit", "verify")
    assert verify.returncode == 0, verify.stdout
    assert "OK" in verify.stdout


def test_tampered_row_is_named_by_verify(env: dict[str, str], worker: Path):
    """Editing one step row in Postgres makes `umiq audit verify` fail and name that row."""
    task_id = f"it-{uuid.uuid4().hex[:8]}"
    submit(env, task_id, "Which vendor sent invoice INV-1003?")
    first = steps_of(env["UMIQ_DATABASE_URL"], task_id)[0]
    engine = sa.create_engine(env["UMIQ_DATABASE_URL"])
    with engine.begin() as conn:
        # A superuser bypassing the append-only triggers, as an attacker with DB access would.
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            sa.text("UPDATE step SET output = 'tampered' WHERE seq = :s"), {"s": first["seq"]}
        )
    engine.dispose()
    verify = umiq(env, "audit", "verify")
    assert verify.returncode == 1
    assert "step" in verify.stdout
    assert f"seq={first['seq']}" in verify.stdout


def _dead_letters(amqp_url: str, dead: str, expected: int) -> list[Any]:
    queue = dead_letter_queue(Settings(dead_letter_queue=dead))
    got = []
    with Connection(amqp_url) as conn:
        simple = conn.SimpleQueue(queue)
        deadline = time.monotonic() + 90
        while len(got) < expected and time.monotonic() < deadline:
            try:
                message = simple.get(timeout=1)
            except simple.Empty:
                continue
            got.append(message)
            message.ack()
        simple.close()
    return got


def test_malformed_envelope_from_plain_kombu_is_refused(env: dict[str, str], worker: Path):
    """A Celery message with a bad envelope is refused, audited, dead-lettered; work goes on."""
    queue, dead = env["UMIQ_QUEUE"], env["UMIQ_DEAD_LETTER_QUEUE"]
    bad_id = f"bad-{uuid.uuid4().hex[:8]}"
    body = [
        [{"task_id": bad_id, "query": "pay everything", "requested_by": "mallory"}],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        Producer(conn).publish(
            body,
            exchange="umiq",
            routing_key=queue,
            serializer="json",
            headers={
                "task": "umiq.run_task",
                "id": str(uuid.uuid4()),
                "lang": "py",
                "retries": 0,
                "argsrepr": "",
                "kwargsrepr": "",
            },
        )
        Producer(conn).publish(
            "certainly not json",
            exchange="umiq",
            routing_key=queue,
            content_type="text/plain",
            content_encoding="utf-8",
        )
    steps = wait_for_steps(env["UMIQ_DATABASE_URL"], bad_id, "rejected")
    rejected = next(s for s in steps if s["kind"] == "rejected")
    assert "department" in rejected["output"]
    assert "missing" in rejected["output"]
    assert "pay everything" not in json.dumps(rejected, default=str)

    letters = _dead_letters(env["UMIQ_BROKER_URL"], dead, expected=2)
    reasons = [m.headers.get("x-umiq-reason", "") for m in letters]
    assert any("department: missing" in r for r in reasons), reasons
    assert any("text/plain" in r for r in reasons), reasons

    # The worker is still serving: the next good task completes.
    outcome = submit(env, f"it-{uuid.uuid4().hex[:8]}", "What is the status of INV-1001?")
    assert outcome["outcome"] in {"answered", "held", "gave_up", "step_limit"}

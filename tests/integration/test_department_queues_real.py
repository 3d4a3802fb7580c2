"""Per-department queues on the real RabbitMQ and Postgres, with real workers and the
scripted role model: a worker for finance never takes an hr task; pausing hr (audited)
stops hr's worker taking tasks while finance runs on; resuming hands them back."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from amqp.exceptions import PreconditionFailed
from kombu import Connection

from tests.support.cli import audit_verify, bare_env, umiq
from worker.audit import AuditLog
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FINANCE = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1002"}}]
HR = [{"tool": "get_employee", "arguments": {"employee_id": "E-1009"}}]


def depth(amqp_url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of ``queue``."""
    with Connection(amqp_url) as conn:
        _, messages, consumers = conn.default_channel.queue_declare(queue, passive=True)
    return messages, consumers


def eventually(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_department_worker_and_pausing_one_department(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str]
) -> None:
    from examples.acme.serve import start_acme

    queue, dead = queue_names
    tag = queue[-8:]
    env = bare_env()
    with start_acme(tmp_path / "acme") as acme:
        env.update({
            "UMIQ_DATA_DIR": str(tmp_path / "data"),
            "UMIQ_BROKER_URL": amqp_url,
            "UMIQ_DATABASE_URL": postgres_url,
            "UMIQ_QUEUE": queue,
            "UMIQ_DEAD_LETTER_QUEUE": dead,
            "UMIQ_DEPARTMENT_QUEUES": "1",
            "UMIQ_CONNECTORS": json.dumps(acme.connectors_config()),
            "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
            "UMIQ_LOG_FORMAT": "json",
        })  # fmt: skip
        assert umiq(env, "db", "upgrade").returncode == 0
        client = Settings(
            data_dir=tmp_path / "client",
            broker_url=amqp_url,
            database_url=postgres_url,
            queue=queue,
            dead_letter_queue=dead,
            department_queues=True,
        )
        app = create_app(client)
        audit = AuditLog.from_url(postgres_url)

        def send(department: str, script: list[dict[str, Any]]) -> tuple[str, Any]:
            task_id = f"{department}-{uuid.uuid4().hex[:8]}"
            envelope = {"task_id": task_id, "department": department, "requested_by": "it",
                        "query": "Look the record up.", "context": {"script": script}}  # fmt: skip
            return task_id, app.send_task(TASK_NAME, args=[envelope])

        def rollout(*args: str) -> str:
            done = umiq(env, "rollout", *args, "--by", "ops", "--reason", "test")
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        def worker(department: str) -> WorkerProcess:
            args = ("--departments", department, "--hostname", f"{department}-{tag}@%h")
            log = tmp_path / f"{department}.log"
            return WorkerProcess(env, log, ("--loglevel", "INFO", *args), ready_timeout=180)

        hr_queue, finance_queue = f"{queue}.hr", f"{queue}.finance"
        try:
            with worker("finance") as finance:
                # the finance worker takes finance's task and leaves hr's on hr's queue
                h0, h0_result = send("hr", HR)
                f0, f0_result = send("finance", FINANCE)
                assert f0_result.get(timeout=120)["outcome"] == "answered", finance.log_text()
                assert audit.task(h0) is None
                assert depth(amqp_url, hr_queue) == (1, 0)

                with worker("hr") as hr:
                    assert h0_result.get(timeout=120)["outcome"] == "answered", hr.log_text()

                    # pause hr: its worker stops taking tasks, finance runs on
                    said = rollout("pause", "hr")
                    assert f"paused {hr_queue}" in said, said
                    eventually(lambda: depth(amqp_url, hr_queue)[1] == 0, "hr still consumed")
                    h1, h1_result = send("hr", HR)
                    f1, f1_result = send("finance", FINANCE)
                    assert f1_result.get(timeout=120)["outcome"] == "answered"
                    time.sleep(3)
                    assert audit.task(h1) is None and depth(amqp_url, hr_queue) == (1, 0)

                    # resume hr: hr's worker, and only it, takes the waiting task
                    said = rollout("resume", "hr")
                    assert f"resumed {hr_queue}" in said and "does not serve" in said, said
                    assert h1_result.get(timeout=120)["outcome"] == "answered"
                    hr_log = hr.log_text()
                finance_log = finance.log_text()
            assert f0 in finance_log and f1 in finance_log
            assert h0 not in finance_log and h1 not in finance_log
            assert h0 in hr_log and h1 in hr_log and f0 not in hr_log

            # the pause and the resume are rollout changes on the chain, who and why
            history = umiq(env, "rollout", "history", "hr", "--json")
            changes = [json.loads(line) for line in history.stdout.splitlines()]
            assert [(c["after"]["paused"], c["changed_by"]) for c in changes] == [
                (True, "ops"), (False, "ops")]  # fmt: skip

            # the departments' queues are quorum queues like the one queue
            for name in (hr_queue, finance_queue):
                with Connection(amqp_url) as conn, pytest.raises(PreconditionFailed):
                    conn.default_channel.queue_declare(
                        name, durable=True, arguments={"x-queue-type": "classic"}
                    )
        finally:
            app.close()
            audit.close()
        verify = audit_verify(env)
        assert verify.returncode == 0, verify.stdout + verify.stderr

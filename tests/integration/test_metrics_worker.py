"""The worker's /metrics endpoint, scraped while a real worker runs tasks on RabbitMQ and
Postgres with the scripted role model: the counters move with what the tasks did."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import bare_env, umiq
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPTS = {
    "answered": [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}],
    # the ERP answers 404: a failed connector call the planner then reads
    "missing": [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-9999"}}],
    # a tool finance may not use (no HR connector here): refused by the access policy
    "refused": [{"tool": "get_employee", "arguments": {"employee_id": "E-1001"}}],
    # above the 50,000 limit: the call waits for a human
    "approval": [
        {
            "tool": "schedule_payment",
            "arguments": {"invoice_id": "INV-1001", "amount": 60000, "date": "2025-03-20"},
        }
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from the endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_while_a_worker_runs_tasks(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> None:
    queue, dead = queue_names
    port = free_port()
    env = bare_env()
    env.update({
        "UMIQ_DATA_DIR": str(tmp_path / "data"),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_QUEUE": queue,
        "UMIQ_DEAD_LETTER_QUEUE": dead,
        "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
        "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
        "UMIQ_LOG_FORMAT": "json",
        "UMIQ_METRICS_PORT": str(port),
        "UMIQ_METRICS_SCAN_S": "0",
    })  # fmt: skip
    done = umiq(env, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    app = create_app(Settings(data_dir=tmp_path / "client", broker_url=amqp_url,
                              database_url=postgres_url, queue=queue,
                              dead_letter_queue=dead))  # fmt: skip
    try:
        # a node name of its own: another worker on this host may be running as celery@%h
        node = ("--loglevel", "INFO", "--hostname", f"metrics-{queue[-8:]}@%h")
        with WorkerProcess(env, tmp_path / "worker.log", node, ready_timeout=180) as worker:
            before = scrape(port)
            outcomes = {}
            for name, script in SCRIPTS.items():
                envelope = {
                    "task_id": f"metrics-{name}-{queue[-8:]}",
                    "department": "finance",
                    "query": "Look at invoice INV-1001.",
                    "requested_by": "metrics-test",
                    "context": {"script": script},
                }
                result = app.send_task(TASK_NAME, args=[envelope]).get(timeout=120)
                outcomes[name] = result["outcome"]
            # one more scrape may land before the last task's counters: poll briefly
            deadline = time.monotonic() + 10
            after = scrape(port)
            while get(after, "umiq_tasks_total", department="finance", mode="auto",
                      outcome="awaiting_approval") < 1 and time.monotonic() < deadline:  # fmt: skip
                time.sleep(0.5)
                after = scrape(port)
            log_text = worker.log_text()
    finally:
        app.close()

    assert outcomes["approval"] == "awaiting_approval", (outcomes, log_text[-3000:])
    assert outcomes["answered"] == "answered", outcomes

    def moved(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    finance = {"department": "finance", "mode": "auto"}
    assert moved("umiq_tasks_received_total", department="finance") == 4
    assert moved("umiq_tasks_total", **finance, outcome="answered") >= 1
    assert moved("umiq_tasks_total", **finance, outcome="awaiting_approval") == 1
    assert moved("umiq_approvals_requested_total", department="finance") == 1
    assert get(after, "umiq_approvals_waiting", department="finance") == 1
    assert get(before, "umiq_approvals_waiting", department="finance") == 0
    assert moved("umiq_policy_refusals_total", department="finance", policy="access") == 1
    assert moved("umiq_connector_errors_total", tool="get_invoice") == 1
    assert moved("umiq_connector_calls_total", tool="get_invoice", outcome="ok") == 1
    for role in ("planner", "caller", "summarizer"):
        assert moved("umiq_step_duration_seconds_count", role=role) >= 1, role
    assert moved("umiq_generation_batch_size_count") >= 8
    assert get(after, "umiq_tasks_running") == 0
    # the worker's own queue exists on the broker, with the worker consuming it
    assert get(after, "umiq_queue_consumers", queue=queue) == 1
    assert get(after, "umiq_queue_messages", queue=queue) == 0

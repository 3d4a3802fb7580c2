"""A long episode keeps the worker's AMQP connection: heartbeats flow while it runs.

RabbitMQ drops a peer that misses two heartbeat intervals. A worker whose consumer
thread is busy with the episode (Celery's solo pool) answers none, so an episode longer
than that loses the connection, its late ack, and the message comes back to run again
(celery/celery#3430). ``umiq worker`` runs episodes in the threads pool; this test runs
the real worker on the real RabbitMQ and Postgres with a one-second heartbeat and a
scripted role model as slow as a CPU model (3 s a generation, ~12 s an episode).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from tests.support.cli import steps_of, umiq
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEARTBEAT_S = 1
DELAY_S = 3
SCRIPT = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}]


def test_an_episode_longer_than_the_heartbeat_timeout_keeps_its_connection(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> None:
    queue, dead = queue_names
    env = dict(os.environ)
    env.update({
        "UMIQ_DATA_DIR": str(tmp_path / "data"),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_QUEUE": queue,
        "UMIQ_DEAD_LETTER_QUEUE": dead,
        "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
        "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
        "UMIQ_TEST_GENERATION_DELAY": str(DELAY_S),
        "UMIQ_BROKER_HEARTBEAT": str(HEARTBEAT_S),
        "UMIQ_LOG_FORMAT": "json",
    })  # fmt: skip
    done = umiq(env, "db", "upgrade")
    assert done.returncode == 0, done.stderr

    app = create_app(Settings(data_dir=tmp_path / "client", broker_url=amqp_url,
                              database_url=postgres_url, queue=queue,
                              dead_letter_queue=dead))  # fmt: skip
    try:
        with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180) as worker:
            envelope = {
                "task_id": "heartbeat-1",
                "department": "finance",
                "query": "What is the status of invoice INV-1001?",
                "requested_by": "heartbeat-test",
                "context": {"script": SCRIPT},
            }
            started = time.monotonic()
            result = app.send_task(TASK_NAME, args=[envelope]).get(timeout=240)
            took = time.monotonic() - started
            # Let a lost connection show itself: a redelivery would start the episode again.
            time.sleep(3 * HEARTBEAT_S + DELAY_S)
            alive = worker.alive
            log_text = worker.log_text()
    finally:
        app.close()

    assert result["outcome"] == "answered", result
    # The episode outlasted RabbitMQ's limit for a silent peer many times over.
    assert took > 4 * 2 * HEARTBEAT_S
    assert alive, log_text
    assert "Connection to broker lost" not in log_text
    assert "ConnectionResetError" not in log_text and "missed heartbeats" not in log_text
    # The episode ran once: one planner start, one outcome, one call reached the ERP.
    kinds = [s["kind"] for s in steps_of(postgres_url, "heartbeat-1")]
    assert kinds.count("outcome") == 1, kinds
    assert kinds[0] == "planner" and kinds.count("caller") == 1, kinds
    # Its late ack reached the broker: nothing is left on the queue.
    with Connection(amqp_url) as conn:
        _, messages, _ = conn.channel().queue_declare(queue, passive=True)
    assert messages == 0, f"{queue} still holds {messages} message(s)"

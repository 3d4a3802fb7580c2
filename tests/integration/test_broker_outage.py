"""RabbitMQ goes away for 30 s under a run of tasks and comes back: nothing lost or run twice.

The worker reaches RabbitMQ through a TCP proxy (tests/support/tcpproxy.py) that the test
cuts: every connection dropped, new ones refused. The real RabbitMQ server is never
stopped (other tests use it); the producer publishes to it directly, so tasks keep
arriving during the outage. The running episodes lose their broker connection (their
messages go back to the queue while they finish), the worker reconnects by itself, and
each task ends once with each write made once in the ERP.

``UMIQ_OUTAGE_TASKS`` (default 100) sets the number of tasks.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support.cli import bare_env, umiq
from tests.support.tcpproxy import TcpProxy
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASKS = int(os.environ.get("UMIQ_OUTAGE_TASKS") or 100)
OUTAGE_S = 30


def counts(url: str, task_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per task: its outcome steps, tool calls and ``resume`` steps."""
    engine = sa.create_engine(url)
    query = sa.text(
        "SELECT s.task_id, "
        "count(*) FILTER (WHERE s.kind = 'outcome') AS outcomes, "
        "count(*) FILTER (WHERE s.details::jsonb ->> 'policy' = 'resume') AS resumes, "
        "(SELECT count(*) FROM tool_call c WHERE c.task_id = s.task_id) AS calls "
        "FROM step s WHERE s.task_id = ANY(:ids) GROUP BY s.task_id"
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(query, {"ids": task_ids})
            return {r.task_id: dict(r._mapping) for r in rows}
    finally:
        engine.dispose()


def envelope(task_id: str, invoice_id: str) -> dict[str, Any]:
    credit = {"invoice_id": invoice_id, "amount": 1.0, "reason": f"Outage test, task {task_id}."}
    return {
        "task_id": task_id,
        "department": "finance",
        "query": f"Record a credit note of 1.00 on invoice {invoice_id}.",
        "requested_by": "outage-test",
        "context": {"script": [
            {"tool": "create_credit_note", "arguments": credit},
            {"tool": "get_invoice", "arguments": {"invoice_id": invoice_id}},
        ]},
    }  # fmt: skip


def test_the_worker_rides_out_a_broker_outage(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> None:
    """RabbitMQ cut for 30 s under a run of tasks: each ends once, each credit note is
    made once, nothing is dead-lettered and the same worker serves on by itself."""
    queue, dead = queue_names
    assert "127.0.0.1:5672/" in amqp_url, amqp_url
    invoices = [i["id"] for i in httpx.get(f"{erp.url}/invoices").json()]
    with TcpProxy(5672) as proxy:
        env = bare_env()
        env.update({
            "UMIQ_DATA_DIR": str(tmp_path / "data"),
            "UMIQ_BROKER_URL": amqp_url.replace("127.0.0.1:5672/", f"127.0.0.1:{proxy.port}/"),
            "UMIQ_DATABASE_URL": postgres_url,
            "UMIQ_QUEUE": queue,
            "UMIQ_DEAD_LETTER_QUEUE": dead,
            "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
            "UMIQ_DEPARTMENTS": json.dumps({"finance": {
                "mode": "auto", "tools": ["erp:*"], "may_write": True, "approvals": []}}),
            "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
            "UMIQ_TEST_GENERATION_DELAY": "0.1",
            "UMIQ_LOG_FORMAT": "json",
        })  # fmt: skip
        assert umiq(env, "db", "upgrade").returncode == 0
        client = create_app(Settings(data_dir=tmp_path / "client", broker_url=amqp_url,
                                     database_url=postgres_url, queue=queue,
                                     dead_letter_queue=dead))  # fmt: skip
        tag = uuid.uuid4().hex[:6]
        ids = [f"mq-{tag}-{n:03d}" for n in range(TASKS)]
        name = f"outage-{tag}@%h"
        args = ("--loglevel", "INFO", "--hostname", name, "--concurrency", "2")
        try:
            with WorkerProcess(env, tmp_path / "worker.log", args, ready_timeout=180) as worker:
                pid = worker.process.pid if worker.process else None
                for n, task_id in enumerate(ids[: TASKS // 2]):
                    client.send_task(TASK_NAME, args=[envelope(task_id, invoices[n % 8])])
                deadline = time.monotonic() + 300
                while sum(c["outcomes"] for c in counts(postgres_url, ids).values()) < 3:
                    assert time.monotonic() < deadline, "no task ended before the outage"
                    time.sleep(0.2)
                # cut while episodes run: some have steps and no outcome yet
                while not any(c["outcomes"] == 0 for c in counts(postgres_url, ids).values()):
                    assert time.monotonic() < deadline, "no task ran when the outage was due"
                    time.sleep(0.05)
                proxy.cut()
                cut_at = time.monotonic()
                # the producer still reaches RabbitMQ: the rest arrive during the outage
                for n, task_id in enumerate(ids[TASKS // 2 :], start=TASKS // 2):
                    client.send_task(TASK_NAME, args=[envelope(task_id, invoices[n % 8])])
                during = sum(c["outcomes"] for c in counts(postgres_url, ids).values())
                time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
                at_restore = sum(c["outcomes"] for c in counts(postgres_url, ids).values())
                proxy.restore()
                deadline = time.monotonic() + 120 + 3 * TASKS
                while True:
                    ended = counts(postgres_url, ids)
                    if len(ended) == TASKS and all(c["outcomes"] for c in ended.values()):
                        break
                    assert time.monotonic() < deadline, (
                        f"{sum(bool(c['outcomes']) for c in ended.values())} of {TASKS} ended"
                    )
                    time.sleep(1)
                after = client.send_task(TASK_NAME, args=[envelope(f"after-{tag}", invoices[0])])
                served_after = after.get(timeout=120)
                alive = worker.alive
                same = worker.process is not None and worker.process.pid == pid
                log_text = worker.log_text()
            ended = counts(postgres_url, ids)
        finally:
            client.close()

    print(
        f"\nbroker outage: {TASKS} tasks, {OUTAGE_S} s cut, {during} ended at the cut, "
        f"{at_restore} at the restore; resumed by replay: "
        f"{sum(bool(c['resumes']) for c in ended.values())}; redeliveries of a finished task: "
        f"{log_text.count('task.already_finished')}"
    )
    assert alive and same, log_text[-3000:]
    # the outage did reach the worker: it lost its broker connection and got it back
    assert "Connection to broker lost" in log_text or "consumer: Cannot connect" in log_text
    # nothing ran while the broker was away beyond what was in flight at the cut
    assert at_restore - during <= 2, (during, at_restore)
    assert served_after["outcome"] == "answered", served_after
    for task_id in ids:
        assert ended[task_id]["outcomes"] == 1, (task_id, ended[task_id])
        assert ended[task_id]["calls"] == 2, (task_id, ended[task_id])
    credits = httpx.get(f"{erp.url}/credit-notes").json()
    for task_id in ids:
        mine = [c for c in credits if c["reason"] == f"Outage test, task {task_id}."]
        assert len(mine) == 1, (task_id, mine)
    letters = umiq(dict(env, UMIQ_BROKER_URL=amqp_url), "dlq", "list", "--json")
    assert letters.returncode == 0, letters.stderr
    assert letters.stdout.strip() == "", letters.stdout

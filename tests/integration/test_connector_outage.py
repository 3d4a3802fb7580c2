"""A dead back-office system: retries, the circuit breaker and the task retried, for real.

The Acme ERP runs on loopback and is stopped and started again on the same port; the
worker is the real ``umiq worker`` on RabbitMQ and Postgres.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import (
    CircuitBreaker,
    CircuitOpen,
    ConnectorUnavailable,
    HttpConnector,
    Resilient,
    ToolCall,
)
from tests.support.cli import bare_env, steps_of, umiq
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READ = ToolCall("get_invoice", {"invoice_id": "INV-1001"})


def restart(erp: Any, tmp_path: Path) -> Any:
    """The ERP served again from its database, on the port it had."""
    from examples.acme.serve import start_erp

    return start_erp(tmp_path / "acme", port=erp.port)


def details(step: dict[str, Any]) -> dict[str, Any]:
    value = step["details"]
    return json.loads(value) if isinstance(value, str) else value


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_stopped_erp_opens_the_circuit_and_a_restarted_one_closes_it(
    erp: Any, tmp_path: Path
) -> None:
    """Stopped: calls are retried, then fail fast naming the ERP without a request;
    served again: after the reset time one call goes through and closes the circuit."""
    sent: list[str] = []
    client = httpx.Client(timeout=2, event_hooks={"request": [lambda r: sent.append(r.url.path)]})
    inner = HttpConnector.from_url("erp", erp.url, client=client)
    breaker = CircuitBreaker("erp", failures=4, reset_after=1.0)
    connector = Resilient(inner, attempts=2, backoff=0.05, breaker=breaker)
    try:
        assert connector.invoke(READ, "k-1").ok
        erp.stop()
        for _ in range(2):  # two calls of two tries each: four failures in a row
            with pytest.raises(ConnectorUnavailable, match="cannot reach"):
                connector.invoke(READ, "k-2")
        assert sent.count("/invoices/INV-1001") == 5
        with pytest.raises(CircuitOpen, match="erp: circuit open after 4 consecutive failures"):
            connector.invoke(READ, "k-2")
        assert sent.count("/invoices/INV-1001") == 5  # failed fast: no request
        again = restart(erp, tmp_path)
        try:
            time.sleep(1.1)
            assert connector.invoke(READ, "k-3").ok
            assert breaker.state == "closed"
        finally:
            again.stop()
    finally:
        client.close()


def test_a_task_meeting_a_dead_erp_is_retried_and_finishes_once_it_is_back(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> None:
    """The outage and the open circuit are audited, the model never reads them, Celery
    retries the task and, with the ERP back, it resumes and ends answered."""
    queue, dead = queue_names
    env = bare_env()
    env.update({
        "UMIQ_DATA_DIR": str(tmp_path / "data"),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_QUEUE": queue,
        "UMIQ_DEAD_LETTER_QUEUE": dead,
        "UMIQ_CONNECTORS": json.dumps({"erp": {
            "kind": "http", "base_url": erp.url, "timeout": 2,
            "retry_attempts": 2, "breaker_failures": 2, "breaker_reset_s": 2,
        }}),
        "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
        "UMIQ_TEST_PROMPT_LOG": str(tmp_path / "prompts.jsonl"),
        "UMIQ_LOG_FORMAT": "json",
    })  # fmt: skip
    assert umiq(env, "db", "upgrade").returncode == 0
    client = create_app(Settings(data_dir=tmp_path / "client", broker_url=amqp_url,
                                 database_url=postgres_url, queue=queue,
                                 dead_letter_queue=dead))  # fmt: skip

    def task(task_id: str) -> dict[str, Any]:
        script = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}]
        return {"task_id": task_id, "department": "finance", "requested_by": "outage-test",
                "query": "What is the status of invoice INV-1001?",
                "context": {"script": script}}  # fmt: skip

    url, task_id = postgres_url, f"outage-{uuid.uuid4().hex[:6]}"
    served = erp
    try:
        with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180) as worker:
            warm = client.send_task(TASK_NAME, args=[task(f"warm-{task_id}")]).get(timeout=120)
            assert warm["outcome"] == "answered", warm  # the worker knows the ERP's tools
            erp.stop()
            pending = client.send_task(TASK_NAME, args=[task(task_id)])

            def circuit_open() -> bool:
                return any(
                    "circuit open" in " ".join(details(s).get("reasons") or [])
                    for s in steps_of(url, task_id)
                )

            wait_for("the open circuit on the chain", circuit_open, timeout=60)
            served = restart(erp, tmp_path)
            result = pending.get(timeout=120)
            log_text = worker.log_text()
    finally:
        served.stop()
        client.close()

    assert result["outcome"] == "answered", result
    steps = steps_of(url, task_id)
    outages = [details(s) for s in steps if details(s).get("policy") == "connector"]
    assert len(outages) >= 2 and all(o["allowed"] is False for o in outages)
    assert any("cannot reach" in o["reasons"][0] for o in outages)
    assert any("erp: circuit open" in o["reasons"][0] for o in outages)
    assert "task.retry" in log_text
    resumes = [s for s in steps if details(s).get("policy") == "resume"]
    assert len(resumes) >= 2  # one per retry
    calls = [s for s in steps if s["kind"] == "caller"]
    assert len(calls) == 1  # the model wrote its call once; the retries made it
    prompts = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    mine = [p["prompt"] for p in prompts if p["task_id"] == task_id]
    assert mine and not any("cannot reach" in p or "circuit" in p for p in mine)

"""Warm shutdown on the real RabbitMQ, Postgres and Acme ERP.

A real ``umiq worker`` (scripted role model, slow generations) gets SIGTERM while its
episodes run. With the default ``UMIQ_SHUTDOWN_FINISH_S=0`` each episode stops before its
next model step, records where, and its task goes back to the queue; the worker exits 0
and the next worker resumes the tasks by replay: no task lost, none run twice, each
call made once, no plan asked twice, the chain verifies. With a finish window longer
than the episodes, they finish before the worker exits.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_worker_resume import details, envelope, tool_calls, wait_for

# the worker environment fixture (RabbitMQ, Postgres, the ERP, the scripted model)
from tests.integration.test_worker_resume import env as env
from tests.support.cli import celery_client, steps_of, umiq
from worker.celery_app import TASK_NAME
from worker.process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def open_invoices(erp: Any, count: int) -> list[dict[str, Any]]:
    invoices = [
        i
        for i in httpx.get(f"{erp.url}/invoices", params={"status": "open"}).json()
        if not httpx.get(f"{erp.url}/payments", params={"invoice_id": i["id"]}).json()
    ]
    assert len(invoices) >= count, invoices
    return invoices[:count]


def terminate(worker: WorkerProcess, timeout: float = 120) -> int:
    """SIGTERM (Celery's warm shutdown) and the worker's exit status."""
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    return worker.process.wait(timeout=timeout)


def queue_depth(env: dict[str, str], name: str) -> int:
    """Messages ready on queue ``name`` (0 when nothing declared it: nothing was sent)."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        try:
            return int(conn.default_channel.queue_declare(name, passive=True).message_count)
        except NotFound:
            return 0


def ended(url: str, task_id: str) -> bool:
    return any(s["kind"] == "outcome" for s in steps_of(url, task_id))


def test_sigterm_mid_episode_checkpoints_and_the_next_worker_resumes(
    env: dict[str, str], erp: Any, tmp_path: Path
) -> None:
    """SIGTERM with two episodes running: each stops at a step boundary with a shutdown
    step, the worker exits 0 leaving both messages on the queue, and a new worker ends
    both answered by replay, each call and each plan once, the chain verified."""
    url = env["UMIQ_DATABASE_URL"]
    env = {**env, "UMIQ_TEST_GENERATION_DELAY": "1.5"}
    client = celery_client(env, tmp_path)
    log_path = tmp_path / "worker.log"
    invoices = open_invoices(erp, 2)
    # a node name of its own: other workers on this host must not share its control queue
    args = ("--loglevel", "INFO", "--concurrency", "2", "-n", f"warm-{uuid.uuid4().hex[:6]}@%h")
    tasks = [f"warm-{uuid.uuid4().hex[:6]}" for _ in invoices]
    try:
        worker = WorkerProcess(env, log_path, args, ready_timeout=180)
        worker.start()
        results = [
            client.send_task(TASK_NAME, args=[envelope(t, inv)])
            for t, inv in zip(tasks, invoices, strict=True)
        ]
        for task_id in tasks:  # both episodes under way: a call made, more to come
            wait_for(
                f"{task_id} to make a call",
                lambda t=task_id: any(s["kind"] == "tool" for s in steps_of(url, t)),
            )
        code = terminate(worker)
        assert code == 0, worker.log_text()[-4000:]
        assert "task.sent_back" in worker.log_text()
        for task_id in tasks:
            steps = steps_of(url, task_id)
            assert not ended(url, task_id), steps
            last = details(steps[-1])
            assert last["policy"] == "shutdown" and last["allowed"] is True, steps[-1]
        # nothing lost: both tasks wait on the queue, none in the dead-letter queue
        assert queue_depth(env, env["UMIQ_QUEUE"]) == 2
        assert queue_depth(env, env["UMIQ_DEAD_LETTER_QUEUE"]) == 0

        with WorkerProcess(env, log_path, args, ready_timeout=180):
            outcomes = [r.get(timeout=240) for r in results]
    finally:
        client.close()

    assert [o["outcome"] for o in outcomes] == ["answered", "answered"], outcomes
    prompts_log = [json.loads(x) for x in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    for task_id, target in zip(tasks, invoices, strict=True):
        steps = steps_of(url, task_id)
        kinds = [s["kind"] for s in steps]
        assert kinds.count("outcome") == 1, kinds  # ran to its end once
        assert [c["tool"] for c in tool_calls(url, task_id)] == [
            "get_invoice",
            "schedule_payment",
            "get_invoice",
        ]
        paid = httpx.get(f"{erp.url}/payments", params={"invoice_id": target["id"]}).json()
        assert len(paid) == 1, paid
        [stop] = [s for s in steps if details(s).get("policy") == "shutdown"]
        [resume] = [s for s in steps if details(s).get("policy") == "resume"]
        assert steps.index(resume) == steps.index(stop) + 1
        assert details(resume)["replayed"] == steps.index(resume)
        # stopped before a model step: no generation was thrown away, none repeated
        asked = [p for p in prompts_log if p["task_id"] == task_id and p["role"] == "planner"]
        assert len(asked) == kinds.count("planner"), (len(asked), kinds)
    assert queue_depth(env, env["UMIQ_DEAD_LETTER_QUEUE"]) == 0
    verified = umiq(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_sigterm_with_a_finish_window_lets_the_episode_finish(
    env: dict[str, str], erp: Any, tmp_path: Path
) -> None:
    """With UMIQ_SHUTDOWN_FINISH_S longer than the episode, SIGTERM mid-episode lets it
    end answered (no shutdown step), then the worker exits 0 with an empty queue."""
    url = env["UMIQ_DATABASE_URL"]
    env = {**env, "UMIQ_TEST_GENERATION_DELAY": "1", "UMIQ_SHUTDOWN_FINISH_S": "600"}
    [invoice] = open_invoices(erp, 1)
    task_id = f"finish-{uuid.uuid4().hex[:6]}"
    client = celery_client(env, tmp_path)
    try:
        worker = WorkerProcess(
            env,
            tmp_path / "worker.log",
            ("--loglevel", "INFO", "-n", f"finish-{uuid.uuid4().hex[:6]}@%h"),
            ready_timeout=180,
        )
        worker.start()
        client.send_task(TASK_NAME, args=[envelope(task_id, invoice)])
        wait_for("a call", lambda: any(s["kind"] == "tool" for s in steps_of(url, task_id)))
        code = terminate(worker)
    finally:
        client.close()
    assert code == 0, worker.log_text()[-4000:]
    steps = steps_of(url, task_id)
    assert details(steps[-1])["outcome"] == "answered", steps[-1]
    assert not [s for s in steps if details(s).get("policy") in ("shutdown", "resume")]
    assert queue_depth(env, env["UMIQ_QUEUE"]) == 0
    verified = umiq(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

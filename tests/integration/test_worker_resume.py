"""Resume by replay on the real RabbitMQ, Postgres and Acme ERP.

A real ``umiq worker`` (scripted role model, one second per generation) is killed with
SIGKILL in the middle of episodes; the task comes back from the broker and the next
worker goes on from the audit steps: nothing recorded is generated or called again, the
write is made once, the observations are the recorded text and the resume is on the
chain. A task whose committed call is not the call it replays stops for a person.
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

from tests.support.cli import bare_env, steps_of, umiq
from worker.audit import AuditLog
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def invoice(erp: Any) -> dict[str, Any]:
    """An open seeded invoice with no payment yet."""
    for candidate in httpx.get(f"{erp.url}/invoices", params={"status": "open"}).json():
        if httpx.get(f"{erp.url}/payments", params={"invoice_id": candidate["id"]}).json() == []:
            return dict(candidate)
    raise AssertionError("the ERP seed has no open invoice without a payment")


@pytest.fixture
def env(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> dict[str, str]:
    queue, dead = queue_names
    environment = bare_env()
    environment.update(
        {
            "UMIQ_DATA_DIR": str(tmp_path / "data"),
            "UMIQ_BROKER_URL": amqp_url,
            "UMIQ_DATABASE_URL": postgres_url,
            "UMIQ_QUEUE": queue,
            "UMIQ_DEAD_LETTER_QUEUE": dead,
            "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
            "UMIQ_DEPARTMENTS": json.dumps(
                {
                    "finance": {
                        "mode": "auto",
                        "tools": ["erp:*"],
                        "may_write": True,
                        "approvals": [],
                    }
                }
            ),
            "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
            "UMIQ_TEST_GENERATION_DELAY": "1",
            "UMIQ_TEST_PROMPT_LOG": str(tmp_path / "prompts.jsonl"),
            "UMIQ_MAX_STEPS": "6",
            "UMIQ_LOG_FORMAT": "json",
        }
    )
    done = umiq(environment, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    return environment


def envelope(task_id: str, invoice: dict[str, Any]) -> dict[str, Any]:
    read = {"tool": "get_invoice", "arguments": {"invoice_id": invoice["id"]}}
    pay = {
        "tool": "schedule_payment",
        "arguments": {
            "invoice_id": invoice["id"],
            "amount": invoice["amount"],
            "date": invoice["issue_date"],
        },
    }
    return {
        "task_id": task_id,
        "department": "finance",
        "query": f"Schedule the payment of invoice {invoice['id']}.",
        "requested_by": "resume-test",
        "context": {"script": [read, pay, read]},
    }


def tool_calls(url: str, task_id: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT tool, idempotency_key FROM tool_call WHERE task_id = :t ORDER BY seq"
                ),
                {"t": task_id},
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def details(step: dict[str, Any]) -> dict[str, Any]:
    value = step["details"]
    return json.loads(value) if isinstance(value, str) else value


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


#: Where each task's worker is killed: when its steps (or tool calls) first show this.
KILL_POINTS: dict[str, Callable[[list[dict[str, Any]], list[dict[str, Any]]], bool]] = {
    "after the first observation": lambda steps, _: any(s["kind"] == "tool" for s in steps),
    "after the payment was made": lambda _, calls: any(
        c["tool"] == "schedule_payment" for c in calls
    ),
    "after the third plan": lambda steps, _: sum(s["kind"] == "planner" for s in steps) >= 3,
}


def test_tasks_killed_mid_episode_resume_by_replay(
    env: dict[str, str], erp: Any, tmp_path: Path
) -> None:
    """SIGKILL mid-episode: the task ends answered, the payment is made once, the model is
    not asked again for a recorded step, the replayed observations are the recorded
    text, the resume is audited and the chain verifies."""
    url = env["UMIQ_DATABASE_URL"]
    client = create_app(
        Settings(
            data_dir=tmp_path / "client",
            broker_url=env["UMIQ_BROKER_URL"],
            database_url=url,
            queue=env["UMIQ_QUEUE"],
            dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"],
        )
    )
    log_path = tmp_path / "worker.log"
    tasks: dict[str, str] = {}
    invoices = [
        i
        for i in httpx.get(f"{erp.url}/invoices", params={"status": "open"}).json()
        if not httpx.get(f"{erp.url}/payments", params={"invoice_id": i["id"]}).json()
    ]
    assert len(invoices) >= len(KILL_POINTS), invoices

    def ended(task_id: str) -> bool:
        return any(s["kind"] == "outcome" for s in steps_of(url, task_id))

    worker = WorkerProcess(env, log_path, ready_timeout=180)
    worker.start()
    try:
        for (point, reached), target in zip(KILL_POINTS.items(), invoices, strict=False):
            task_id = tasks[point] = f"kill-{uuid.uuid4().hex[:6]}"
            client.send_task(TASK_NAME, args=[envelope(task_id, target)])
            wait_for(point, lambda t=task_id, r=reached: r(steps_of(url, t), tool_calls(url, t)))
            worker.stop(kill=True)  # SIGKILL: the message is unacked, RabbitMQ requeues it
            assert not ended(task_id), point
            worker = WorkerProcess(env, log_path, ready_timeout=180)
            worker.start()  # the next worker gets the task again and resumes it
            wait_for(f"{task_id} to end", lambda t=task_id: ended(t), timeout=180)
    finally:
        worker.stop()
        client.close()

    prompts = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    for (point, _), target in zip(KILL_POINTS.items(), invoices, strict=False):
        task_id = tasks[point]
        steps = steps_of(url, task_id)
        kinds = [s["kind"] for s in steps]
        assert kinds[-1] == "outcome" and details(steps[-1])["outcome"] == "answered", (
            point,
            steps[-1],
        )
        # the write went out once, each call once, in the script's order
        calls = tool_calls(url, task_id)
        assert [c["tool"] for c in calls] == ["get_invoice", "schedule_payment", "get_invoice"]
        paid = httpx.get(f"{erp.url}/payments", params={"invoice_id": target["id"]}).json()
        assert len(paid) == 1, (point, paid)
        # the resume is on the chain, after the steps it replayed
        [resume] = [s for s in steps if details(s).get("policy") == "resume"]
        before = steps[: steps.index(resume)]
        assert details(resume)["replayed"] == len(before), (point, resume)
        # the model was asked once per recorded plan (the one in flight at the kill aside)
        asked = [p["prompt"] for p in prompts if p["task_id"] == task_id and p["role"] == "planner"]
        assert len(set(asked)) == kinds.count("planner"), (point, len(asked))
        assert len(asked) <= kinds.count("planner") + 1, (point, len(asked))
        # every observation the summarizer read is the recorded text, byte for byte
        [summary] = [
            p["prompt"] for p in prompts if p["task_id"] == task_id and p["role"] == "summarizer"
        ]
        observations = [s["output"] for s in steps if s["kind"] == "tool"]
        assert len(observations) == 3
        for text in observations:
            assert f"observation: {text}" in summary, (point, text)
    verified = umiq(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_replayed_call_unlike_its_commit_stops_the_task_for_a_person(
    env: dict[str, str], erp: Any, invoice: dict[str, Any], tmp_path: Path
) -> None:
    """A get_invoice replayed under the key of a committed credit note is not handed that
    response and makes no call: the task ends held, the reason naming both calls."""
    url = env["UMIQ_DATABASE_URL"]
    task_id = f"mismatch-{uuid.uuid4().hex[:6]}"
    sent = envelope(task_id, invoice)
    audit = AuditLog.from_url(url)
    try:  # a run cut off after its caller step, whose key holds another tool's call
        audit.append_task(
            task_id=task_id,
            department="finance",
            query=sent["query"],
            requested_by="resume-test",
            context=sent["context"],
        )
        audit.append_step(
            task_id=task_id,
            index=1,
            kind="planner",
            output="Read it.\n Next: caller.",
            details={"next": "caller"},
        )
        read = {"invoice_id": invoice["id"]}
        audit.append_step(
            task_id=task_id,
            index=2,
            kind="caller",
            output=f"Action: get_invoice\nAction Input: {json.dumps(read)}",
            details={"tool": "get_invoice", "arguments": read},
        )
        audit.append_tool_call(
            task_id=task_id,
            step=2,
            idempotency_key=f"{task_id}:2",
            tool="create_credit_note",
            effect="write",
            request={"invoice_id": invoice["id"], "amount": 10.0},
            response={"id": "CN-9999"},
            ok=True,
        )
    finally:
        audit.close()
    client = create_app(
        Settings(
            data_dir=tmp_path / "client",
            broker_url=env["UMIQ_BROKER_URL"],
            database_url=url,
            queue=env["UMIQ_QUEUE"],
            dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"],
        )
    )
    try:
        with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180):
            result = client.send_task(TASK_NAME, args=[sent]).get(timeout=180)
    finally:
        client.close()

    assert result["outcome"] == "held" and result["answer"] == "", result
    assert "get_invoice" in result["reason"] and "create_credit_note" in result["reason"]
    steps = steps_of(url, task_id)
    [denied] = [s for s in steps if details(s).get("policy") == "replay"]
    assert details(denied)["allowed"] is False and "CN-9999" not in result["reason"]
    assert [c["tool"] for c in tool_calls(url, task_id)] == ["create_credit_note"]
    listed = umiq(env, "held", "list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert task_id in listed.stdout

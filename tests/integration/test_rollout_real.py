"""Rollout modes on the real Acme systems, RabbitMQ, Postgres and a real worker with the
scripted role model: each mode changed with `umiq rollout` while the worker runs and
taken on the next task; no write reaches a system in off or shadow (the ERP's and HR's
records and the mail server's outbox unchanged), the dry run records the exact write,
review holds every write (the next one again after an approval), auto writes; a kill
switch pulled while an episode runs stops its next write."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from tests.support.cli import audit_verify, bare_env, steps_of, umiq
from worker.audit import AuditLog
from worker.audit.keyring import load_keyring
from worker.audit.sealing import Sealer
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.rollout import store_for
from worker.rollout.human import human_queue
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUERY = "Dispute invoice {inv}: the amount is wrong. Then mail ap.lead@acme-corp.nl about it."


def script(invoice: str) -> list[dict[str, Any]]:
    return [
        {"tool": "get_invoice", "arguments": {"invoice_id": invoice}},
        {"tool": "dispute_invoice", "arguments": {"invoice_id": invoice, "reason": "wrong amount"}},
        {"tool": "send_email", "arguments": {"to": "$EMAIL", "subject": f"{invoice} disputed",
                                             "body": f"We disputed {invoice}."}},
    ]  # fmt: skip


HR_QUERY = "Approve leave request LR-0001."
HR_SCRIPT = [
    {"tool": "get_leave_request", "arguments": {"request_id": "LR-0001"}},
    {"tool": "approve_leave_request", "arguments": {"request_id": "LR-0001", "note": "enjoy"}},
]


def hr_state(acme: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(acme.data_dir / "hr.sqlite3")) as conn:
        return [
            *conn.execute("SELECT id, status, decided_by FROM leave_request ORDER BY id"),
            *conn.execute("SELECT employee_id, year, taken_days FROM leave_balance ORDER BY 1, 2"),
        ]


def erp_state(acme: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(acme.data_dir / "erp.sqlite3")) as conn:
        return [
            *conn.execute("SELECT id, status FROM invoice ORDER BY id"),
            *conn.execute("SELECT count(*) FROM payment"),
        ]


def test_each_mode_on_the_real_systems(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str]
) -> None:
    from examples.acme.serve import start_acme

    queue, dead = queue_names
    humans = f"{queue}.human"
    env = bare_env()
    with start_acme(tmp_path / "acme") as acme:
        env.update({
            "UMIQ_DATA_DIR": str(tmp_path / "data"),
            "UMIQ_BROKER_URL": amqp_url,
            "UMIQ_DATABASE_URL": postgres_url,
            "UMIQ_QUEUE": queue,
            "UMIQ_DEAD_LETTER_QUEUE": dead,
            "UMIQ_CONNECTORS": json.dumps(acme.connectors_config()),
            "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
            "UMIQ_TEST_GENERATION_DELAY": "0.5",
            "UMIQ_LOG_FORMAT": "json",
        })  # fmt: skip
        assert umiq(env, "db", "upgrade").returncode == 0

        def rollout(*args: str) -> None:
            done = umiq(env, "rollout", *args)
            assert done.returncode == 0, done.stdout + done.stderr

        rollout("set", "finance", f"human_queue={humans}", "--by", "ops", "--reason", "test")
        rollout("set", "hr", f"human_queue={humans}", "--by", "ops", "--reason", "test")
        client = Settings(
            data_dir=tmp_path / "client",
            broker_url=amqp_url,
            database_url=postgres_url,
            queue=queue,
            dead_letter_queue=dead,
        )
        app = create_app(client)
        # the worker's key ring (the embedded default under its data dir), to open writes
        keys = load_keyring(Settings(data_dir=tmp_path / "data", database_url=postgres_url))
        audit = AuditLog.from_url(postgres_url, sealer=Sealer(keys))

        def send(task_id: str, invoice: str) -> Any:
            envelope = {"task_id": task_id, "department": "finance",
                        "query": QUERY.format(inv=invoice), "requested_by": "it",
                        "context": {"script": script(invoice)}}  # fmt: skip
            return app.send_task(TASK_NAME, args=[envelope])

        def send_hr(task_id: str) -> Any:
            envelope = {"task_id": task_id, "department": "hr", "query": HR_QUERY,
                        "requested_by": "it", "context": {"script": HR_SCRIPT}}  # fmt: skip
            return app.send_task(TASK_NAME, args=[envelope])

        def outcomes(task_id: str) -> list[str]:
            steps = steps_of(postgres_url, task_id)  # details as stored: canonical JSON
            return [json.loads(s["details"])["outcome"] for s in steps if s["kind"] == "outcome"]

        def writes(task_id: str) -> list[Any]:
            return [c for c in audit.tool_calls(task_id) if c.effect == "write"]

        node = ("--loglevel", "INFO", "--hostname", f"rollout-{queue[-8:]}@%h")
        try:
            with WorkerProcess(env, tmp_path / "worker.log", node, ready_timeout=180) as worker:
                before_erp, before_mail = erp_state(acme), acme.messages()
                before_hr = hr_state(acme)

                # off: recorded, routed to people, no model and no call
                rollout("set", "finance", "mode=off", "--by", "ops")
                result = send("ro-off", "INV-1002").get(timeout=120)
                assert result["outcome"] == "not_automated", (result, worker.log_text()[-3000:])
                assert [s["kind"] for s in steps_of(postgres_url, "ro-off")] == ["outcome"]
                assert audit.tool_calls("ro-off") == []

                # shadow: reads real, both writes dry-run and recorded exactly, nothing sent
                rollout("set", "finance", "mode=shadow", "--by", "ops")
                result = send("ro-shadow", "INV-1002").get(timeout=120)
                assert result["outcome"] == "not_automated"
                calls = {c.tool: c for c in (audit.unseal(w) for w in writes("ro-shadow"))}
                erp_write = calls["dispute_invoice"].response["would_send"]
                assert erp_write["method"] == "POST"
                assert erp_write["url"] == f"{acme.erp.url}/invoices/INV-1002/dispute"
                assert erp_write["json"] == {"reason": "wrong amount"}
                key = calls["dispute_invoice"].idempotency_key
                assert erp_write["headers"] == {"idempotency-key": key}
                mail = calls["send_email"].response["would_send"]
                assert mail["to"] == "ap.lead@acme-corp.nl"
                assert mail["subject"] == "INV-1002 disputed"
                assert erp_state(acme) == before_erp and acme.messages() == before_mail

                # HR in off, then in shadow: its database unchanged, the SQL that would
                # have run recorded with its parameters and key
                from examples.acme.hr.queries import QUERIES

                rollout("set", "hr", "mode=off", "--by", "ops")
                assert send_hr("ro-hr-off").get(timeout=120)["outcome"] == "not_automated"
                assert audit.tool_calls("ro-hr-off") == []
                rollout("set", "hr", "mode=shadow", "--by", "ops")
                assert send_hr("ro-hr-shadow").get(timeout=120)["outcome"] == "not_automated"
                (hr_write,) = [audit.unseal(w) for w in writes("ro-hr-shadow")]
                would = hr_write.response["would_send"]
                (approve,) = [q for q in QUERIES if q.name == "approve_leave_request"]
                assert would["statements"] == list(approve.sql)
                assert {k: would["parameters"][k] for k in ("request_id", "note")} == (
                    HR_SCRIPT[1]["arguments"])  # fmt: skip
                assert would["idempotency_key"] == hr_write.idempotency_key
                assert hr_state(acme) == before_hr and ("LR-0001", "pending", None) in before_hr
                assert erp_state(acme) == before_erp and acme.messages() == before_mail

                # all four went to the human queue
                with Connection(amqp_url) as conn:
                    simple = conn.SimpleQueue(human_queue(humans))
                    got = [simple.get(timeout=10).payload for _ in range(4)]
                    simple.close()
                assert [(m["task_id"], m["rollout"]["mode"]) for m in got] == [
                    ("ro-off", "off"), ("ro-shadow", "shadow"),
                    ("ro-hr-off", "off"), ("ro-hr-shadow", "shadow")]  # fmt: skip

                # review: the first write waits
                rollout("set", "finance", "mode=review", "--by", "ops")
                result = send("ro-review", "INV-1002").get(timeout=120)
                assert result["outcome"] == "awaiting_approval"
                assert writes("ro-review") == []
                assert erp_state(acme) == before_erp and acme.messages() == before_mail
                # approved, the dispute is made and the mail after it waits in turn
                done = umiq(env, "approvals", "approve", "ro-review", "--by", "boss",
                            "--reason", "checked")  # fmt: skip
                assert done.returncode == 0, done.stdout + done.stderr
                deadline = time.monotonic() + 120
                while outcomes("ro-review") != ["awaiting_approval"] * 2:
                    assert time.monotonic() < deadline, worker.log_text()[-3000:]
                    time.sleep(0.2)
                assert [(w.tool, w.ok) for w in writes("ro-review")] == [("dispute_invoice", True)]
                assert ("INV-1002", "disputed") in erp_state(acme)
                assert acme.messages() == before_mail

                # auto: the writes are made
                rollout("set", "finance", "mode=auto", "--by", "ops")
                result = send("ro-auto", "INV-1003").get(timeout=120)
                assert result["outcome"] == "answered", result
                assert all(w.ok for w in writes("ro-auto")) and len(writes("ro-auto")) == 2
                assert ("INV-1003", "disputed") in erp_state(acme)
                assert len(acme.messages()) == len(before_mail) + 1

                # kill switch pulled while the episode reads: its next write is stopped
                pending = send("ro-kill", "INV-1004")
                deadline = time.monotonic() + 60
                while not any(s["kind"] == "tool" for s in steps_of(postgres_url, "ro-kill")):
                    assert time.monotonic() < deadline, worker.log_text()[-3000:]
                    time.sleep(0.1)
                # through the store, not the CLI: a new process takes longer than one step
                store_for(audit, client).set(
                    "finance", {"kill_switch": True}, by="carol", reason="incident 7"
                )
                pending.get(timeout=120)
                stopped = writes("ro-kill")
                assert stopped and not any(w.ok for w in stopped), stopped
                assert "stopped: the kill switch of 'finance' is on (set by carol" in (
                    stopped[0].error or ""
                )
                assert ("INV-1004", "open") in erp_state(acme)
        finally:
            app.close()
            audit.close()
        verify = audit_verify(env)
        assert verify.returncode == 0, verify.stdout + verify.stderr

"""Task arguments never reach the broker's headers or the worker's DEBUG log in plain text.

A real ``umiq worker`` at ``--loglevel DEBUG`` on RabbitMQ and Postgres runs tasks whose
request text holds personal data (an IBAN, a BSN, an e-mail, a phone number, a name no
record holds, so no detector can mask it in a log line): one sent by umiq's own Celery
app, one by a foreign producer that writes Celery's message by hand with the raw
``argsrepr``. The message headers as RabbitMQ holds them and the whole log are searched.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Producer

from tests.support.cli import umiq
from tests.support.leaks import search
from worker.process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Seeded personal data → what it is. The name is in no record: only redaction at the
#: source keeps it out (the log redactor cannot know it).
SEEDED = {
    "NL91ABNA0417164300": "IBAN",
    "111222333": "BSN",
    "wilhelmina.zwartkop@example.org": "e-mail",
    "+31 6 4829 1735": "phone",
    "Wilhelmina Zwartkop": "name",
    "Zwartkop": "surname",
}
QUERY = (
    "Check the record of Wilhelmina Zwartkop (BSN 111222333, phone +31 6 4829 1735, "
    "wilhelmina.zwartkop@example.org): is she paid into NL91ABNA0417164300?"
)


def envelope(task_id: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "department": "finance",
        "query": QUERY,
        "requested_by": "Wilhelmina Zwartkop",
        "context": {"script": [{"answer": "Nothing to change."}], "note": QUERY},
    }


@pytest.fixture
def env(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> dict[str, str]:
    queue, dead = queue_names
    environment = dict(os.environ)
    environment.update({
        "UMIQ_DATA_DIR": str(tmp_path / "data"),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_QUEUE": queue,
        "UMIQ_DEAD_LETTER_QUEUE": dead,
        "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
        "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
        "UMIQ_LOG_FORMAT": "json",
    })  # fmt: skip
    done = umiq(environment, "db", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    return environment


def _settings(env: dict[str, str], tmp_path: Path) -> Any:
    from worker.settings import Settings

    return Settings(
        data_dir=tmp_path / "client",
        broker_url=env["UMIQ_BROKER_URL"],
        database_url=env["UMIQ_DATABASE_URL"],
        queue=env["UMIQ_QUEUE"],
        dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"],
    )


def _peek_headers(settings: Any, count: int) -> list[dict[str, Any]]:
    """The headers of the first ``count`` messages on the work queue, left in place."""
    from worker.celery_app import task_queue

    with Connection(settings.resolved_broker_url) as conn:
        channel = conn.channel()
        queue = task_queue(settings)(channel)
        queue.declare()
        found = []
        deadline = time.monotonic() + 30
        while len(found) < count and time.monotonic() < deadline:
            message = queue.get(no_ack=False)
            if message is None:
                time.sleep(0.2)
                continue
            found.append(dict(message.headers))
        channel.close()  # unacked: back on the queue for the worker
    return found


def _publish_by_hand(settings: Any, task_id: str) -> None:
    """A producer without umiq's app: Celery's protocol 2 with the raw ``argsrepr``."""
    from worker.celery_app import TASK_NAME, task_queue

    args = [envelope(task_id)]
    with Connection(settings.resolved_broker_url) as conn:
        target = task_queue(settings)
        Producer(conn.channel()).publish(
            json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None,
                                   "chord": None}]),
            exchange=target.exchange,
            routing_key=target.routing_key,
            declare=[target],
            content_type="application/json",
            content_encoding="utf-8",
            headers={"lang": "py", "task": TASK_NAME, "id": str(uuid.uuid4()),
                     "argsrepr": repr(args), "kwargsrepr": "{}"},
            delivery_mode=2,
        )  # fmt: skip


def test_headers_and_debug_log_hold_no_task_arguments(env: dict[str, str], tmp_path: Path) -> None:
    """Neither the headers RabbitMQ keeps nor a DEBUG worker log show the request's data."""
    from worker.celery_app import TASK_NAME, create_app

    settings = _settings(env, tmp_path)
    app = create_app(settings)
    tag = uuid.uuid4().hex[:8]
    sent = app.send_task(TASK_NAME, args=[envelope(f"repr-{tag}-app")])
    headers = _peek_headers(settings, 1)
    assert headers and headers[0]["argsrepr"] == (
        f"(<envelope task_id=repr-{tag}-app department=finance>,)"
    )
    assert search(SEEDED, [("message headers", json.dumps(headers))]) == []

    _publish_by_hand(settings, f"repr-{tag}-hand")
    log_path = tmp_path / "worker.log"
    try:
        with WorkerProcess(env, log_path, ("--loglevel", "DEBUG"), ready_timeout=180):
            assert sent.get(timeout=120)["outcome"] == "answered"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if log_path.read_text(encoding="utf-8").count("task.finished") >= 2:
                    break
                time.sleep(0.5)
    finally:
        app.close()
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    assert log_text.count("task.finished") == 2, log_text[-3000:]
    # DEBUG was on: Celery's pool line about each task is there, without its arguments.
    assert log_text.count("(args:<redacted> kwargs:<redacted>)") == 2
    lines = [(f"worker log line {n}", line) for n, line in enumerate(log_text.splitlines(), 1)]
    assert [str(leak) for leak in search(SEEDED, lines)] == []

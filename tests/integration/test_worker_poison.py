"""Every message ends somewhere: poison messages on the real RabbitMQ and Postgres.

The real ``umiq worker`` (scripted role model) serves a fresh quorum queue. Messages
that break Celery's task protocol or umiq's tasks are published raw with kombu; each
must reach the dead-letter queue with its original body and headers (sealed) and a
reason, be audited, and leave the worker serving the good tasks around it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Producer

from tests.support.cli import steps_of, umiq, worker_env
from worker.audit.keyring import load_keyring
from worker.celery_app import TASK_NAME, create_app, dead_letter_queue, task_queue
from worker.letters import LETTER_TYPE, Original, open_letter
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}]


def envelope(task_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "department": "finance",
        "query": "What is the status of invoice INV-1001?",
        "requested_by": "poison-test",
        "context": {"script": SCRIPT},
        **changes,
    }


@pytest.fixture
def env(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> dict[str, str]:
    return worker_env(tmp_path / "data", amqp_url, postgres_url, queue_names, erp.url)


@pytest.fixture
def client(env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    app = create_app(Settings(data_dir=tmp_path / "client", broker_url=env["UMIQ_BROKER_URL"],
                              database_url=env["UMIQ_DATABASE_URL"], queue=env["UMIQ_QUEUE"],
                              dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"]))  # fmt: skip
    yield app
    app.close()


def celery_headers(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task": TASK_NAME,
        "id": str(uuid.uuid4()),
        "lang": "py",
        "retries": 0,
        "argsrepr": "",
        "kwargsrepr": "",
    }
    base.update(changes)
    return base


def good_body(task_id: str) -> list[Any]:
    return [[envelope(task_id)], {}, {"callbacks": None, "errbacks": None, "chain": None}]


Poison = tuple[str, bytes, dict[str, Any], str, str]


def poison_table(tag: str) -> list[Poison]:
    """(name, raw body, headers, content type, content encoding) of each poison message."""

    def body(value: Any) -> bytes:
        return json.dumps(value).encode()

    js = "application/json"

    ok = body(good_body(f"{tag}-never"))
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    no_id = celery_headers()
    del no_id["id"]
    # A body in another Unicode encoding: the dead letter keeps its exact bytes (with
    # the byte-order mark a decode and re-encode would drop, add or flip).
    text = json.dumps(good_body(f"{tag}-wide"), ensure_ascii=False).replace("?", "\u00e9?")
    wide = [
        ("UTF-16 big-endian with a BOM", "utf-16", b"\xfe\xff" + text.encode("utf-16-be")),
        ("UTF-16 little-endian with a BOM", "utf-16", b"\xff\xfe" + text.encode("utf-16-le")),
        ("UTF-16 without a BOM", "utf-16", text.encode("utf-16-le")),
        ("UTF-32 big-endian with a BOM", "utf-32", b"\x00\x00\xfe\xff" + text.encode("utf-32-be")),
        ("UTF-16 declared in capitals", "UTF-16", b"\xfe\xff" + text.encode("utf-16-be")),
        ("UTF-8 without a BOM, declared utf-8-sig", "utf-8-sig", text.encode("utf-8")),
    ]
    table = [(name, raw, headers, ctype, "utf-8") for name, raw, headers, ctype in [
        ("no id header", ok, no_id, js),
        ("id a dict", ok, celery_headers(id={"a": 1}), js),
        ("id an int", ok, celery_headers(id=42), js),
        ("task a list", ok, celery_headers(task=[TASK_NAME]), js),
        ("body null", b"null", celery_headers(), js),
        ("body a 2-item list", body([[envelope(f"{tag}-2")], {}]), celery_headers(), js),
        ("body an object", body({"args": [], "kwargs": {}}), celery_headers(), js),
        ("timelimit a string", ok, celery_headers(timelimit="10"), js),
        ("empty args", body([[], {}, {}]), celery_headers(), js),
        ("extra args", body([[envelope(f"{tag}-x"), 2], {}, {}]), celery_headers(), js),
        ("unknown kwarg", body([[envelope(f"{tag}-k")], {"hurry": True}, {}]),
         celery_headers(), js),
        ("kwargs a list", body([[envelope(f"{tag}-l")], [], {}]), celery_headers(), js),
        ("resume with no args", body([[], {}, {}]),
         celery_headers(task="umiq.resume_task"), js),
        ("expired", ok, celery_headers(expires=past), js),
        ("unknown task", ok, celery_headers(task="celery.backend_cleanup"), js),
        ("junk callbacks", body([[envelope(f"{tag}-c")], {}, {"callbacks": [1, 2]}]),
         celery_headers(), js),
        ("wrong content type", b"\x80\x04\x95N.", celery_headers(),
         "application/x-python-serialize"),
        ("text", b"certainly not json", {}, "text/plain"),
        ("NUL in the query", body(good_body(f"{tag}-nul"))
         .replace(b"INV-1001?", b"INV-1001\\u0000?"), celery_headers(), js),
    ]]  # fmt: skip
    table += [(name, raw, celery_headers(), js, enc) for name, enc, raw in wide]
    # Values Celery or the dead letter could not keep, compression, odd bodies.
    amqp_types = {"x-raw": b"\xff\xfe not utf-8", "x-when": datetime(2025, 3, 18, 9, 30),
                  "x-amount": Decimal("1250.50"), "x-note": "a\ud800b"}  # fmt: skip
    surrogate = body(good_body(f"{tag}-sur")).replace(b"INV-1001?", b"INV-1001\\ud800?")
    table += [
        ("headers of every AMQP type", b"null", celery_headers(**amqp_types), js, "utf-8"),
        ("id with a lone surrogate", ok, celery_headers(id="c-\ud800"), js, "utf-8"),
        ("id with a NUL", ok, celery_headers(id="c-\x00"), js, "utf-8"),
        ("root_id with a NUL", ok, celery_headers(root_id="r-\x00"), js, "utf-8"),
        ("lone surrogate in the query", surrogate, celery_headers(), js, "utf-8"),
        ("compressed", zlib.compress(b"null"),
         celery_headers(compression="application/x-gzip"), js, "utf-8"),
        ("compression named, body plain", ok,
         celery_headers(compression="application/x-gzip"), js, "utf-8"),
        ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, celery_headers(), js, "utf-8"),
        ("binary of an unknown type", bytes(range(256)), celery_headers(),
         "application/octet-stream", "binary"),
    ]  # fmt: skip
    return table


def publish(
    amqp_url: str,
    queue: str,
    raw: bytes,
    headers: dict[str, Any],
    ctype: str,
    encoding: str = "utf-8",
) -> None:
    with Connection(amqp_url) as conn:
        Producer(conn).publish(
            raw,
            exchange="umiq",
            routing_key=queue,
            content_type=ctype,
            content_encoding="binary" if "python" in ctype else encoding,
            headers=headers,
        )


def dead_letters(amqp_url: str, dead: str, expected: int, timeout: float = 120) -> list[Any]:
    queue = dead_letter_queue(Settings(dead_letter_queue=dead))
    got: list[Any] = []
    with Connection(amqp_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            message = bound.get(no_ack=False)  # raw: a pickle must not be decoded here
            if message is None:
                time.sleep(0.5)
                continue
            got.append(message)
            message.ack()
    return got


def rejected_steps(url: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT task_id, output, details FROM step WHERE kind = 'rejected'")
            )
            found = [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()
    for row in found:  # canonical JSON text
        if isinstance(row["details"], str):
            row["details"] = json.loads(row["details"])
    return found


def test_every_poison_message_is_dead_lettered_with_its_body_and_audited(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """Each poison message is dead-lettered byte for byte and audited; the worker serves on."""
    queue, dead = env["UMIQ_QUEUE"], env["UMIQ_DEAD_LETTER_QUEUE"]
    url = env["UMIQ_DATABASE_URL"]
    tag = f"p{uuid.uuid4().hex[:6]}"
    table = poison_table(tag)
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180) as worker:
        first = client.send_task(TASK_NAME, args=[envelope(f"{tag}-first")])
        for _, raw, headers, ctype, encoding in table:
            publish(env["UMIQ_BROKER_URL"], queue, raw, headers, ctype, encoding)
        last = client.send_task(TASK_NAME, args=[envelope(f"{tag}-last")])
        outcomes = [first.get(timeout=180), last.get(timeout=180)]
        letters = dead_letters(env["UMIQ_BROKER_URL"], dead, expected=len(table))
        alive, log_text = worker.alive, worker.log_text()

    assert alive, log_text[-3000:]
    assert "Unrecoverable error" not in log_text
    assert [o["outcome"] for o in outcomes] == ["answered", "answered"], outcomes

    # Each poison message is in the DLQ once, sealed (worker.letters): opened with the
    # worker's key ring it is byte for byte the message, with its headers and a reason.
    assert len(letters) == len(table), [m.headers.get("x-umiq-reason") for m in letters]
    keyring = load_keyring(Settings(data_dir=Path(env["UMIQ_DATA_DIR"])))
    by_body: dict[bytes, list[tuple[Any, Original]]] = {}
    for message in letters:  # py-amqp hands a utf-8 body over as text
        assert message.content_type == LETTER_TYPE, message.content_type
        sealed = message.body.encode() if isinstance(message.body, str) else message.body
        original = open_letter(keyring, sealed)
        by_body.setdefault(original.body, []).append((message, original))
    for name, raw, headers, ctype, encoding in table:
        matches = [m for m in by_body.get(raw, []) if m[1].content_type == ctype]
        assert matches, f"{name}: not dead-lettered with its original body"
        letter, original = matches.pop(0)
        by_body[raw].remove((letter, original))
        sent_encoding = "binary" if "python" in ctype else encoding
        assert original.content_encoding == sent_encoding, (name, original.content_encoding)
        for key, value in headers.items():
            assert original.headers.get(key) == value, (name, key, original.headers.get(key))
        reason = letter.headers["x-umiq-reason"]
        assert reason and "INSERT" not in reason, (name, reason)
        assert letter.headers["x-umiq-sha256"] == hashlib.sha256(raw).hexdigest(), name
        assert letter.headers["x-umiq-audited"] == "yes", (name, letter.headers)

    # Each refusal is audited with the message's digest and a short reason.
    rows = rejected_steps(url)
    digests = [r["details"]["message_sha256"] for r in rows]
    for name, raw, *_ in table:
        assert hashlib.sha256(raw).hexdigest() in digests, f"{name}: not audited"
    nul = next(r for r in rows if r["task_id"] == f"{tag}-nul")
    assert "NUL" in nul["output"] and len(nul["output"]) < 200, nul["output"]
    sur = next(r for r in rows if r["task_id"] == f"{tag}-sur")
    assert "lone surrogate" in sur["output"] and len(sur["output"]) < 200, sur["output"]


def test_malformed_envelope_with_a_finished_tasks_id_leaves_that_task_as_it_ended(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """A refused envelope claiming a finished task's id is recorded apart from that task."""
    queue, dead = env["UMIQ_QUEUE"], env["UMIQ_DEAD_LETTER_QUEUE"]
    task_id = f"done-{uuid.uuid4().hex[:6]}"
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180):
        assert (
            client.send_task(TASK_NAME, args=[envelope(task_id)]).get(timeout=180)["outcome"]
            == "answered"
        )
        bad = [[{"task_id": task_id, "query": "pay it all again"}], {}, {}]
        publish(env["UMIQ_BROKER_URL"], queue, json.dumps(bad).encode(), celery_headers(),
                "application/json")  # fmt: skip
        [letter] = dead_letters(env["UMIQ_BROKER_URL"], dead, expected=1)

    assert "department: missing" in letter.headers["x-umiq-reason"]
    kinds = [s["kind"] for s in steps_of(env["UMIQ_DATABASE_URL"], task_id)]
    assert "rejected" not in kinds and kinds[-1] == "outcome", kinds
    listed = umiq(env, "audit", "tasks", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    [row] = [t for t in rows if t["task_id"] == task_id]
    assert row["outcome"] == "answered", row
    [refusal] = [r for r in rejected_steps(env["UMIQ_DATABASE_URL"])
                 if r["details"].get("claimed_task_id") == task_id]  # fmt: skip
    assert refusal["task_id"] == letter.headers["x-umiq-task-id"] != task_id


def test_same_task_delivered_twice_at_once_runs_once(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """Two deliveries of one task id on a two-thread worker make one episode."""
    task_id = f"dup-{uuid.uuid4().hex[:6]}"
    slow = dict(env, UMIQ_TEST_GENERATION_DELAY="1")
    args = ("--concurrency", "2")
    with WorkerProcess(slow, tmp_path / "worker.log", args, ready_timeout=180) as worker:
        results = [client.send_task(TASK_NAME, args=[envelope(task_id)]) for _ in range(2)]
        outcomes = [r.get(timeout=180) for r in results]
        log_text = worker.log_text()
    assert [o["outcome"] for o in outcomes] == ["answered", "answered"], outcomes
    assert outcomes[0]["answer"] == outcomes[1]["answer"]
    # The second delivery did arrive while the first ran, and waited for it.
    assert "task.waiting_for_runner" in log_text
    kinds = [s["kind"] for s in steps_of(env["UMIQ_DATABASE_URL"], task_id)]
    assert kinds.count("outcome") == 1 and kinds[-1] == "outcome", kinds
    assert kinds.count("caller") == 1 and kinds.count("tool") == 1, kinds


def test_message_redelivered_past_the_limit_is_dead_lettered(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """A message whose runs never finished (each delivery returned) is refused, not run."""
    queue, dead = env["UMIQ_QUEUE"], env["UMIQ_DEAD_LETTER_QUEUE"]
    task_id = f"loop-{uuid.uuid4().hex[:6]}"
    settings = Settings(queue=queue, dead_letter_queue=dead)
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        declared = task_queue(settings)(conn.default_channel)
        declared.declare()
        client.send_task(TASK_NAME, args=[envelope(task_id)])
        # Four deliveries that end without an ack, as four crashed runs would.
        for _ in range(settings.max_redeliveries + 1):
            message = None
            deadline = time.monotonic() + 10
            while message is None and time.monotonic() < deadline:
                message = declared.get(no_ack=False)
            assert message is not None
            message.requeue()
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180):
        [letter] = dead_letters(env["UMIQ_BROKER_URL"], dead, expected=1)
    assert "redelivered 4 times" in letter.headers["x-umiq-reason"], letter.headers
    assert [s["kind"] for s in steps_of(env["UMIQ_DATABASE_URL"], task_id)] == ["rejected"]


def _dlq_json(env: dict[str, str]) -> list[dict[str, Any]]:
    done = umiq(env, "dlq", "list", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_dlq_list_show_and_replay_send_a_dead_letter_back_to_work(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """`umiq dlq` lists and shows a dead letter, and a replay runs it to the end."""
    queue, dead = env["UMIQ_QUEUE"], env["UMIQ_DEAD_LETTER_QUEUE"]
    task_id = f"again-{uuid.uuid4().hex[:6]}"
    settings = Settings(queue=queue, dead_letter_queue=dead)
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        declared = task_queue(settings)(conn.default_channel)
        declared.declare()
        client.send_task(TASK_NAME, args=[envelope(task_id)])
        for _ in range(settings.max_redeliveries + 1):  # runs that never finished
            message = None
            while message is None:
                message = declared.get(no_ack=False)
            message.requeue()
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180):
        deadline = time.monotonic() + 60
        while not (listed := _dlq_json(env)) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(listed) == 1, listed
        assert "redelivered 4 times" in listed[0]["reason"]
        assert listed[0]["audited"] == "yes"
        shown = umiq(env, "dlq", "show", listed[0]["sha256"][:10])
        assert shown.returncode == 0, shown.stdout
        assert task_id in shown.stdout and "x-umiq-reason" in shown.stdout
        assert _dlq_json(env) == listed  # reading leaves the queue as it was

        replayed = umiq(env, "dlq", "replay", "1")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        steps = []
        deadline = time.monotonic() + 120  # its own: the commands above may take minutes
        while time.monotonic() < deadline:
            steps = steps_of(env["UMIQ_DATABASE_URL"], task_id)
            if any(s["kind"] == "outcome" for s in steps):
                break
            time.sleep(1)
        assert _dlq_json(env) == []
    assert steps[0]["kind"] == "rejected" and steps[-1]["kind"] == "outcome", steps


def test_submit_with_the_broker_down_says_so(env: dict[str, str]) -> None:
    """`umiq submit` against a broker that is not there ends with a clear error, exit 2."""
    down = dict(env, UMIQ_BROKER_URL="amqp://guest:guest@127.0.0.1:1//")
    done = umiq(down, "submit", "What is INV-1001's status?", "--timeout", "5", timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot reach the broker at amqp://guest:**@127.0.0.1:1//" in done.stdout
    assert "Traceback" not in done.stderr + done.stdout


def test_second_worker_with_a_node_name_in_use_exits_non_zero(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A worker that cannot start (its node name is taken) exits with a failure code."""
    name = f"dup-{uuid.uuid4().hex[:6]}@%h"
    args = ("--hostname", name)
    with WorkerProcess(env, tmp_path / "w1.log", args, ready_timeout=180) as first:
        second = WorkerProcess(env, tmp_path / "w2.log", args, ready_timeout=120)
        try:
            second.start()
        except Exception as exc:  # ConfigError: it exited before it was ready
            assert "exited with" in str(exc), exc
        else:  # it said ready and then met the clash
            assert second.process is not None
            second.process.wait(timeout=60)
        assert second.process is not None and second.process.returncode not in (0, None)
        assert first.alive

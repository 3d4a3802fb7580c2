"""Refused messages sit sealed in the dead-letter queue: no personal data in the broker,
masked by `umiq dlq show`, revealed only on request (byte for byte, whatever the body's
encoding), and `umiq dlq replay` still works; a message over the size limit keeps its head.

The real ``umiq worker`` (scripted role model) on RabbitMQ and Postgres refuses a task
whose request holds personal data after its runs never finished (each delivery came
back); the letter RabbitMQ keeps is read raw and searched.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue

from tests.support.cli import raw_dead_letters, steps_of, umiq, worker_env
from tests.support.leaks import search
from worker.audit.keyring import load_keyring
from worker.celery_app import TASK_NAME, create_app, task_queue
from worker.dlq import list_letters
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEEDED = {
    "NL91ABNA0417164300": "IBAN",
    "111222333": "BSN",
    "wilhelmina.zwartkop@example.org": "e-mail",
    "+31 6 4829 1735": "phone",
    "Zwartkop": "surname (in no record: only sealing keeps it out)",
}
QUERY = (
    "What is the status of invoice INV-1001? Mrs Zwartkop (BSN 111222333, phone "
    "+31 6 4829 1735, wilhelmina.zwartkop@example.org) is paid into NL91ABNA0417164300."
)
SCRIPT = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}]


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


def _dlq_list(env: dict[str, str]) -> list[dict[str, Any]]:
    done = umiq(env, "dlq", "list", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_a_refused_task_is_sealed_in_the_dlq_shown_masked_and_replayed(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """The broker keeps no raw value; show masks, --reveal opens, replay runs the task."""
    task_id = f"sealed-{uuid.uuid4().hex[:6]}"
    envelope = {"task_id": task_id, "department": "finance", "query": QUERY,
                "requested_by": "Wilhelmina Zwartkop", "context": {"script": SCRIPT}}  # fmt: skip
    settings = Settings(queue=env["UMIQ_QUEUE"], dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"])
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        declared = task_queue(settings)(conn.default_channel)
        declared.declare()
        client.send_task(TASK_NAME, args=[envelope])
        for _ in range(settings.max_redeliveries + 1):  # runs that never finished
            message = None
            while message is None:
                message = declared.get(no_ack=False)
            message.requeue()
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180):
        deadline = time.monotonic() + 60
        while not (listed := _dlq_list(env)) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(listed) == 1, listed
        assert "redelivered 4 times" in listed[0]["reason"]

        # What RabbitMQ holds: a sealed letter and umiq's headers, no raw value.
        [(headers, body)] = raw_dead_letters(env)
        assert headers["x-umiq-sealed"] and headers["x-umiq-task-id"] == task_id
        stored = [("dead letter headers", json.dumps(headers, default=str)),
                  ("dead letter body", body.decode())]  # fmt: skip
        assert [str(leak) for leak in search(SEEDED, stored)] == []

        shown = umiq(env, "dlq", "show", "1")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert task_id in shown.stdout and "INV-1001" in shown.stdout
        assert "<IBAN>" in shown.stdout and "<EMAIL>" in shown.stdout
        for raw in ("NL91ABNA0417164300", "111222333", "wilhelmina.zwartkop@example.org"):
            assert raw not in shown.stdout, raw

        revealed = umiq(env, "dlq", "show", "1", "--reveal")
        assert revealed.returncode == 0, revealed.stdout + revealed.stderr
        assert "NL91ABNA0417164300" in revealed.stdout and "111222333" in revealed.stdout

        # Without the key ring the letter is not opened, and nothing is replayed.
        keyless = dict(env, UMIQ_DATA_DIR=str(tmp_path / "elsewhere"))
        blind = umiq(keyless, "dlq", "show", "1", "--reveal")
        assert blind.returncode == 1 and "cannot open" in blind.stdout, blind.stdout
        assert "NL91ABNA0417164300" not in blind.stdout
        refused = umiq(keyless, "dlq", "replay", "1")
        assert refused.returncode == 1 and "nothing replayed" in refused.stdout
        assert len(_dlq_list(env)) == 1

        replayed = umiq(env, "dlq", "replay", "1")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        steps = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            steps = steps_of(env["UMIQ_DATABASE_URL"], task_id)
            if any(s["kind"] == "outcome" for s in steps):
                break
            time.sleep(1)
        assert _dlq_list(env) == []
    kinds = [s["kind"] for s in steps]
    assert kinds[0] == "rejected" and "tool" in kinds and kinds[-1] == "outcome", kinds


def _message_count(env: dict[str, str], name: str) -> int:
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        return int(conn.default_channel.queue_declare(name, passive=True).message_count)


def test_a_message_the_broker_dead_letters_is_sealed_by_the_worker(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """A message RabbitMQ dead-letters itself (rejected without requeue from a work queue,
    in a deployment whose dead-letter queue was bound to umiq.dlx as before) ends sealed in
    the DLQ, audited, opened by --reveal, and nothing raw is left in any queue."""
    task_id = f"broker-{uuid.uuid4().hex[:6]}"
    envelope = {"task_id": task_id, "department": "finance", "query": QUERY,
                "requested_by": "Wilhelmina Zwartkop", "context": {"script": SCRIPT}}  # fmt: skip
    dead = env["UMIQ_DEAD_LETTER_QUEUE"]
    # A work queue no worker consumes, dead-lettering like every work queue.
    idle = task_queue(Settings(dead_letter_queue=dead), env["UMIQ_QUEUE"] + ".idle")
    legacy = Queue(
        dead, Exchange("umiq.dlx", type="direct", durable=True), routing_key=dead, durable=True
    )
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        legacy(conn.default_channel).declare()  # the binding of deployments before the intake
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180):
        with Connection(env["UMIQ_BROKER_URL"]) as conn:
            declared = idle(conn.default_channel)
            declared.declare()
            client.send_task(TASK_NAME, args=[envelope], queue=idle)
            message = None
            while message is None:
                message = declared.get(no_ack=False)
            message.reject(requeue=False)  # the broker dead-letters it, not the worker
        deadline = time.monotonic() + 60
        while not (listed := _dlq_list(env)) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(listed) == 1, listed
        assert "dead-lettered by the broker (rejected)" in listed[0]["reason"], listed
        assert listed[0]["task_id"] == task_id

        [(headers, body)] = raw_dead_letters(env)
        assert headers["x-umiq-sealed"], headers
        stored = [("dead letter headers", json.dumps(headers, default=str)),
                  ("dead letter body", body.decode())]  # fmt: skip
        assert [str(leak) for leak in search(SEEDED, stored)] == []
        assert _message_count(env, dead + ".unsealed") == 0

        revealed = umiq(env, "dlq", "show", "1", "--reveal")
        assert revealed.returncode == 0, revealed.stdout + revealed.stderr
        assert "NL91ABNA0417164300" in revealed.stdout
    kinds = [s["kind"] for s in steps_of(env["UMIQ_DATABASE_URL"], task_id)]
    assert kinds == ["rejected"], kinds


def _reject_on_an_idle_queue(
    env: dict[str, str], messages: list[tuple[bytes, dict[str, Any]]]
) -> None:
    """Publish each (body, properties) on a work queue no worker consumes and reject it
    without requeue there: RabbitMQ dead-letters it, not the worker."""
    idle = task_queue(Settings(dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"]),
                      env["UMIQ_QUEUE"] + ".idle")  # fmt: skip
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        channel = conn.channel()
        declared = idle(channel)
        declared.declare()
        producer = Producer(channel)
        for body, properties in messages:
            producer.publish(body, exchange="", routing_key=declared.name, **properties)
        for _ in messages:
            message = None
            while message is None:
                message = declared.get(no_ack=False)
            message.reject(requeue=False)


def _wait_for_letters(env: dict[str, str], count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 90
    while len(listed := _dlq_list(env)) < count and time.monotonic() < deadline:
        time.sleep(1)
    assert len(listed) == count, listed
    return listed


def test_the_brokers_dead_letters_keep_their_bytes_utf16_utf32_and_compressed(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A UTF-16 body with its byte-order mark, a UTF-32 one and a compressed one that
    RabbitMQ dead-letters come out of `umiq dlq show --reveal` byte for byte: the sealed
    letter's body is the bytes that came (written by --body-out, digest as recorded), its
    text read by the declared encoding."""
    text = json.dumps([[{"task_id": "wide-1", "department": "finance", "query": "Pay "
                         "NL91ABNA0417164300 — é"}], {}, {}], ensure_ascii=False)  # fmt: skip
    headers = {"task": TASK_NAME, "id": str(uuid.uuid4())}
    bodies = [
        (b"\xfe\xff" + text.encode("utf-16-be"), "utf-16", {}),
        (b"\x00\x00\xfe\xff" + text.encode("utf-32-be"), "utf-32", {}),
        (zlib.compress(text.encode()), "utf-8", {"compression": "application/x-gzip"}),
    ]
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180):
        _reject_on_an_idle_queue(env, [
            (body, {"content_type": "application/json", "content_encoding": encoding,
                    "headers": {**headers, **extra}})
            for body, encoding, extra in bodies
        ])  # fmt: skip
        listed = _wait_for_letters(env, len(bodies))
        assert _message_count(env, env["UMIQ_DEAD_LETTER_QUEUE"] + ".unsealed") == 0
        for (body, encoding, extra), letter in zip(bodies, listed, strict=True):
            assert "dead-lettered by the broker (rejected)" in letter["reason"], letter
            assert letter["sha256"] == hashlib.sha256(body).hexdigest(), (encoding, letter)
            out = tmp_path / f"body-{letter['position']}"
            shown = umiq(env, "dlq", "show", str(letter["position"]), "--reveal",
                         "--body-out", str(out))  # fmt: skip
            assert shown.returncode == 0, shown.stdout + shown.stderr
            assert out.read_bytes() == body, (encoding, extra)
            assert f"sha256 {letter['sha256']} (the recorded digest)" in shown.stdout
            assert f"application/json ({encoding})" in shown.stdout, shown.stdout
            if not extra:  # read by its declared encoding: the text, mark taken off
                assert "NL91ABNA0417164300 — é" in shown.stdout, shown.stdout
        # the masked view reads the UTF-16 text too, so the IBAN in it is masked
        masked = umiq(env, "dlq", "show", "1")
        assert masked.returncode == 0, masked.stdout + masked.stderr
        assert "<IBAN>" in masked.stdout and "NL91ABNA0417164300" not in masked.stdout


def _envelope(task_id: str, requested_by: str, **context: Any) -> dict[str, Any]:
    """A finance status task with the scripted lookup (and ``context`` added)."""
    return {"task_id": task_id, "department": "finance", "query": "Status of INV-1001?",
            "requested_by": requested_by, "context": {"script": SCRIPT, **context}}  # fmt: skip


def _properties(**headers: Any) -> dict[str, Any]:
    """AMQP properties of a Celery task message (its own id, ``headers`` added)."""
    return {"content_type": "application/json", "content_encoding": "utf-8",
            "headers": {"task": TASK_NAME, "id": str(uuid.uuid4()), **headers}}  # fmt: skip


def test_a_message_over_the_size_limit_is_refused_with_its_head_kept_and_not_replayed(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """A 3 MiB task message over UMIQ_MAX_MESSAGE_BYTES (256 KiB here), sent to the worker
    or dead-lettered by the broker, ends in the DLQ with the reason, its first 64 KiB and
    the whole body's digest, audited; the worker serves the next task; it is not replayed."""
    limit = 256 * 1024
    env = dict(env, UMIQ_MAX_MESSAGE_BYTES=str(limit))
    task_id = f"huge-{uuid.uuid4().hex[:6]}"
    envelope = _envelope(task_id, "size-test", blob="x" * (3 * 2**20))
    body = json.dumps([[envelope], {}, {}]).encode()
    properties = _properties()
    after = _envelope(f"after-{task_id}", "size-test")
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180) as worker:
        with Connection(env["UMIQ_BROKER_URL"]) as conn:
            Producer(conn).publish(body, exchange="umiq", routing_key=env["UMIQ_QUEUE"],
                                   **properties)  # fmt: skip
        outcome = client.send_task(TASK_NAME, args=[after]).get(timeout=180)
        _reject_on_an_idle_queue(env, [(body, properties)])
        listed = _wait_for_letters(env, 2)
        assert worker.alive, worker.log_text()[-3000:]
    assert outcome["outcome"] == "answered", outcome
    sha = hashlib.sha256(body).hexdigest()
    mine, brokers = listed
    assert mine["reason"].startswith("message too large: body: 3,"), mine
    assert "UMIQ_MAX_MESSAGE_BYTES" in mine["reason"]
    assert "dead-lettered by the broker (rejected)" in brokers["reason"], brokers
    keyring = load_keyring(Settings(data_dir=Path(env["UMIQ_DATA_DIR"])))
    dead = Settings(broker_url=env["UMIQ_BROKER_URL"], dead_letter_queue=env[
        "UMIQ_DEAD_LETTER_QUEUE"])  # fmt: skip
    for letter in list_letters(dead):
        assert letter.sha256 == sha and letter.truncated == len(body), letter.headers
        assert f"keeps the first 65,536 of its {len(body):,} bytes" in letter.reason
        assert letter.original(keyring).body == body[:65536]
    shown = umiq(env, "dlq", "show", "1")
    assert f"the first 65,536 of {len(body):,} bytes" in shown.stdout, shown.stdout
    replayed = umiq(env, "dlq", "replay", "1")
    assert replayed.returncode == 1 and "cannot be sent back" in replayed.stdout, replayed.stdout
    assert len(_dlq_list(env)) == 2
    # Audited by the whole body's digest, each under an id of its own (no envelope read)
    digests = _rejected_digests(env["UMIQ_DATABASE_URL"])
    assert [d for d in digests.values() if d == sha] == [sha, sha], digests
    assert task_id not in digests


def _rejected_digests(url: str) -> dict[str, str]:
    """The message digest of each ``rejected`` step, by the task id it is recorded under."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT task_id, details FROM step WHERE kind = 'rejected'")
            )
            found = {r.task_id: r.details for r in rows}
    finally:
        engine.dispose()
    return {
        t: (json.loads(d) if isinstance(d, str) else d)["message_sha256"] for t, d in found.items()
    }


def test_a_compressed_bomb_is_refused_before_it_inflates(
    env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """A gzip body of ~250 KiB that inflates to 256 MiB (a valid envelope padded with
    spaces) is refused at the 4 MiB limit while kombu builds the message, dead-lettered
    as it came (compressed, its digest), and the worker serves the next task."""
    task_id = f"bomb-{uuid.uuid4().hex[:6]}"
    inflated = json.dumps([[_envelope(task_id, "bomb-test")], {}, {}]).encode()
    body = zlib.compress(inflated + b" " * (256 * 2**20), 9)
    assert len(body) < 2**20
    properties = _properties(compression="application/x-gzip")
    after = _envelope(f"after-{task_id}", "bomb-test")
    with WorkerProcess(env, tmp_path / "worker.log", ready_timeout=180) as worker:
        with Connection(env["UMIQ_BROKER_URL"]) as conn:
            Producer(conn).publish(body, exchange="umiq", routing_key=env["UMIQ_QUEUE"],
                                   **properties)  # fmt: skip
        outcome = client.send_task(TASK_NAME, args=[after]).get(timeout=180)
        (letter,) = _wait_for_letters(env, 1)
        assert worker.alive, worker.log_text()[-3000:]
    assert outcome["outcome"] == "answered", outcome
    assert "inflates past 4,194,304 bytes" in letter["reason"], letter
    dead = Settings(broker_url=env["UMIQ_BROKER_URL"], dead_letter_queue=env[
        "UMIQ_DEAD_LETTER_QUEUE"])  # fmt: skip
    (kept,) = list_letters(dead)
    assert kept.sha256 == hashlib.sha256(body).hexdigest()  # the bytes that came
    assert task_id not in _rejected_digests(env["UMIQ_DATABASE_URL"])

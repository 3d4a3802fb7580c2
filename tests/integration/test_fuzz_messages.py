"""Fuzzed messages at the Celery-protocol level on the real RabbitMQ and Postgres.

Hypothesis draws task messages (headers, body, content type and encoding, AMQP
properties) that each carry at least one fault the task protocol or umiq's tasks cannot
take, plus random noise; they are published raw at the worker's queue with valid tasks
in between. Every fuzzed message must reach the dead-letter queue with its original
body, content type and headers and a reason, be audited, and the worker must serve the
valid tasks and keep its memory roughly flat (its RSS is printed after each batch).

``UMIQ_FUZZ_MESSAGES`` (default 200) sets how many; the 1,000-message run is in
docs/operations.md ("Reliability").
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kombu import Connection, Producer

from tests.support.cli import bare_env, umiq
from worker.audit.keyring import load_keyring
from worker.celery_app import TASK_NAME, create_app, dead_letter_queue
from worker.letters import LETTER_TYPE, open_letter
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGES = int(os.environ.get("UMIQ_FUZZ_MESSAGES") or 200)
#: A valid task after every this many fuzzed messages; RSS sampled after every batch.
VALID_EVERY = 50
BATCH = 100
#: RSS growth allowed from the end of the first batch to the end (a generous bound).
MAX_GROWTH_MIB = 150

SCRIPT = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}]


def envelope(task_id: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "department": "finance",
        "query": "What is the status of invoice INV-1001?",
        "requested_by": "fuzz-test",
        "context": {"script": SCRIPT},
    }


# -- strategies ---------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
#: What an AMQP table holds (and JSON): no NaN, integers in 64 bits.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=8,
)  # fmt: skip
not_text = st.none() | st.booleans() | st.integers(-5, 5) | st.lists(scalars, max_size=3) | (
    st.dictionaries(text, scalars, min_size=1, max_size=3))  # fmt: skip


@st.composite
def bad_envelope(draw: st.DrawFn) -> Any:
    """A run_task envelope that parse_envelope refuses."""
    env: dict[str, Any] = envelope(f"fz-{draw(st.uuids()).hex[:8]}")
    how = draw(st.sampled_from(["drop", "retype", "bad id", "bad department", "extra", "nul"]))
    required = ["task_id", "department", "query", "requested_by"]
    if how == "drop":
        del env[draw(st.sampled_from(required))]
    elif how == "retype":
        env[draw(st.sampled_from(required))] = draw(not_text)
    elif how == "bad id":
        env["task_id"] = "!" + draw(text)
    elif how == "bad department":
        env["department"] = "Finance " + draw(text)
    elif how == "extra":
        env["fuzz " + draw(text)] = draw(values)
    else:
        env["query"] = draw(text) + "\x00" + draw(text)
    return env


FAULTS = (
    "headers.id", "headers.task", "headers.types", "expired", "body bytes", "body json",
    "content type", "encoding", "args", "kwargs", "embed", "plain object",
)  # fmt: skip


@st.composite
def poison(draw: st.DrawFn) -> tuple[dict[str, Any], bytes, str, str, dict[str, Any], list[str]]:
    """(headers, body, content type, content encoding, properties, faults)."""
    faults = draw(st.lists(st.sampled_from(FAULTS), min_size=1, max_size=3, unique=True))
    headers: dict[str, Any] = {
        "task": TASK_NAME, "id": str(draw(st.uuids())), "lang": "py", "retries": 0,
        "argsrepr": "", "kwargsrepr": "",
    }  # fmt: skip
    args: Any = [envelope(f"fz-never-{draw(st.uuids()).hex[:8]}")]
    kwargs: Any = {}
    embed: Any = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body: Any = None
    ctype, encoding = "application/json", "utf-8"
    for fault in faults:
        if fault == "headers.id":
            bad = draw(st.sampled_from(["missing", "blank", "long", "typed"]))
            if bad == "missing":
                headers.pop("id", None)
            else:
                typed = {"blank": " ", "long": "i" * 300}.get(bad)
                headers["id"] = typed if typed is not None else draw(not_text)
        elif fault == "headers.task":
            task = draw(
                st.none() | text.filter(lambda t: not t.startswith("umiq.")) | not_text.filter(bool)
            )
            if task is None:
                headers.pop("task", None)
            else:
                headers["task"] = task
        elif fault == "headers.types":
            name, value = draw(st.sampled_from([
                ("retries", -1), ("retries", "3"), ("retries", 1.5), ("timelimit", "10"),
                ("timelimit", [1, 2, 3]), ("timelimit", [-1, None]), ("ignore_result", "yes"),
                ("eta", "soon"), ("expires", 42), ("root_id", 7), ("parent_id", ["a"]),
                ("stamps", "x"), ("replaced_task_nesting", True),
            ]))  # fmt: skip
            headers[name] = value
        elif fault == "expired":
            ago = draw(st.integers(1, 10**6))
            headers["expires"] = (datetime.now(UTC) - timedelta(seconds=ago)).isoformat()
        elif fault == "body bytes":
            body = draw(st.binary(max_size=64))
        elif fault == "body json":
            body = json.dumps(
                draw(values.filter(lambda v: not (isinstance(v, list) and len(v) == 3)))
            ).encode()
        elif fault == "content type":
            ctype = draw(
                st.sampled_from(["text/plain", "application/x-python-serialize",
                                 "application/x-yaml", "application/xml", "APPLICATION/JSON"])
                | st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24)
                .filter(lambda t: t != "application/json")
            )  # fmt: skip
        elif fault == "encoding":
            encoding = draw(st.sampled_from(["latin-1", "utf-16-le", "gzip", "base64", "ascii"]))
        elif fault == "args":
            args = draw(
                st.sampled_from([[], None, "x"]) | st.tuples(bad_envelope()).map(list)
                | st.tuples(bad_envelope(), values).map(list) | not_text.map(lambda v: [v])
            )  # fmt: skip
        elif fault == "kwargs":
            kwargs = draw(
                st.dictionaries(text.map(lambda k: "fz_" + k), values, min_size=1, max_size=2)
                | st.lists(values, max_size=2) | st.just("kw")
            )  # fmt: skip
        elif fault == "embed":
            embed = draw(
                st.sampled_from(["callbacks", "errbacks", "chain", "chord"]).map(
                    lambda k: {k: [{"task": "umiq.run_task"}]})
                | st.integers() | text | st.lists(scalars, min_size=1, max_size=2)
            )  # fmt: skip
        else:  # a bare JSON object that is not an envelope, without Celery's headers
            headers = {}
            body = json.dumps(draw(bad_envelope().filter(lambda e: isinstance(e, dict)))).encode()
    if body is None:
        body = json.dumps([args, kwargs, embed], ensure_ascii=False).encode()
    headers.update(draw(st.dictionaries(text.map(lambda k: "fuzz-" + k), values, max_size=3)))
    properties = draw(st.fixed_dictionaries({}, optional={
        "priority": st.integers(0, 9), "correlation_id": text, "app_id": text,
        "type": text, "message_id": text,
    }))  # fmt: skip
    return headers, body, ctype, encoding, properties, faults


# -- the run ------------------------------------------------------------------------


def rejected_digests(url: str) -> Counter[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT details FROM step WHERE kind = 'rejected'"))
            found = [r.details if isinstance(r.details, dict) else json.loads(r.details)
                     for r in rows]  # fmt: skip
    finally:
        engine.dispose()
    return Counter(d["message_sha256"] for d in found)


def test_fuzzed_messages_are_all_dead_lettered_and_the_worker_serves_on(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> None:
    """Each fuzzed message is dead-lettered with its body, headers and a reason and
    audited; the valid tasks between them are answered; the worker's RSS stays flat."""
    queue, dead = queue_names
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
    })  # fmt: skip
    assert umiq(env, "db", "upgrade").returncode == 0
    client = create_app(Settings(data_dir=tmp_path / "client", broker_url=amqp_url,
                                 database_url=postgres_url, queue=queue,
                                 dead_letter_queue=dead))  # fmt: skip
    messages: list[tuple[Any, ...]] = []

    @settings(max_examples=MESSAGES, database=None, deadline=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(poison())
    def draw(message: tuple[Any, ...]) -> None:
        messages.append(message)

    draw()
    sent: list[tuple[dict[str, Any], bytes, str, str, list[str]]] = []
    valid: list[Any] = []
    rss: list[tuple[int, float]] = []
    tag = uuid.uuid4().hex[:6]
    name = f"fuzz-{tag}@%h"
    args = ("--loglevel", "INFO", "--hostname", name)
    try:
        with (
            WorkerProcess(env, tmp_path / "worker.log", args, ready_timeout=180) as worker,
            Connection(amqp_url) as conn,
        ):
            assert worker.process is not None
            process = psutil.Process(worker.process.pid)
            producer = Producer(conn)

            def settle() -> None:
                deadline, seen = time.monotonic() + 90, 0
                while (audited := rejected_digests(postgres_url)).total() < len(sent):
                    assert worker.alive, worker.log_text()[-3000:]
                    if audited.total() > seen:  # progress: wait on
                        deadline, seen = time.monotonic() + 90, audited.total()
                    elif time.monotonic() > deadline:
                        missing = Counter(hashlib.sha256(m[1]).hexdigest() for m in sent)
                        missing.subtract(audited)
                        lost = [m for m in sent if missing[hashlib.sha256(m[1]).hexdigest()] > 0]
                        raise AssertionError(
                            f"{audited.total()} of {len(sent)} refused; not: {lost[:5]}\n"
                            + worker.log_text()[-3000:]
                        )
                    time.sleep(0.5)

            for n, (headers, body, ctype, encoding, properties, faults) in enumerate(messages):
                producer.publish(body, exchange="umiq", routing_key=queue, headers=headers,
                                 content_type=ctype, content_encoding=encoding,
                                 **properties)  # fmt: skip
                sent.append((headers, body, ctype, encoding, faults))
                if (n + 1) % VALID_EVERY == 0:
                    task = f"fz-valid-{tag}-{len(valid)}"
                    valid.append(client.send_task(TASK_NAME, args=[envelope(task)]))
                if (n + 1) % BATCH == 0:
                    settle()
                    rss.append((len(sent), process.memory_info().rss / 2**20))
            settle()
            outcomes = [r.get(timeout=300) for r in valid]
            rss.append((len(sent), process.memory_info().rss / 2**20))
            alive, log_text = worker.alive, worker.log_text()
    finally:
        client.close()

    print(f"\nfuzz: {len(sent)} messages; worker RSS (MiB) after each batch:")
    for count, mib in rss:
        print(f"  {count:>6} {mib:8.1f}")
    print("  faults drawn:", dict(Counter(f for *_, faults in sent for f in faults)))
    assert len(sent) == MESSAGES
    assert alive and "Unrecoverable error" not in log_text, log_text[-3000:]
    assert [o["outcome"] for o in outcomes] == ["answered"] * len(valid), outcomes
    assert rss[-1][1] - rss[0][1] < MAX_GROWTH_MIB, rss

    # every fuzzed message is audited by its digest ...
    audited = rejected_digests(postgres_url)
    for headers, body, _, _, faults in sent:
        digest = hashlib.sha256(body).hexdigest()
        assert audited[digest] > 0, (faults, headers, body[:200])
        audited[digest] -= 1
    # ... and dead-lettered once, sealed, with its body, type, headers and a reason
    keyring = load_keyring(Settings(data_dir=Path(env["UMIQ_DATA_DIR"])))
    letters: list[Any] = []
    dead_queue = dead_letter_queue(Settings(dead_letter_queue=dead))
    with Connection(amqp_url) as conn:
        bound = dead_queue(conn.default_channel)
        bound.declare()
        while (message := bound.get(no_ack=True)) is not None:
            letters.append(message)
    assert len(letters) == len(sent), (len(letters), len(sent))
    opened: dict[tuple[bytes, str], list[Any]] = {}
    for letter in letters:
        assert letter.content_type == LETTER_TYPE, letter.content_type
        assert letter.headers.get("x-umiq-reason"), letter.headers
        raw = letter.body.encode() if isinstance(letter.body, str) else letter.body
        original = open_letter(keyring, raw)
        opened.setdefault((original.body, original.content_type), []).append(original)
    for headers, body, ctype, _, faults in sent:
        candidates = opened.get((body, ctype), [])
        assert candidates, ("not dead-lettered with its body", faults, headers, body[:200])
        # the fuzzer repeats bodies: the letter is the one with this message's headers
        same = [c for c in candidates if all(c.headers.get(k) == v for k, v in headers.items())]
        assert same, ("headers not kept", faults, headers, [c.headers for c in candidates])
        candidates.remove(same[0])
        assert same[0].reason, (faults, body[:200])

"""Chaos: a real worker killed with SIGKILL at random points of many episodes.

A real ``umiq worker`` (scripted role model) on RabbitMQ, Postgres and the Acme ERP runs
episodes that read an invoice, write (a payment or a credit note) and read it again.
Each episode gets a kill point drawn from a seeded generator: a number of audit steps
and a delay after it, so the SIGKILL lands inside a generation, between a connector's
answer and its commit, or between steps. After each kill a new worker starts, the task
comes back from the broker and resumes by replay. In the end every task has ended
answered, each write was made once in the ERP (payments and credit notes per invoice),
every interrupted task shows its ``resume`` step and the audit chain verifies.

``UMIQ_CHAOS_EPISODES`` (default 6) sets how many episodes, ``UMIQ_CHAOS_SEED`` (default
25) the draw. The ≥ 30-episode run is in docs/operations.md ("Reliability").

``UMIQ_CHAOS_SHIPPED=N`` also runs N episodes with the shipped role adapters on the real
base (``UMIQ_MODEL_DIR``, as the e2e tests), skipped without it: the model, not a script,
decides each step, so the run checks what holds whatever it decides (every task ends once,
each write the ERP holds is one recorded call, the replay in the trail, the chain).
Generation on a CPU takes seconds per step, hence opt-in. Its run of 3 episodes (one torch
thread, 2 cores shared with training): 3 SIGKILLs, every episode hit, all checks held,
1,368 s; the model made no write that ran (docs/operations.md, "Reliability").
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support.cli import bare_env, umiq
from worker.celery_app import TASK_NAME, create_app
from worker.lease import NAMESPACE, lock_key
from worker.process import WorkerProcess
from worker.settings import Settings

EPISODES = int(os.environ.get("UMIQ_CHAOS_EPISODES") or 6)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(300 + 60 * EPISODES),
]
SEED = int(os.environ.get("UMIQ_CHAOS_SEED") or 25)
#: Seconds per generation of the scripted model: long enough for a kill to land inside.
DELAY = 0.3
#: Steps of an uninterrupted episode before its outcome (3 plan/call/observation
#: rounds, the concluding plan and the answer); a kill point is drawn below it.
STEPS_BEFORE_OUTCOME = 11
#: A task is never hit more often than this: one more return and the broker's delivery
#: limit (max_redeliveries 3) would dead-letter it, which this test is not about.
MAX_HITS = 2


@dataclass(kw_only=True)
class Target:
    """A task the loop kills its worker under, at its kill points."""

    task_id: str
    #: (steps recorded, then seconds) of each kill: a second one lands in the resumed run
    kill_points: list[tuple[int, float]]
    hits: list[int] = field(default_factory=list)  # steps recorded at each kill, -1 spared

    def due(self, steps: int) -> bool:
        """Whether its next kill point is reached (after progress since its last kill)."""
        if len(self.hits) >= len(self.kill_points) or -1 in self.hits:
            return False
        return steps >= self.kill_points[len(self.hits)][0] and steps > max(self.hits, default=0)

    @property
    def delay(self) -> float:
        return self.kill_points[len(self.hits)][1]


@dataclass(kw_only=True)
class Episode(Target):
    """A scripted episode: read an invoice, pay or credit it, read it again."""

    invoice: dict[str, Any]
    write: str  # "schedule_payment" or "create_credit_note"

    @property
    def credit_reason(self) -> str:
        return f"Chaos test credit, task {self.task_id}."

    def envelope(self) -> dict[str, Any]:
        read = {"tool": "get_invoice", "arguments": {"invoice_id": self.invoice["id"]}}
        if self.write == "schedule_payment":
            arguments = {
                "invoice_id": self.invoice["id"],
                "amount": self.invoice["amount"],
                "date": self.invoice["issue_date"],
            }
        else:
            arguments = {
                "invoice_id": self.invoice["id"],
                "amount": 1.25,
                "reason": self.credit_reason,
            }
        return {
            "task_id": self.task_id,
            "department": "finance",
            "query": (
                f"Schedule the payment of invoice {self.invoice['id']}."
                if self.write == "schedule_payment"
                else f"Record a credit note of 1.25 on invoice {self.invoice['id']}."
            ),
            "requested_by": "chaos-test",
            "context": {"script": [read, {"tool": self.write, "arguments": arguments}, read]},
        }


class Audit:
    """Reads of the audit database the loop makes many times a second (one engine)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_size=2)

    def progress(self) -> dict[str, tuple[int, bool]]:
        """Per task: how many steps it has recorded, and whether it has an outcome."""
        query = sa.text(
            "SELECT task_id, count(*) AS n, bool_or(kind = 'outcome') AS ended "
            "FROM step GROUP BY task_id"
        )
        with self.engine.connect() as conn:
            return {r.task_id: (int(r.n), bool(r.ended)) for r in conn.execute(query)}

    def running(self, task_ids: Collection[str]) -> set[str]:
        """The tasks whose lease (worker.lease: an advisory lock) a worker holds now."""
        keys = {lock_key(t) & 0xFFFFFFFF: t for t in task_ids}
        query = sa.text(
            "SELECT l.objid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.classid = :ns AND l.objsubid = 2 "
            "AND d.datname = current_database()"
        )
        with self.engine.connect() as conn:
            held = {int(r.objid) for r in conn.execute(query, {"ns": NAMESPACE})}
        return {keys[k] for k in held if k in keys}

    def steps(self, task_id: str) -> list[dict[str, Any]]:
        query = sa.text("SELECT kind, output, details FROM step WHERE task_id = :t ORDER BY seq")
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query, {"t": task_id})]
        for row in rows:
            if isinstance(row["details"], str):
                row["details"] = json.loads(row["details"])
        return rows

    def tool_calls(self, task_id: str) -> list[tuple[str, str]]:
        query = sa.text(
            "SELECT tool, idempotency_key FROM tool_call WHERE task_id = :t ORDER BY seq"
        )
        with self.engine.connect() as conn:
            return [(r.tool, r.idempotency_key) for r in conn.execute(query, {"t": task_id})]

    def calls(self, task_id: str) -> list[tuple[str, str, bool]]:
        """Tool, effect (read or write) and whether it succeeded, of each recorded call."""
        query = sa.text("SELECT tool, effect, ok FROM tool_call WHERE task_id = :t ORDER BY seq")
        with self.engine.connect() as conn:
            return [(r.tool, r.effect, bool(r.ok)) for r in conn.execute(query, {"t": task_id})]

    def close(self) -> None:
        self.engine.dispose()


def kill_points(rng: random.Random) -> list[tuple[int, float]]:
    """One kill point at a random step (and a random delay after it); a third of the
    episodes get a second one, later, which lands in the run that resumed."""
    last = STEPS_BEFORE_OUTCOME - 2
    first = rng.randint(1, last - 1)
    points = [(first, rng.uniform(0, DELAY))]
    if rng.random() < 1 / 3:
        points.append((rng.randint(first + 1, last), rng.uniform(0, DELAY)))
    return points


def plan_episodes(erp_url: str, rng: random.Random, count: int) -> list[Episode]:
    """Pay each open invoice once; every other episode credits an invoice 1.25."""
    invoices = httpx.get(f"{erp_url}/invoices").json()
    unpaid = [
        i
        for i in invoices
        if i["status"] == "open"
        and not httpx.get(f"{erp_url}/payments", params={"invoice_id": i["id"]}).json()
    ]
    assert len(unpaid) >= 5, unpaid
    tag = uuid.uuid4().hex[:6]
    episodes = []
    for n in range(count):
        paying = n % 3 == 0 and n // 3 < len(unpaid)
        invoice = unpaid[n // 3] if paying else invoices[n % len(invoices)]
        episodes.append(
            Episode(
                task_id=f"chaos-{tag}-{n:03d}",
                invoice=invoice,
                write="schedule_payment" if paying else "create_credit_note",
                kill_points=kill_points(rng),
            )
        )
    return episodes


def chaos_env(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp_url: str
) -> dict[str, str]:
    """A worker's environment: finance writes to the ERP without approval, prompts logged."""
    queue, dead = queue_names
    env = bare_env()
    env.update({
        "UMIQ_DATA_DIR": str(tmp_path / "data"),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_QUEUE": queue,
        "UMIQ_DEAD_LETTER_QUEUE": dead,
        "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp_url}}),
        "UMIQ_DEPARTMENTS": json.dumps({"finance": {
            "mode": "auto", "tools": ["erp:*"], "may_write": True, "approvals": []}}),
        "UMIQ_TEST_PROMPT_LOG": str(tmp_path / "prompts.jsonl"),
        "UMIQ_LOG_FORMAT": "json",
    })  # fmt: skip
    assert umiq(env, "db", "upgrade").returncode == 0
    return env


@dataclass
class Run:
    kills: int
    restarts: list[float]
    wall: float

    def summary(self, targets: list[Target], what: str) -> str:
        hit = sum(any(s >= 0 for s in t.hits) for t in targets)
        twice = sum(sum(h >= 0 for h in t.hits) >= 2 for t in targets)
        return (
            f"\nchaos ({what}): {len(targets)} episodes, {self.kills} SIGKILLs, {hit} episodes "
            f"hit ({twice} twice), worker restart "
            f"{sum(self.restarts) / max(1, len(self.restarts)):.1f} s on average, "
            f"{self.wall:.0f} s in all (seed {SEED})"
        )


def run_with_kills(
    env: dict[str, str],
    targets: list[Target],
    envelopes: list[dict[str, Any]],
    audit: Audit,
    log_path: Path,
    *,
    deadline_s: float,
    ready_timeout: float = 180,
) -> Run:
    """Send the tasks to a real worker and SIGKILL it at each target's kill points (a new
    worker after each kill) until every task has its outcome."""
    by_id = {t.task_id: t for t in targets}
    client = create_app(Settings(data_dir=Path(env["UMIQ_DATA_DIR"]).parent / "client",
                                 broker_url=env["UMIQ_BROKER_URL"],
                                 database_url=env["UMIQ_DATABASE_URL"], queue=env["UMIQ_QUEUE"],
                                 dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"]))  # fmt: skip
    kills, restarts = 0, []
    started = time.monotonic()

    def new_worker() -> WorkerProcess:  # a node name of its own: no clash with the dead one
        name = f"chaos-{uuid.uuid4().hex[:8]}@%h"
        return WorkerProcess(env, log_path, ("--loglevel", "INFO", "--hostname", name),
                             ready_timeout=ready_timeout)  # fmt: skip

    worker = new_worker()
    try:
        worker.start()
        for envelope in envelopes:
            client.send_task(TASK_NAME, args=[envelope])
        deadline = time.monotonic() + deadline_s
        while True:
            assert time.monotonic() < deadline, "the episodes did not all end in time"
            assert worker.alive, worker.log_text()[-3000:]
            progress = audit.progress()
            mine = {t: p for t, p in progress.items() if t in by_id}
            if len(mine) == len(by_id) and all(ended for _, ended in mine.values()):
                break
            due = [
                by_id[t] for t, (steps, ended) in mine.items() if not ended and by_id[t].due(steps)
            ]
            if not due:
                time.sleep(0.05)
                continue
            time.sleep(due[0].delay)  # the random point inside or after the step
            running = audit.running(by_id)
            if due[0].task_id not in running:  # it ended inside the delay: no kill
                due[0].hits.append(-1)
                continue
            if any(len(by_id[t].hits) >= MAX_HITS for t in running):
                due[0].hits.append(-1)  # spared: a neighbour was hit often enough
                continue
            worker.stop(kill=True)  # SIGKILL: unacked messages go back to the queue
            kills += 1
            for task_id in running:
                by_id[task_id].hits.append(mine.get(task_id, (0, False))[0])
            begun = time.monotonic()
            worker = new_worker()
            worker.start()
            restarts.append(time.monotonic() - begun)
        return Run(kills, restarts, time.monotonic() - started)
    finally:
        worker.stop()
        client.close()


def check_trail(target: Target, steps: list[dict[str, Any]], prompts: list[dict[str, Any]]) -> None:
    """One outcome, last; a resume step per run after a kill, replaying every step before
    it; no recorded plan asked of the model again (but the one in flight at a kill)."""
    kinds = [s["kind"] for s in steps]
    assert kinds.count("outcome") == 1 and kinds[-1] == "outcome", (target, kinds)
    resumes = [s for s in steps if s["details"].get("policy") == "resume"]
    assert len(resumes) <= sum(h >= 0 for h in target.hits), (target, resumes)
    if any(h > 0 for h in target.hits):
        assert resumes, (target.task_id, target.hits, kinds)
        first = steps.index(resumes[0])
        assert resumes[0]["details"]["replayed"] == first, (target.task_id, first)
    asked = [p["prompt"] for p in prompts
             if p["task_id"] == target.task_id and p["role"] == "planner"]  # fmt: skip
    assert len(set(asked)) == kinds.count("planner"), (target.task_id, len(asked))
    assert len(asked) <= kinds.count("planner") + len(target.hits), target.task_id


def check_no_dead_letter_and_chain(env: dict[str, str]) -> None:
    letters = umiq(env, "dlq", "list", "--json")
    assert letters.returncode == 0, letters.stderr
    assert letters.stdout.strip() == "", letters.stdout
    verified = umiq(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_random_sigkills_over_many_episodes_lose_nothing_and_write_once(
    tmp_path: Path, amqp_url: str, postgres_url: str, queue_names: tuple[str, str], erp: Any
) -> None:
    """Every episode is killed at a seeded random point (some twice): each task ends
    answered, each write is made once in the ERP, each hit task resumed by replay on the
    chain, no dead letter, and the chain verifies."""
    rng = random.Random(SEED)
    env = chaos_env(tmp_path, amqp_url, postgres_url, queue_names, erp.url)
    env.update({
        "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
        "UMIQ_TEST_GENERATION_DELAY": str(DELAY),
        "UMIQ_MAX_STEPS": "6",
    })  # fmt: skip
    episodes = plan_episodes(erp.url, rng, EPISODES)
    audit = Audit(postgres_url)
    try:
        run = run_with_kills(env, list(episodes), [e.envelope() for e in episodes], audit,
                             tmp_path / "worker.log", deadline_s=120 + 60 * EPISODES)  # fmt: skip
        print(run.summary(list(episodes), "scripted model"))
        payments = {
            e.invoice["id"]: httpx.get(
                f"{erp.url}/payments", params={"invoice_id": e.invoice["id"]}
            ).json()
            for e in episodes
            if e.write == "schedule_payment"
        }
        credits = httpx.get(f"{erp.url}/credit-notes").json()
        prompts = [json.loads(line) for line in (tmp_path / "prompts.jsonl").open()]
        for episode in episodes:
            steps = audit.steps(episode.task_id)
            check_trail(episode, steps, prompts)
            assert steps[-1]["details"]["outcome"] == "answered", (episode, steps[-1])
            # each call once, under its own key, in the script's order
            calls = audit.tool_calls(episode.task_id)
            assert [tool for tool, _ in calls] == ["get_invoice", episode.write, "get_invoice"]
            assert len({key for _, key in calls}) == 3, calls
            # the ERP holds the write once
            if episode.write == "schedule_payment":
                assert len(payments[episode.invoice["id"]]) == 1, payments[episode.invoice["id"]]
            else:
                mine = [c for c in credits if c.get("reason") == episode.credit_reason]
                assert len(mine) == 1, (episode.task_id, mine)
        # every episode was cut off at least once mid-run
        assert len([e for e in episodes if any(s >= 0 for s in e.hits)]) == len(episodes), [
            (e.task_id, e.hits) for e in episodes
        ]
    finally:
        audit.close()
    check_no_dead_letter_and_chain(env)


SHIPPED = int(os.environ.get("UMIQ_CHAOS_SHIPPED") or 0)
#: Requests in the shipped adapters' training phrasings (Acme's task families): a read,
#: a payment and a credit note; the episodes take them in turn.
SHIPPED_QUERIES = (
    "What is the status of invoice {invoice}?",
    "Please schedule payment of invoice {invoice} for {date}.",
    "Does {invoice} charge more than ordered? Credit the difference on {date}.",
)
#: The ERP's write endpoints, listed to count what the episodes wrote.
WRITES = {"schedule_payment": "/payments", "create_credit_note": "/credit-notes"}


def erp_writes(erp_url: str) -> dict[str, int]:
    return {tool: len(httpx.get(erp_url + path).json()) for tool, path in WRITES.items()}


@pytest.mark.real_model
@pytest.mark.timeout(2400 + 600 * SHIPPED)
@pytest.mark.skipif(not SHIPPED, reason="UMIQ_CHAOS_SHIPPED=N runs N episodes (slow on a CPU)")
def test_random_sigkills_with_the_shipped_model_lose_nothing_and_write_once(
    tmp_path: Path,
    amqp_url: str,
    postgres_url: str,
    queue_names: tuple[str, str],
    erp: Any,
    model_dir: Path,
) -> None:
    """With the shipped adapters deciding each step, every episode killed at a seeded
    random point ends once, each write the ERP holds is one recorded call, each hit task
    shows its replay, nothing is dead-lettered and the chain verifies."""
    rng = random.Random(SEED)
    env = chaos_env(tmp_path, amqp_url, postgres_url, queue_names, erp.url)
    env.update({
        "UMIQ_MODEL_DIR": str(model_dir),
        "UMIQ_ROLE_MODEL": "tests.support.scripted:recording_factory",  # the shipped set
        "UMIQ_MAX_STEPS": "6",
    })  # fmt: skip
    invoices = [i for i in httpx.get(f"{erp.url}/invoices").json() if i["status"] == "open"]
    tag = uuid.uuid4().hex[:6]
    targets, envelopes = [], []
    for n in range(SHIPPED):
        invoice = invoices[n % len(invoices)]
        query = SHIPPED_QUERIES[n % len(SHIPPED_QUERIES)]
        # Kill points among the first steps, which every episode reaches; a delay of up
        # to a few seconds lands inside a generation on this CPU.
        first = rng.randint(1, 4)
        points = [(first, rng.uniform(0, 3.0))]
        if rng.random() < 1 / 3:
            points.append((first + rng.randint(1, 3), rng.uniform(0, 3.0)))
        targets.append(Target(task_id=f"chaos-shipped-{tag}-{n:02d}", kill_points=points))
        envelopes.append({
            "task_id": targets[-1].task_id,
            "department": "finance",
            "query": query.format(invoice=invoice["id"], date=invoice["due_date"]),
            "requested_by": "chaos-test",
        })  # fmt: skip
    before = erp_writes(erp.url)
    audit = Audit(postgres_url)
    try:
        run = run_with_kills(env, targets, envelopes, audit, tmp_path / "worker.log",
                             deadline_s=600 + 600 * SHIPPED, ready_timeout=600)  # fmt: skip
        print(run.summary(targets, "shipped model"))
        prompts = [json.loads(line) for line in (tmp_path / "prompts.jsonl").open()]
        ok_writes = dict.fromkeys(WRITES, 0)
        for target in targets:
            steps = audit.steps(target.task_id)
            check_trail(target, steps, prompts)
            print(f"  {target.task_id}: hits {target.hits}, "
                  f"{steps[-1]['details'].get('outcome')}, {len(steps)} steps")  # fmt: skip
            for tool, effect, ok in audit.calls(target.task_id):
                if effect == "write" and ok and tool in ok_writes:
                    ok_writes[tool] += 1
        # each write the ERP holds now is one recorded call: none made twice
        after = erp_writes(erp.url)
        assert {t: after[t] - before[t] for t in WRITES} == ok_writes, (before, after)
        # every episode was cut off at least once mid-run
        assert all(any(s >= 0 for s in t.hits) for t in targets), [t.hits for t in targets]
    finally:
        audit.close()
    check_no_dead_letter_and_chain(env)

"""The broker's own dead letters: where they go and how they are described (no broker)."""

from __future__ import annotations

import json

from worker.broker_letters import broker_reason, claimed_task_id, intake_queue
from worker.celery_app import DEAD_LETTER_EXCHANGE, dead_letter_queue, task_queue
from worker.settings import Settings


def test_the_work_queue_dead_letters_to_the_intake_not_the_dlq() -> None:
    """The work queue's dead-letter key leads to the intake; the DLQ is bound to nothing."""
    settings = Settings(queue="umiq.t", dead_letter_queue="umiq.t.dead")
    arguments = task_queue(settings).queue_arguments
    intake = intake_queue(settings)
    assert (arguments["x-dead-letter-exchange"], arguments["x-dead-letter-routing-key"]) == (
        intake.exchange.name,
        intake.routing_key,
    )
    assert intake.exchange.name == DEAD_LETTER_EXCHANGE and intake.name == "umiq.t.dead.unsealed"
    assert dead_letter_queue(settings).exchange.name == ""  # reached by its name only


def test_the_reason_names_the_brokers_cause_and_queue() -> None:
    """x-death's reason and queue make the letter's reason; missing ones say unknown."""
    headers = {"x-death": [{"reason": "delivery_limit", "queue": "umiq.finance", "count": 1}]}
    assert broker_reason(headers) == (
        "dead-lettered by the broker (delivery_limit) from queue umiq.finance"
    )
    assert broker_reason({}) == "dead-lettered by the broker (unknown) from queue unknown"


def test_the_task_id_is_read_from_a_celery_body_or_a_bare_envelope() -> None:
    """A Celery body's first argument and a bare envelope both name their task; junk none."""
    celery = json.dumps([[{"task_id": "t-1", "query": "x"}], {}, {}]).encode()
    assert claimed_task_id(celery) == "t-1"
    assert claimed_task_id(json.dumps({"task_id": "t-2"}).encode()) == "t-2"
    assert claimed_task_id(b"\xff not json") is None
    assert claimed_task_id(json.dumps({"task_id": "bad id\n"}).encode()) is None

"""The Celery application: JSON only, late acks, durable work queues plus a dead-letter
queue: one queue for every task, or, with ``department_queues``, one per department
(``worker.rollout.queues`` decides which; the router sends each task to its own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu import Exchange, Queue

from worker.rollout.queues import department_queue, department_queues
from worker.settings import Settings, get_settings
from worker.task_repr import redact_headers

TASK_NAME = "umiq.run_task"
RESUME_TASK_NAME = "umiq.resume_task"
DEAD_LETTER_EXCHANGE = "umiq.dlx"


def task_queue(settings: Settings, name: str | None = None) -> Queue:
    """The work queue ``name`` (default: the one queue); on RabbitMQ, rejected messages
    dead-letter to the DLQ. Every department's queue is declared alike.

    A quorum queue counts each message's deliveries: the worker dead-letters one that
    came back more than ``max_redeliveries`` times (``worker.messages``), and RabbitMQ
    itself one more delivery later, should the worker die before it can.
    """
    arguments: dict[str, object] = {
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": settings.dead_letter_queue,
    }
    if settings.queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
        arguments["x-delivery-limit"] = settings.max_redeliveries + 2
    name = name or settings.queue
    return Queue(
        name,
        Exchange("umiq", type="direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments=arguments,
    )


def route_options(settings: Settings, department: str | None) -> dict[str, Any]:
    """``send_task`` options that put a task of ``department`` on its queue."""
    return {"queue": task_queue(settings, department_queue(settings, department))}


def task_router(settings: Settings) -> Any:
    """Celery's router: a task to its department's queue (the envelope's ``department``);
    a resume sent without a queue, and anything else, to the one queue."""

    def route(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> dict[str, Any]:
        department = None
        if name == TASK_NAME and args and isinstance(args[0], Mapping):
            value = args[0].get("department")
            department = value if isinstance(value, str) else None
        return route_options(settings, department)

    return route


def dead_letter_queue(settings: Settings) -> Queue:
    """Where refused messages are kept, sealed, with the reason in a header.

    Reached through the default exchange only, so that nothing but a worker's sealed
    letter lands there: the broker's own dead letters (``umiq.dlx``) go to an intake the
    worker seals from (``worker.broker_letters``).
    """
    return Queue(
        settings.dead_letter_queue,
        Exchange(""),
        routing_key=settings.dead_letter_queue,
        durable=True,
    )


@before_task_publish.connect
def _redact_reprs(body: Any = None, headers: Any = None, **_: Any) -> None:
    """Every task this process publishes says only its task id and department in
    ``argsrepr``/``kwargsrepr`` (``worker.task_repr``), never the request text."""
    redact_headers(headers, body)


def create_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app for ``settings`` (embedded SQLite broker when none is set)."""
    settings = settings or get_settings()
    if settings.broker_url is None or settings.database_url is None:
        settings.ensure_dirs()
    app = Celery(
        "umiq", broker=settings.resolved_broker_url, backend=settings.resolved_result_backend
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[
            task_queue(settings),
            *(task_queue(settings, q) for q in dict.fromkeys(department_queues(settings).values())),
        ],
        task_default_queue=settings.queue,
        task_default_exchange="umiq",
        task_default_routing_key=settings.queue,
        task_routes=(task_router(settings),),
        task_track_started=True,
        # Not extended: the result backend would keep each task's arguments (the raw
        # envelope, personal data included) in plain text. Results hold tokens only.
        result_extended=False,
        broker_connection_retry_on_startup=True,
        # A results database that is down is retried with backoff (about 10 minutes in
        # all), not given up on at once with the task's message left unacked.
        result_backend_always_retry=True,
        result_backend_max_retries=12,
        result_backend_base_sleep_between_retries_ms=500,
        result_backend_max_sleep_between_retries_ms=60_000,
        broker_heartbeat=settings.broker_heartbeat,
        # Publisher confirms on AMQP; the SQLAlchemy transport passes its options to
        # create_engine and takes none of these.
        broker_transport_options=(
            {"confirm_publish": True} if settings.resolved_broker_url.startswith("amqp") else {}
        ),
        worker_consumer="worker.consumer:UmiqConsumer",
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        database_create_tables_at_setup=True,
        # the tasks, and the control commands that pause a department's queue
        imports=["worker.tasks", "worker.rollout.queues"],
    )
    from worker.login_gate import LoginGate

    # Before the consumer takes anything: no worker on a login that can rewrite the audit log.
    app.steps["worker"].add(LoginGate)
    if settings.resolved_broker_url.startswith(("amqp", "pyamqp")):  # RabbitMQ dead-letters
        from worker.broker_letters import SealBrokerDeadLetters

        app.steps["consumer"].add(SealBrokerDeadLetters)
    return app


app = create_app()

"""Prometheus metrics of a worker, served on ``UMIQ_METRICS_PORT`` (off by default).

The audit log is the event history (DESIGN §5), so the counters follow it: every step and
tool call the worker appends moves them *after* it is committed, from one wrapper around
the process's audit log; a second wrapper around the role model times each generation
and counts its tokens. Episodes, policies and connectors know nothing of metrics.

======================================  ==============================================
``umiq_tasks_received_total``           tasks recorded, by department
``umiq_tasks_total``                    tasks that ended, by department, mode, outcome
``umiq_tasks_running``                  Celery tasks running in this worker now
``umiq_step_duration_seconds``          role-model generation latency, by role
``umiq_tokens_total``                   tokens, by role and kind (prompt, completion)
``umiq_generation_batch_size``          requests per role-model call
``umiq_policy_refusals_total``          refused calls and held answers, by department
                                        and policy
``umiq_approvals_requested_total``      calls sent to a human, by department
``umiq_connector_calls_total``          connector calls, by tool and outcome (ok, error)
``umiq_connector_errors_total``         failed connector calls, by tool
``umiq_approvals_waiting``              calls waiting for a human now, by department
``umiq_held_answers_waiting``           answers held for review now, by department
``umiq_queue_messages``                 messages ready in a queue (work queues, DLQ)
``umiq_queue_consumers``                consumers of a queue
``umiq_model_info``                     the model version this worker serves
======================================  ==============================================

The waiting and queue gauges are read at scrape time from the audit log and the broker,
at most once per ``UMIQ_METRICS_SCAN_S`` seconds (the figures in between are the last
ones read). Metrics never fail a task: an error while counting is logged and dropped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.audit.events import OutcomeDetails, PolicyDetails, details_of
from worker.audit.protocol import AuditLogProtocol
from worker.settings import Settings

log = structlog.get_logger("umiq.metrics")

UNKNOWN = "unknown"

TASKS_RECEIVED = Counter(
    "umiq_tasks_received", "Tasks recorded in the audit log, by department", ["department"]
)
TASKS = Counter(
    "umiq_tasks",
    "Tasks that ended (or stopped to wait for a human), by department, rollout mode and "
    "outcome (answered, held, gave_up, step_limit, awaiting_approval, rejected, ...)",
    ["department", "mode", "outcome"],
)
TASKS_RUNNING = Gauge("umiq_tasks_running", "Celery tasks running in this worker now")
STEP_SECONDS = Histogram(
    "umiq_step_duration_seconds",
    "Role-model generation latency, by role",
    ["role"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
TOKENS = Counter("umiq_tokens", "Tokens, by role and kind (prompt, completion)", ["role", "kind"])
BATCH_SIZE = Histogram(
    "umiq_generation_batch_size",
    "Requests per role-model generate call",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
POLICY_REFUSALS = Counter(
    "umiq_policy_refusals",
    "Policy decisions that refused a call or held an answer, by department and policy",
    ["department", "policy"],
)
APPROVALS_REQUESTED = Counter(
    "umiq_approvals_requested", "Calls sent to a human for approval, by department", ["department"]
)
CONNECTOR_CALLS = Counter(
    "umiq_connector_calls", "Connector calls, by tool and outcome (ok, error)", ["tool", "outcome"]
)
CONNECTOR_ERRORS = Counter(
    "umiq_connector_errors", "Connector calls that failed, by tool", ["tool"]
)
MODEL_INFO = Info("umiq_model", "The role model this worker serves")


def _label(value: Any) -> str:
    return str(value) if value else UNKNOWN


def _department() -> str:
    return _label(structlog.contextvars.get_contextvars().get("department"))


def _safely(what: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as exc:  # counting must never fail a task
        log.warning("metrics.error", what=what, error=f"{type(exc).__name__}: {exc}")


# -- the audit log's events ------------------------------------------------------------


def observe_step(step: dict[str, Any], department: str, mode: str) -> None:
    """Count one committed ``step`` row (the keyword arguments of ``append_step``)."""
    kind = step.get("kind")
    event = details_of({"kind": kind, "details": step.get("details") or {}})
    if isinstance(event, OutcomeDetails):
        TASKS.labels(department, mode, _label(event.outcome)).inc()
    elif kind == "rejected":
        TASKS.labels(department, mode, "rejected").inc()
    elif isinstance(event, PolicyDetails) and event.allowed is False:
        if event.policy == "connector":  # the system was down: no call committed
            CONNECTOR_CALLS.labels(_label(event.tool), "error").inc()
            CONNECTOR_ERRORS.labels(_label(event.tool)).inc()
        elif event.is_approval_request:
            APPROVALS_REQUESTED.labels(department).inc()
        else:
            POLICY_REFUSALS.labels(department, _label(event.policy)).inc()


def observe_tool_call(call: dict[str, Any]) -> None:
    """Count one committed ``tool_call`` row (the keyword arguments of ``append_tool_call``)."""
    tool = _label(call.get("tool"))
    if call.get("ok"):
        CONNECTOR_CALLS.labels(tool, "ok").inc()
    else:
        CONNECTOR_CALLS.labels(tool, "error").inc()
        CONNECTOR_ERRORS.labels(tool).inc()


class MeteredAuditLog:
    """An audit log whose appends move the counters once they are committed."""

    def __init__(self, inner: AuditLogProtocol, settings: Settings) -> None:
        self.inner = inner
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _mode(self, department: str) -> str:
        # the task's rollout mode, bound when it was decided (worker.tasks)
        bound = structlog.contextvars.get_contextvars().get("rollout_mode")
        if bound:
            return _label(bound)
        dept = self.settings.departments.get(department)
        return dept.mode if dept is not None else UNKNOWN

    def append_task(self, **kwargs: Any) -> Any:
        record = self.inner.append_task(**kwargs)
        _safely("task", lambda: TASKS_RECEIVED.labels(_label(kwargs.get("department"))).inc())
        return record

    def append_step(self, **kwargs: Any) -> Any:
        record = self.inner.append_step(**kwargs)

        def count() -> None:
            department = _department()
            observe_step(kwargs, department, self._mode(department))

        _safely("step", count)
        return record

    def append_tool_call(self, **kwargs: Any) -> Any:
        record = self.inner.append_tool_call(**kwargs)
        _safely("tool_call", lambda: observe_tool_call(kwargs))
        return record


# -- the role model --------------------------------------------------------------------


class MeteredRoleModel:
    """A role model whose generations are timed and whose tokens are counted, by role."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        _safely("model_info", self._info)

    def _info(self) -> None:
        described = self.inner.describe()
        MODEL_INFO.info(
            {
                "version": _label(described.get("version")),
                "base": _label(described.get("base")),
            }
        )

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        started = time.perf_counter()
        generations = self.inner.generate(requests)
        elapsed = time.perf_counter() - started

        def count() -> None:
            BATCH_SIZE.observe(len(requests))
            for request, generation in zip(requests, generations, strict=False):
                STEP_SECONDS.labels(request.role).observe(elapsed)
                TOKENS.labels(request.role, "prompt").inc(generation.prompt_tokens)
                TOKENS.labels(request.role, "completion").inc(generation.completion_tokens)

        _safely("generation", count)
        return generations

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# -- read at scrape time ---------------------------------------------------------------


def waiting_by_department(
    audit: AuditLogProtocol, limit: int = 500
) -> tuple[dict[str, int], dict[str, int]]:
    """Calls waiting for approval and answers held for review, by department, among the
    ``limit`` most recent tasks (one scan of the log, as ``umiq approvals list`` reads it)."""
    from worker.gates import waiting

    approvals: dict[str, int] = {}
    held: dict[str, int] = {}
    for wait in waiting(audit, limit=limit):
        counts = approvals if wait.kind == "call" else held
        counts[wait.department] = counts.get(wait.department, 0) + 1
    return approvals, held


def work_queues(settings: Settings) -> list[str]:
    """The queues a deployment with these settings uses: its own, the departments', the DLQ."""
    from worker.rollout.queues import department_queues

    names = [settings.queue]
    names += list(department_queues(settings).values())
    names.append(settings.dead_letter_queue)
    return list(dict.fromkeys(names))


def queue_depths(broker_url: str, queues: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{queue: (messages ready, consumers)}`` for the queues that exist on the broker."""
    from kombu import Connection

    depths: dict[str, tuple[int, int]] = {}
    with Connection(broker_url, connect_timeout=5) as conn:
        for name in queues:
            channel = conn.channel()
            try:
                _, messages, consumers = channel.queue_declare(name, passive=True)
                depths[name] = (int(messages), int(consumers))
            except Exception:  # not declared (yet): no worker has served it
                continue
            finally:
                with contextlib.suppress(Exception):  # a 404 already closed it
                    channel.close()
    return depths


class OpsCollector(Collector):
    """Gauges read from the audit log and the broker, at most once per ``interval`` s."""

    def __init__(
        self, settings: Settings, audit: Callable[[], AuditLogProtocol], interval: float
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.interval = interval
        self._lock = threading.Lock()
        self._at: float | None = None
        self._waiting: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self._queues: dict[str, tuple[int, int]] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._at is not None and now - self._at < self.interval:
            return
        self._at = now
        try:
            self._waiting = waiting_by_department(self.audit())
        except Exception as exc:
            log.warning("metrics.scan_failed", what="audit", error=str(exc))
        try:
            self._queues = queue_depths(
                self.settings.resolved_broker_url, work_queues(self.settings)
            )
        except Exception as exc:
            log.warning("metrics.scan_failed", what="broker", error=str(exc))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            self._refresh()
            approvals, held = self._waiting
            queues = dict(self._queues)
        departments = sorted(set(self.settings.departments) | set(approvals) | set(held))
        waiting = GaugeMetricFamily(
            "umiq_approvals_waiting", "Calls waiting for a human now", labels=["department"]
        )
        holding = GaugeMetricFamily(
            "umiq_held_answers_waiting", "Answers held for review now", labels=["department"]
        )
        for department in departments:
            waiting.add_metric([department], approvals.get(department, 0))
            holding.add_metric([department], held.get(department, 0))
        messages = GaugeMetricFamily(
            "umiq_queue_messages", "Messages ready in a queue", labels=["queue"]
        )
        consumers = GaugeMetricFamily(
            "umiq_queue_consumers", "Consumers of a queue", labels=["queue"]
        )
        for name, (ready, count) in sorted(queues.items()):
            messages.add_metric([name], ready)
            consumers.add_metric([name], count)
        yield from (waiting, holding, messages, consumers)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # read lazily: registering must not scan the log or the broker


# -- turning it on ---------------------------------------------------------------------

_state: dict[str, Any] = {}
_state_lock = threading.Lock()


def enabled() -> bool:
    """True once :func:`serve` started the endpoint in this process."""
    return "server" in _state


def meter_audit(audit: AuditLogProtocol, settings: Settings) -> AuditLogProtocol:
    """``audit`` counted, when metrics are on in this process; else ``audit`` itself."""
    return MeteredAuditLog(audit, settings) if enabled() else audit


def meter_model(model: Any) -> Any:
    """``model`` timed and counted, when metrics are on in this process; else itself."""
    return MeteredRoleModel(model) if enabled() else model


def _connect_signals() -> None:
    from celery.signals import task_postrun, task_prerun

    def started(**_: Any) -> None:
        TASKS_RUNNING.inc()

    def finished(**_: Any) -> None:
        TASKS_RUNNING.dec()

    task_prerun.connect(started, weak=False)
    task_postrun.connect(finished, weak=False)


def serve(settings: Settings) -> int:
    """Start the ``/metrics`` endpoint on ``settings.metrics_port`` (once per process).

    Returns the port it listens on (``0`` asks the system for a free one).
    """
    from worker import runtime

    if settings.metrics_port is None:
        raise ValueError("metrics are off: set UMIQ_METRICS_PORT")
    with _state_lock:
        if "server" not in _state:
            REGISTRY.register(OpsCollector(settings, runtime.audit_log, settings.metrics_scan_s))
            _connect_signals()
            server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_addr)
            _state["server"] = server
            log.info(
                "metrics.serving",
                addr=settings.metrics_addr,
                port=server.server_port,
                path="/metrics",
            )
        return int(_state["server"].server_port)

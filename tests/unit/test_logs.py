"""Structured logs: JSON off a terminal, with the task context bound on every line."""

from __future__ import annotations

import io
import json
import logging

import structlog

from worker.logs import configure, get_logger


def test_json_lines_carry_bound_context() -> None:
    """A line logged inside bound task context carries task_id, department and role."""
    stream = io.StringIO()
    configure("auto", "INFO", stream=stream)  # StringIO is not a terminal: JSON
    structlog.contextvars.clear_contextvars()
    with structlog.contextvars.bound_contextvars(
        task_id="t-9", department="finance", role="caller"
    ):
        get_logger("test").info("role.generated", tokens=3)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["task_id"] == "t-9"
    assert line["department"] == "finance"
    assert line["role"] == "caller"
    assert line["event"] == "role.generated"


def test_stdlib_logs_use_the_same_renderer() -> None:
    """Celery's and kombu's stdlib log records come out as JSON with the bound context."""
    stream = io.StringIO()
    configure("json", "INFO", stream=stream)
    with structlog.contextvars.bound_contextvars(task_id="t-10"):
        logging.getLogger("celery.worker").warning("connection lost")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "connection lost"
    assert line["task_id"] == "t-10"


def test_celery_pool_line_loses_the_task_arguments() -> None:
    """Celery's DEBUG 'TaskPool: Apply' line keeps its function but not the message it runs."""
    stream = io.StringIO()
    configure("json", "DEBUG", stream=stream)
    body = b'[[{"query": "pay Wilhelmina Zwartkop"}], {}, {}]'
    logging.getLogger("celery.pool").debug(
        "TaskPool: Apply %s (args:%s kwargs:%s)", "<fast_trace_task>", (body,), {}
    )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "TaskPool: Apply <fast_trace_task> (args:<redacted> kwargs:<redacted>)"

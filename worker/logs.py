"""structlog configuration: JSON when not on a terminal, context bound on every line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

Processor = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]
_extra_processors: list[Processor] = []


def add_redactor(processor: Processor) -> None:
    """Register a processor that runs before rendering (data minimization hooks in here)."""
    if processor not in _extra_processors:
        _extra_processors.append(processor)


class TaskArgumentsFilter(logging.Filter):
    """Takes the task's arguments out of Celery's pool line at DEBUG.

    ``TaskPool: Apply <fn> (args:… kwargs:…)`` (logger ``celery.pool``) prints what the
    pool is handed: the whole message, its body with the request text and any personal
    data in it, which the redactor can mask only where its detector sees it. The line
    keeps the function; the arguments become ``<redacted>``. Celery's other lines name a
    task by ``argsrepr`` (``worker.task_repr``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name == "celery.pool"
            and isinstance(record.msg, str)
            and record.msg.startswith("TaskPool: Apply")
            and isinstance(record.args, tuple)
            and record.args
        ):
            record.args = (record.args[0], *("<redacted>" for _ in record.args[1:]))
        return True


def configure(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Configure structlog and stdlib logging once for the process.

    ``fmt`` is ``json``, ``console`` or ``auto`` (console on a terminal, JSON otherwise).
    ``task_id``, ``department`` and ``role`` come from contextvars bound by the worker.
    """
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        *_extra_processors,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Route stdlib logging (celery, kombu, uvicorn) through the same renderer.
    handler = logging.StreamHandler(stream)
    handler.addFilter(TaskArgumentsFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; a query string can carry a resolved personal
    # value (GET /vendors?name=…), URL-encoded past the redactor. Connectors log their
    # calls themselves, without arguments.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def get_logger(name: str | None = None) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)

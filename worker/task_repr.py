"""What Celery may say about a task's arguments: its task id and department, nothing else.

Celery writes ``argsrepr`` and ``kwargsrepr`` into every task message's headers (where
the broker's management UI and any consumer read them) and into the worker's logs
("Task … received", "succeeded", failures). By default they are the ``repr`` of the
arguments: the whole envelope, the request text with whatever personal data it holds.
:func:`redacted_reprs` is what umiq puts there instead: the task id and the department,
taken only when they are well-formed, so no text of the request can ride along.
``worker.celery_app`` sets it on every publish; ``worker.consumer`` sets it again on
every message it receives, whoever sent it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The forms ``worker.envelope`` accepts: anything else is shown as ``?``.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_DEPARTMENT = re.compile(r"[a-z][a-z0-9_\-]{0,63}")
HEADERS = ("argsrepr", "kwargsrepr")


def _safe(value: Any, pattern: re.Pattern[str]) -> str:
    return value if isinstance(value, str) and pattern.fullmatch(value) else "?"


def _envelope(envelope: Any) -> str:
    fields = envelope if isinstance(envelope, Mapping) else {}
    task_id = _safe(fields.get("task_id"), _ID)
    department = _safe(fields.get("department"), _DEPARTMENT)
    return f"<envelope task_id={task_id} department={department}>"


def redacted_reprs(name: Any, args: Any, kwargs: Any) -> tuple[str, str]:
    """``(argsrepr, kwargsrepr)`` for task ``name`` called with ``args`` and ``kwargs``.

    ``umiq.run_task(envelope)`` shows the envelope's task id and department;
    ``umiq.resume_task(task_id, key)`` its task id (the key is ``task_id:step``); any
    other task only how many arguments it was given.
    """
    args = list(args) if isinstance(args, Sequence) and not isinstance(args, str) else []
    kwargs = dict(kwargs) if isinstance(kwargs, Mapping) else {}
    if name == "umiq.run_task":
        if "envelope" in kwargs:
            return "()", "{'envelope': " + _envelope(kwargs["envelope"]) + "}"
        shown = _envelope(args[0]) if args else ""
        return f"({shown},)" if shown else "()", "{}"
    if name == "umiq.resume_task":
        task_id = args[0] if args else kwargs.get("task_id")
        return f"(task_id={_safe(task_id, _ID)},)", "{}"
    return f"<{len(args)} argument(s) redacted>", f"<{len(kwargs)} keyword argument(s) redacted>"


def redact_headers(headers: Any, body: Any) -> None:
    """Set ``argsrepr``/``kwargsrepr`` of a protocol-2 message's ``headers`` (in place)
    from its decoded ``body`` (``[args, kwargs, embed]``)."""
    if not isinstance(headers, dict):
        return
    args: Any = []
    kwargs: Any = {}
    if isinstance(body, list | tuple) and len(body) >= 2:
        args, kwargs = body[0], body[1]
    headers["argsrepr"], headers["kwargsrepr"] = redacted_reprs(headers.get("task"), args, kwargs)

"""The role model of ``bench/episodes.py``'s workers: the real one, each call recorded.

``UMIQ_ROLE_MODEL=bench.timed_model:factory`` (the worker runs from the repository root,
so ``bench`` imports) wraps the role model the settings describe, on the backend
``UMIQ_MODEL_BACKEND`` names, or the plug-in that ``UMIQ_BENCH_INNER`` names (the
scripted model, to test the benchmark without a model). Every generation appends one
JSON line to the file ``UMIQ_BENCH_GENERATIONS`` names: the task, the role, when the call
began (``at``, epoch seconds) and how long it took (``ms``), its token counts and what
the backend reports of its cost (``queue_ms``, ``prompt_ms``, ``decode_ms``,
``cached_tokens``, ``batch``; absent where it reports nothing).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from worker.agent.roles import Generation, GenerationRequest, RoleModel

GENERATIONS_ENV = "UMIQ_BENCH_GENERATIONS"
INNER_ENV = "UMIQ_BENCH_INNER"
COSTS = ("queue_ms", "prompt_ms", "decode_ms", "cached_tokens", "batch")
"""The keys of a generation's ``extra`` that a record keeps."""


def record(
    request: GenerationRequest, gen: Generation, at: float, ms: float, task_id: str | None
) -> dict[str, Any]:
    """One generation as a line of the generations file."""
    costs = {k: gen.extra[k] for k in COSTS if gen.extra.get(k) is not None}
    return {
        "task_id": task_id,
        "role": request.role,
        "at": at,
        "ms": ms,
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        **costs,
    }


class TimedRoleModel:
    """Wraps a RoleModel; appends a record of every generation to a JSONL file."""

    def __init__(self, inner: RoleModel, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        at = time.time()
        started = time.perf_counter()
        out = self.inner.generate(requests)
        ms = round((time.perf_counter() - started) * 1000, 1)
        task_id = structlog.contextvars.get_contextvars().get("task_id")
        lines = [
            json.dumps(record(r, g, at, ms, task_id)) + "\n"
            for r, g in zip(requests, out, strict=True)
        ]
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.writelines(lines)
        return out

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def factory(settings: Any) -> TimedRoleModel:
    """``UMIQ_ROLE_MODEL=bench.timed_model:factory``."""
    from worker.models import load_plugin, load_role_model

    path = os.environ.get(GENERATIONS_ENV)
    if not path:
        raise RuntimeError(f"{GENERATIONS_ENV} names no file for the generation records")
    inner_name = os.environ.get(INNER_ENV)
    plain = settings.model_copy(update={"role_model": None})
    inner = load_plugin(inner_name, plain) if inner_name else load_role_model(plain)
    return TimedRoleModel(inner, path)

"""A role model for ``run_live`` tests: the expert's replay, keyed by the task's number.

``umiq eval live`` names its tasks ``eval-<run>-<NNN>`` with a run id it draws itself, so
the targets file that ``UMIQ_TEST_LIVE_REPLAY`` names maps ``NNN`` (``"001"``…) to each
role's targets (``examples.acme.replay.targets_of``); a task with no entry raises (the
worker records the failure). The task numbered ``UMIQ_TEST_LIVE_SLOW`` sleeps
``UMIQ_TEST_LIVE_SLOW_S`` seconds (default 60) before it answers, past a short timeout.
Plug it in with ``UMIQ_ROLE_MODEL=tests.support.live_replay:factory``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from examples.acme.replay import say
from worker.agent.roles import Generation, GenerationRequest

REPLAY_ENV = "UMIQ_TEST_LIVE_REPLAY"
SLOW_ENV = "UMIQ_TEST_LIVE_SLOW"
SLOW_S_ENV = "UMIQ_TEST_LIVE_SLOW_S"


class NumberedReplay:
    """Says what the expert said, for the task whose id ends in a number of the file."""

    def __init__(self, path: Path, slow: str | None, slow_s: float) -> None:
        self.path = path
        self.slow = slow
        self.slow_s = slow_s

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        task_id = str(structlog.contextvars.get_contextvars().get("task_id", ""))
        number = task_id.rsplit("-", 1)[-1]
        if number == self.slow:
            time.sleep(self.slow_s)
        table = json.loads(self.path.read_text(encoding="utf-8"))
        if number not in table:
            raise LookupError(f"no expert targets for task {task_id!r} in {self.path}")
        out = []
        for request in requests:
            text = say(request, table[number])
            out.append(Generation(text, len(request.prompt.split()), len(text.split()), "expert"))
        return out

    def describe(self) -> dict[str, Any]:
        return {"base": "expert-replay", "adapters": {}}


def factory(settings: Any) -> NumberedReplay:
    """``UMIQ_ROLE_MODEL=tests.support.live_replay:factory``."""
    return NumberedReplay(
        Path(os.environ[REPLAY_ENV]),
        os.environ.get(SLOW_ENV),
        float(os.environ.get(SLOW_S_ENV, "60")),
    )

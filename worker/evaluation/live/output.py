"""The result of a live run and its file, ``live.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.evaluation.live.scoring import LiveTask, summarize

LIVE_FILE = "live.json"
FORMAT_VERSION = 1


@dataclass
class LiveResult:
    """The evaluated tasks, their summary and how the run was set up."""

    tasks: list[LiveTask]
    run: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return summarize(self.tasks)

    def record(self) -> dict[str, Any]:
        """The ``live.json`` content."""
        return {
            "format": "umiq.eval.live",
            "version": FORMAT_VERSION,
            "run": self.run,
            "summary": self.summary,
            "tasks": [task.as_dict() for task in self.tasks],
        }

    def write(self, out: str | Path) -> Path:
        """Write ``live.json`` under ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / LIVE_FILE
        path.write_text(json.dumps(self.record(), indent=2, ensure_ascii=False), encoding="utf-8")
        return path

"""The rollout decision for one task (DESIGN §8): pure, the one place that reads a mode.

``decide`` turns a department's live settings and the task's key into a :class:`Rollout`:
the mode this task runs in, and why. Everything else (the task, the guard, the connector
gate) asks the decision, never the department's settings.

The percentage is sticky: a task key's bucket is a fixed number in [0, 100) drawn from a
hash of the department and the key, and the task runs ``auto`` when its bucket is below
the percentage. Raising the percentage therefore keeps every key that was already in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Mode = Literal["off", "shadow", "review", "auto"]
MODES: tuple[Mode, ...] = ("off", "shadow", "review", "auto")

REVIEW_REASON = "the department is in review mode: every write needs approval"
PERCENT_REASON = "this task is outside the department's auto share: every write needs approval"


def bucket(department: str, key: str) -> float:
    """The task key's fixed place in [0, 100): sha256 of department and key, 1/10,000 steps."""
    digest = hashlib.sha256(f"umiq-rollout\0{department}\0{key}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") % 10_000) / 100


def human_queue(department: str, configured: str | None = None) -> str:
    """The queue where a department's tasks wait for people."""
    return configured or f"umiq.human.{department}"


@dataclass(frozen=True)
class Rollout:
    """How one task runs: decided once, recorded on the task (its context's ``rollout``)."""

    department: str
    mode: Mode
    """The mode this task runs in."""
    configured: Mode
    """The department's mode when the task arrived."""
    reason: str
    version: int = 0
    """The version of the department's live settings (0: the defaults, never changed)."""
    percent: float = 100.0
    key: str | None = None
    bucket: float | None = None
    human_queue: str | None = None

    @property
    def runs_model(self) -> bool:
        """Whether the agent runs at all (not in ``off``)."""
        return self.mode != "off"

    @property
    def dry_run(self) -> bool:
        """Writes are validated and recorded, never sent (``shadow``)."""
        return self.mode == "shadow"

    @property
    def hold_writes(self) -> str:
        """Why every write waits for approval (``review``, or outside the auto share); ""."""
        if self.mode != "review":
            return ""
        return REVIEW_REASON if self.configured == "review" else PERCENT_REASON

    @property
    def to_humans(self) -> bool:
        """The task ends in the department's human queue (``off`` and ``shadow``)."""
        return self.mode in ("off", "shadow")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rollout:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})


def task_key(settings: Any, task_id: str, context: Mapping[str, Any] | None) -> str:
    """The key a task is bucketed by: the context field ``bucket_by`` names, else its id."""
    field = getattr(settings, "bucket_by", None)
    if field and context and context.get(field) not in (None, ""):
        return f"{field}={context[field]}"
    return task_id


def decide(
    department: str,
    settings: Any,
    *,
    key: str,
    version: int = 0,
) -> Rollout:
    """The mode a task of ``department`` with ``key`` runs in, under ``settings`` (the
    department's live ``DepartmentSettings``; None: a department nobody configured)."""
    if settings is None:
        return Rollout(
            department, "off", "off", f"department {department!r} has no rollout settings"
        )
    configured: Mode = settings.mode
    queue = human_queue(department, getattr(settings, "human_queue", None))
    common = {"version": version, "human_queue": queue}
    if configured != "auto":
        why = {
            "off": "the department is off: people do its tasks",
            "shadow": "the department is in shadow: writes are dry-run, people do the task",
            "review": REVIEW_REASON,
        }[configured]
        return Rollout(department, configured, configured, why, **common)
    percent = float(getattr(settings, "percent", 100.0))
    if percent >= 100:
        return Rollout(department, "auto", "auto", "the department is in auto", **common)
    place = bucket(department, key)
    if place < percent:
        why = f"bucket {place:.2f} < {percent:g}%: auto"
        mode: Mode = "auto"
    else:
        why = f"bucket {place:.2f} >= {percent:g}%: review"
        mode = "review"
    return Rollout(department, mode, "auto", why, percent=percent, key=key, bucket=place, **common)

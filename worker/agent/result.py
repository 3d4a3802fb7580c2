"""How an episode ended: its outcome, answer and steps, as the worker returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal[
    "answered",
    "held",
    "gave_up",
    "step_limit",
    "refused",
    "failed",
    "awaiting_approval",
    "rejected",
]


@dataclass
class EpisodeStep:
    """One step as the CLI shows it."""

    index: int
    kind: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeResult:
    """How a task ended, its answer and the steps that led there."""

    task_id: str
    outcome: Outcome
    answer: str
    reason: str
    steps: list[EpisodeStep]
    tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The task's result as its producer receives it (``AuditLog.outcome`` reads a
        finished task back in the same shape)."""
        return {
            "task_id": self.task_id,
            "outcome": self.outcome,
            "answer": self.answer,
            "reason": self.reason,
            "tokens": self.tokens,
            "steps": [s.__dict__ for s in self.steps],
        }

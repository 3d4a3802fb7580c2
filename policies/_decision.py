"""The result of every policy check: allowed or not, and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """A policy's verdict with the reasons that led to it (always at least one)."""

    allowed: bool
    policy: str
    reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.reasons:
            raise ValueError("a policy decision must carry at least one reason")

    def as_dict(self) -> dict[str, object]:
        return {"allowed": self.allowed, "policy": self.policy, "reasons": list(self.reasons)}

"""The result of every policy check: allowed or not, and why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Decision:
    """A policy's verdict with the reasons that led to it (always at least one).

    ``details`` carries what a later step needs to act on the verdict (an approval
    decision's ``approvers``); it is recorded with the decision when not empty.
    """

    allowed: bool
    policy: str
    reasons: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.reasons:
            raise ValueError("a policy decision must carry at least one reason")

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "allowed": self.allowed,
            "policy": self.policy,
            "reasons": list(self.reasons),
        }
        if self.details:
            data["details"] = dict(self.details)
        return data

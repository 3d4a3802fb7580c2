"""One episode's steps as they go onto the audit chain.

Every step is appended before the next one starts: numbered in order, with the prompt's
digest, latency, model and adapter of the generation that wrote it, and the task's token
map sealed into the step whenever the map has grown. A set of policy decisions taken
together is one ``policy`` step, named by its deciding (last) decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import structlog

from policies import Decision
from worker.agent.guard import Guard
from worker.agent.result import EpisodeStep
from worker.agent.roles import Generation
from worker.audit.events import APPROVAL_REQUESTED
from worker.audit.protocol import AuditLogProtocol

log = structlog.get_logger("umiq.agent")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Trail:
    """The audit steps of one task's episode: the step counter, the steps so far, and
    how much of the token map is sealed on the chain."""

    def __init__(self, audit: AuditLogProtocol, task_id: str, guard: Guard) -> None:
        self.audit = audit
        self.task_id = task_id
        self.guard = guard
        self.steps: list[EpisodeStep] = []
        self.index = 0
        """The index of the last step recorded (or replayed)."""
        self.sealed_tokens = 0
        """How many tokens of the guard's map the chain holds sealed."""
        self._last: tuple[str, int, Generation] | None = None

    def generated(self, prompt: str, latency_ms: int, gen: Generation) -> None:
        """The generation the next step of a role records (its prompt's digest and latency)."""
        self._last = (digest(prompt), latency_ms, gen)

    def replayed(self, steps: list[EpisodeStep], index: int) -> None:
        """Go on after ``steps`` replayed from the chain; the token map so far is sealed."""
        self.steps = steps
        self.index = index
        self.sealed_tokens = len(self.guard.mapping())

    def step(
        self,
        kind: str,
        role: str | None,
        output: str,
        details: dict[str, Any],
        sealed: dict[str, Any] | None = None,
    ) -> None:
        """Append the next step; a role's step carries its generation's record."""
        self.index += 1
        prompt_digest, latency_ms, gen = (None, None, None)
        if role is not None:
            assert self._last is not None, "a role's step follows its generation"
            prompt_digest, latency_ms, gen = self._last
        extra = {"sealed": sealed} if sealed else {}
        self.audit.append_step(
            task_id=self.task_id,
            index=self.index,
            kind=kind,
            role=role,
            prompt_digest=prompt_digest,
            output=output,
            details=details,
            latency_ms=latency_ms,
            model=gen.model if gen else None,
            adapter=gen.adapter if gen else None,
            **extra,
        )
        self.steps.append(EpisodeStep(self.index, kind, output, details))

    def decisions(
        self,
        decisions: Sequence[Decision],
        tool: str | None,
        *,
        extra: dict[str, Any] | None = None,
        sealed: dict[str, Any] | None = None,
    ) -> None:
        """One policy step for the decisions taken together, each with its reasons.

        ``policy`` and ``allowed`` are those of the deciding (last) decision; the token
        map rides along, sealed, whenever it has grown.
        """
        sealed = dict(sealed or {})
        mapping = self.guard.mapping()
        if len(mapping) > self.sealed_tokens:
            sealed["tokens"] = mapping
            self.sealed_tokens = len(mapping)
        last = decisions[-1]
        details = {
            "policy": last.policy,
            "allowed": last.allowed,
            "reasons": [r for d in decisions for r in d.reasons],
            "decisions": [d.as_dict() for d in decisions],
            "tool": tool,
            **(extra or {}),
        }
        waiting = extra is not None and extra.get("status") == APPROVAL_REQUESTED
        output = "awaiting approval" if waiting else "allowed" if last.allowed else "denied"
        self.step("policy", None, output, details, sealed or None)
        if not last.allowed:
            log.warning("policy.denied", policy=last.policy, tool=tool, reasons=list(last.reasons))

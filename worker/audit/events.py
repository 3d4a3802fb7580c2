"""The audit events: each step kind and the ``details`` payload its rows hold, defined once.

A ``step`` row's ``details`` is stored as canonical JSON and covered by the chain hash,
so its keys are a stored format. The dataclasses below name that format; readers turn a
step's ``details`` into one with :func:`details_of` and read attributes instead of
string keys, and writers build one and store ``to_details()``.

Both directions are exact: ``from_details(d).to_details() == d`` for every row written
so far (``tests/unit/test_audit_fixture_chain.py`` checks a chain written before these
types existed). A key that a row does not hold stays absent, a key it holds as ``null``
stays ``null``, and a key the type does not name is kept in ``extra`` (sealed entries
such as a policy step's ``query`` and ``tokens`` are there, as envelopes or as the
reader's concealed or opened value).

``VERSION`` is the payload version these types read and write: version 1 is every row
written so far. A change to a payload's keys is a new version with a reader of both;
rows are never rewritten.

    PlannerDetails      planner   where the plan goes next (``next``), the tools shown
    CallerDetails       caller    the call written (``tool``, ``arguments``) or ``error``
    SummarizerDetails   summarizer  nothing: the answer is the step's ``output``
    ToolDetails         tool      whether the call succeeded (``ok``)
    PolicyDetails       policy    a policy decision, an approval request, a human's
                                  decision on it or on a held answer, or a verdict
    OutcomeDetails      outcome   how the episode ended and why (or went to people and
                                  what they did)
    RejectedDetails     rejected  a message refused before it ran (dead-lettered)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self, get_args

VERSION = 1
"""The version of the ``details`` payloads below (every row written so far is version 1)."""

StepKind = Literal["planner", "caller", "summarizer", "tool", "policy", "rejected", "outcome"]
"""What a ``step`` row records (``worker.audit.tables.STEP_KINDS``, the column's check)."""

STEP_KIND_NAMES: tuple[str, ...] = get_args(StepKind)

Outcome = Literal[
    "answered", "gave_up", "refused", "step_limit", "awaiting_approval", "held", "rejected"
]
"""How a task ends (an ``outcome`` step's ``outcome``)."""

APPROVAL_REQUESTED = "requested"
"""``status`` of the policy step that asks a human to approve a call."""
APPROVED, REJECTED, RELEASED = "approved", "rejected", "released"
"""``status`` of a human's decision: on a call (approved, rejected) or a held answer
(released, rejected)."""
DECIDED_CALL = (APPROVED, REJECTED)


@dataclass(frozen=True, kw_only=True)
class StepDetails:
    """The ``details`` of one step kind. Fields left ``None`` are not written unless the
    row they were read from held them (``present``); unnamed keys ride in ``extra``."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = VERSION

    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    present: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "present"))

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> Self:
        """The typed payload of a row's ``details``."""
        names = cls._names()
        known = {k: v for k, v in details.items() if k in names}
        extra = {k: v for k, v in details.items() if k not in names}
        return cls(**known, extra=extra, present=frozenset(known))

    def to_details(self) -> dict[str, Any]:
        """The ``details`` to store: exactly what ``from_details`` read, for a read payload."""
        out = {
            name: value
            for name in self._names()
            if (value := getattr(self, name)) is not None or name in self.present
        }
        return {**out, **self.extra}


@dataclass(frozen=True, kw_only=True)
class PlannerDetails(StepDetails):
    """A planner's (or the backbone's) decision; the thought is the step's ``output``."""

    KIND = "planner"
    next: str | None = None
    """``caller``, ``conclusion`` or ``give up``."""
    forced: str | None = None
    """Set when the loop, not the model, decided (``repeat``: a repeated call)."""
    tools_shown: list[str] | None = None
    """The tools the prompt showed (a compact prompt view shows some)."""
    named: dict[str, Any] | None = None
    """Set when the thought named a tool the step did not offer and the planner chose
    again among the offered ones (``worker.agent.named``): ``planner_wrote`` (the thought
    as first written; the step's ``output`` is the chosen one), ``not_offered`` (the
    name) and ``offered``."""
    recap: str | None = None
    """The start of the thought that the loop gave, not the model: the recap of the last
    observation (``umiq_protocol.recap_of``); the model wrote the rest."""


@dataclass(frozen=True, kw_only=True)
class CallerDetails(StepDetails):
    """The call the caller wrote (the text is the step's ``output``), or why it has none."""

    KIND = "caller"
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    error: str | None = None
    grounded: dict[str, dict[str, list[str]]] | None = None
    """Per tool and argument, the ids the caller's grammar admitted: those the task had
    seen (``worker.agent.grounding``; an empty list: an optional id filter withheld, no
    id of its form seen); absent when it narrowed nothing."""
    not_offered: list[str] | None = None
    """Tools the caller's grammar did not admit because the task had seen no id for a
    required id argument of theirs (``worker.agent.grounding``)."""
    planned_repeat: bool | None = None
    """True when no caller ran: the plan named a tool whose only admitted call repeats
    one that still stands, and the repeat guard refused it (``worker.agent.repeat``)."""


@dataclass(frozen=True, kw_only=True)
class SummarizerDetails(StepDetails):
    """Nothing: the answer is the step's ``output``."""

    KIND = "summarizer"


@dataclass(frozen=True, kw_only=True)
class ToolDetails(StepDetails):
    """A tool's observation (the step's ``output``) and whether the call succeeded."""

    KIND = "tool"
    ok: bool | None = None


@dataclass(frozen=True, kw_only=True)
class PolicyDetails(StepDetails):
    """A policy step: the checks of a call or answer, an approval request, a decision.

    The episode's steps name the deciding check (``policy``, ``allowed``), every check's
    reasons and ``decisions``, and the ``tool``; an approval request adds ``status``
    ``requested``, the call's ``key``, ``caller_step``, ``effect`` and ``arguments``. A
    human's decision is ``status`` approved/rejected (a call, with its ``key``) or
    released/rejected (a held answer, ``policy`` ``claims``), with ``by``. A verdict on a
    task's result is ``policy`` ``verdict`` with ``verdict``, ``source``, ``by`` and the
    sealed ``verdict_reasons``.
    """

    KIND = "policy"
    policy: str | None = None
    allowed: bool | None = None
    reasons: list[str] | None = None
    decisions: list[dict[str, Any]] | None = None
    tool: str | None = None
    status: str | None = None
    key: str | None = None
    caller_step: int | None = None
    effect: str | None = None
    arguments: dict[str, Any] | None = None
    by: str | None = None
    on_seq: int | None = None
    """A signed decision: the seq of the outcome step it answers (``worker.audit.decisions``)."""
    key_id: str | None = None
    """A signed decision: the id of the Ed25519 key that signed it."""
    signature: str | None = None
    """A signed decision: base64 of its Ed25519 signature."""
    verdict: str | None = None
    """A verdict step (``policy`` ``verdict``, ``worker.rollout.verdict``): pass or fail."""
    source: str | None = None
    """A verdict step: who judged, ``checker`` or ``human``."""
    verdict_reasons: Any = None
    """A verdict step: why, as a list of texts; sealed (they quote expected facts), so a
    stored row holds an envelope here until it is opened."""

    @property
    def is_approval_request(self) -> bool:
        return self.status == APPROVAL_REQUESTED

    def decides_call(self, key: str | None) -> bool:
        """Whether this is a human's decision (approved or rejected) on call ``key``."""
        return self.key == key and self.status in DECIDED_CALL

    @property
    def deciding(self) -> Mapping[str, Any]:
        """The deciding (last) check as recorded: ``decisions[-1]``, or the step itself."""
        return (self.decisions or [self.to_details()])[-1]


@dataclass(frozen=True, kw_only=True)
class OutcomeDetails(StepDetails):
    """How the episode ended (its answer is the step's ``output``) and why."""

    KIND = "outcome"
    outcome: str | None = None
    reason: str | None = None
    key: str | None = None
    """The call that waits, when the outcome is ``awaiting_approval`` (or was rejected)."""
    tokens: int | None = None
    queue: str | None = None
    """``not_automated``: the human queue the task went to (``worker.rollout.human``)."""
    mode: str | None = None
    """``not_automated`` / ``handled_by_human``: the rollout mode (``off``, ``shadow``)."""
    shadow_outcome: str | None = None
    """``not_automated`` in shadow: how the agent's shadow run ended."""
    by: str | None = None
    """``handled_by_human``: who did the task."""
    human_outcome: str | None = None
    """``handled_by_human``: what the person recorded (``worker.rollout.human``)."""
    human_writes: list[str] | None = None
    """``handled_by_human``: the tools of the person's writes."""
    agreement: dict[str, Any] | None = None
    """``handled_by_human``: the shadow run compared with the person (``outcome``,
    ``writes``, ``answer``, ``agree``: each a bool, or None where nothing compared)."""


@dataclass(frozen=True, kw_only=True)
class RejectedDetails(StepDetails):
    """A message refused before it ran; the reason is the step's ``output``."""

    KIND = "rejected"
    field: str | None = None
    message_sha256: str | None = None
    dead_letter_queue: str | None = None
    claimed_task_id: str | None = None
    """The task id the message claimed, when another task already holds it."""


DETAILS: dict[str, type[StepDetails]] = {
    cls.KIND: cls
    for cls in (
        PlannerDetails,
        CallerDetails,
        SummarizerDetails,
        ToolDetails,
        PolicyDetails,
        OutcomeDetails,
        RejectedDetails,
    )
}
"""The payload type of each step kind."""


class _Step(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def details(self) -> Any: ...


def details_of(step: _Step | Mapping[str, Any]) -> StepDetails:
    """The typed ``details`` of a step record (or a step entry dict with ``kind`` and
    ``details``); details that are not a mapping (sealed or concealed whole) read as
    an empty payload."""
    if isinstance(step, Mapping):
        kind, details = step.get("kind", ""), step.get("details")
    else:
        kind, details = step.kind, step.details
    cls = DETAILS.get(str(kind), StepDetails)
    return cls.from_details(details if isinstance(details, Mapping) else {})


def policy_of(step: _Step | Mapping[str, Any]) -> PolicyDetails | None:
    """The policy payload of ``step``, or None when it is not a policy step."""
    details = details_of(step)
    return details if isinstance(details, PolicyDetails) else None


def outcome_of(step: _Step | Mapping[str, Any]) -> OutcomeDetails | None:
    """The outcome payload of ``step``, or None when it is not an outcome step."""
    details = details_of(step)
    return details if isinstance(details, OutcomeDetails) else None

"""The role-model protocol: what the agent loop asks of any model backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from connectors import ToolSpec

Role = Literal["planner", "caller", "summarizer", "backbone"]
#: The three α-UMi roles of the agent loop, each with its own adapter.
AGENT_ROLES: tuple[Role, ...] = ("planner", "caller", "summarizer")
#: The single-LLM baseline: one model writes thought, call or conclusion in one output.
BACKBONE: Role = "backbone"
#: Every role a backend may be asked to play.
ALL_ROLES: tuple[Role, ...] = (*AGENT_ROLES, BACKBONE)


@dataclass(frozen=True)
class CallerConstraint:
    """Constrain the caller's output to ``Action: <one of tools>`` and schema-valid JSON."""

    tools: tuple[ToolSpec, ...]

    def __post_init__(self) -> None:
        if not self.tools:
            raise ValueError("a caller constraint needs at least one allowed tool")


@dataclass(frozen=True)
class ChoiceConstraint:
    """Constrain an output to one of ``options`` followed by ``suffix``: a planner that
    named a tool the step does not offer chooses again among the offered ones
    (``worker.agent.named``)."""

    options: tuple[str, ...]
    suffix: str = ""

    def __post_init__(self) -> None:
        if not self.options or not all(self.options):
            raise ValueError("a choice constraint needs at least one non-empty option")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"duplicate options in a choice constraint: {self.options}")


Constraint = CallerConstraint | ChoiceConstraint


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for one role.

    ``prefix`` is the start of the output, given rather than generated (the planner's
    recap, ``umiq_protocol.recap_of``): it is tokenized on its own after the prompt, as a
    training sample's target is after its input, and the generation's text is what
    follows it."""

    role: Role
    prompt: str
    max_new_tokens: int = 160
    constraint: Constraint | None = None
    prefix: str = ""


@dataclass(frozen=True)
class Generation:
    """A role model's answer to one request, with what produced it."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    adapter: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RoleModel(Protocol):
    """Generates text for a batch of role prompts (a batch may mix roles)."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...

    def describe(self) -> dict[str, Any]:
        """Base model id/revision and adapter versions, stored with every decision."""
        ...

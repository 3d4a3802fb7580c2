"""A scripted expert that solves catalogue tasks on the live systems and records them.

Every step goes through the same connectors, idempotency keys and observation text as
the live agent (``ToolResult.observation()``), so a gold trajectory reads exactly like a
good episode of the role models: user instruction, then for each step an assistant
thought ending in ``"\\n Next: caller."``, the caller's ``Action: …\\nAction Input: …``
(``protocol.format_caller``) and the observation, and at the end either a thought
ending in ``"\\n Next: conclusion."`` followed by the answer, or one ending in
``"\\n Next: give up."``.

Thoughts and answers are drawn from several phrasings per step with a random generator
seeded by the instance, so the same instance always yields the same trajectory.

Given a ``view`` (the :class:`~worker.agent.guard.Guard` of the department that owns the
task, fresh per task), the trajectory shows what the role models see at inference
instead of the raw records: the instruction, thoughts, call arguments and answer with
personal data replaced by the task's tokens (``<NAME_1>``), every observation minimized
as the worker minimizes it, and only the tools the department may use in ``tools``. The
calls themselves still run on the raw values, and ``Solution.answer`` stays raw for the
checker.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import umiq_protocol as protocol
from connectors import ToolResult, ToolSpec
from examples.acme.tasks.catalogue import FAMILIES, TaskInstance, money
from examples.acme.tasks.world import World, docs


class View(Protocol):
    """What the model is shown of a task: :class:`worker.agent.guard.Guard` is one."""

    def tokenize(self, value: Any) -> Any: ...

    def visible(self, spec: ToolSpec, result: ToolResult) -> tuple[ToolResult, Any]: ...

    def allowed_tools(self, specs: list[ToolSpec]) -> list[ToolSpec]: ...


TOOL_NAMED = "I'll use {tool}."
"""How a thought before a call names its tool (the last sentence of the thought)."""


class ExpertError(RuntimeError):
    """The expert met a state its script does not expect (the seed facts are stale)."""


@dataclass
class Recorder:
    """Runs one instance's steps on the world and writes them down as turns."""

    world: World
    instance: TaskInstance
    rng: random.Random
    turns: list[dict[str, str]] = field(default_factory=list)
    answer: str = ""
    outcome: str = ""
    view: View | None = None

    def shown(self, value: Any) -> Any:
        """``value`` as the model sees it (personal data tokenized under a view)."""
        return value if self.view is None else self.view.tokenize(value)

    def say(self, options: tuple[str, ...], **values: Any) -> str:
        """One of ``options``, chosen by the instance's generator, filled with ``values``."""
        return self.rng.choice(options).format(**values)

    def recap(self) -> str:
        """What the last observation said, in a few words ("" before the first call).

        Every thought after a call starts with it, so the planner learns to decide from
        the step it just saw: a write that went through, a record that came back, a
        lookup that found nothing (``umiq_protocol.recap_of``, which the agent loop
        also uses to start the planner's thought when it serves such a model)."""
        writes = {spec.name for spec in self.world.specs() if spec.effect == "write"}
        return protocol.recap_of(self.turns, writes)

    def think(self, thought: str, tool: str | None = None) -> str:
        """``thought`` as the model sees it, after the recap of the last observation and,
        before a call, ending with the tool it calls (``I'll use get_invoice.``): as in
        α-UMi's ToolBench data, the planner decides the tool and the caller writes the
        call it names."""
        recap = self.recap()
        text = self.shown(thought)
        if tool is not None:
            text = f"{text} {TOOL_NAMED.format(tool=tool)}"
        return f"{recap} {text}" if recap else text

    def call(self, thought: str, tool: str, **arguments: Any) -> ToolResult:
        """Think, call ``tool`` and observe; returns the connector's result."""
        self.turns.append(
            {"from": "assistant", "value": self.think(thought, tool) + "\n " + protocol.CALLER}
        )
        self.turns.append(
            {"from": "caller", "value": protocol.format_caller(tool, self.shown(arguments))}
        )
        key = f"{self.instance.uid}:{len(self.turns) - 1}"
        result = self.world.invoke(tool, arguments, key)
        seen = result
        if self.view is not None:
            seen, _ = self.view.visible(self.world.spec(tool), result)
        self.turns.append({"from": "observation", "value": seen.observation()})
        return result

    def read(self, thought: str, tool: str, **arguments: Any) -> Any:
        """A call that must succeed; returns its data."""
        result = self.call(thought, tool, **arguments)
        if not result.ok:
            raise ExpertError(f"{self.instance.uid}: {tool}({arguments}) failed: {result.error}")
        return result.data

    def conclude(self, thought: str, answer: str) -> None:
        """End with an answer."""
        self.turns.append(
            {"from": "assistant", "value": self.think(thought) + "\n " + protocol.CONCLUSION}
        )
        self.turns.append({"from": "conclusion", "value": self.shown(answer)})
        self.answer, self.outcome = answer, "answered"

    def give_up(self, thought: str) -> None:
        """End without an answer."""
        self.turns.append(
            {"from": "assistant", "value": self.think(thought) + "\n " + protocol.GIVE_UP}
        )
        self.outcome = "gave_up"


@dataclass(frozen=True)
class Solution:
    """A solved instance: its gold trajectory, final answer and how it ended."""

    instance: TaskInstance
    trajectory: dict[str, Any]
    answer: str
    outcome: str


Solver = Callable[[Recorder, TaskInstance], None]
SOLVERS: dict[str, Solver] = {}


def solver(family_id: str) -> Callable[[Solver], Solver]:
    """Register the script for ``family_id``."""

    def register(fn: Solver) -> Solver:
        SOLVERS[family_id] = fn
        return fn

    return register


def solve(
    world: World, instance: TaskInstance, *, seed: int = 0, view: View | None = None
) -> Solution:
    """Solve ``instance`` on the live ``world`` and return its gold trajectory.

    The world should be at its baseline (``world.reset()``); writes carry the
    idempotency key ``<uid>:<turn index>``. With ``view`` (a fresh one per task), the
    trajectory is what the model sees (see the module).
    """
    fam = FAMILIES[instance.family]
    rng = random.Random(f"{seed}:{instance.uid}:{instance.instruction}")
    rec = Recorder(world, instance, rng, view=view)
    rec.turns.append({"from": "user", "value": rec.shown(instance.instruction)})
    SOLVERS[instance.family](rec, instance)
    if not rec.outcome:
        raise ExpertError(f"{instance.uid}: the script ended without an answer or a give-up")
    specs = world.specs(fam.systems) if view is None else view.allowed_tools(world.specs())
    trajectory = {
        "tools": docs(specs),
        "instruction": rec.turns[0]["value"],
        "conversations": rec.turns,
    }
    return Solution(instance, trajectory, rec.answer, rec.outcome)


# -- shared phrasing ----------------------------------------------------------------------

_GET_INVOICE = (
    "I'll start by fetching invoice {i} from the ERP.",
    "First I need the details of {i}.",
    "Let me look up invoice {i}.",
    "To answer this I need invoice {i}, so I'll retrieve it.",
    "I should pull up {i} in the ERP first.",
)
_FINAL = (
    "I have what I need to answer.",
    "That gives me everything for the answer.",
    "I can now answer the question.",
    "Everything needed is here, so I'll wrap up.",
)
_NO_INVOICE = (
    "There is no invoice {i}, so I'll say so and change nothing.",
    "{i} does not exist; the answer is that it is not in the ERP.",
    "Nothing to act on: I'll report that {i} is unknown.",
)
_NO_INVOICE_ANSWER = (
    "There is no invoice {i} in the ERP, so I did not change anything.",
    "Invoice {i} does not exist in the ERP; nothing was done.",
    "I could not find invoice {i}: the ERP has no record of it. Nothing was changed.",
)


def _m(row: Mapping[str, Any]) -> str:
    return money(row["amount"], row["currency"])


def _get_invoice_or_say_missing(rec: Recorder, invoice_id: str) -> dict[str, Any] | None:
    """The invoice, or ``None`` after answering that it does not exist (an answer, not
    a give-up: "there is no such invoice" is what the requester needs to hear)."""
    result = rec.call(rec.say(_GET_INVOICE, i=invoice_id), "get_invoice", invoice_id=invoice_id)
    if result.ok:
        return result.data
    rec.conclude(rec.say(_NO_INVOICE, i=invoice_id), rec.say(_NO_INVOICE_ANSWER, i=invoice_id))
    return None


# The scripts of the families register themselves on import.
from examples.acme.tasks import expert_erp, expert_hr  # noqa: E402,F401

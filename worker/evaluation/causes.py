"""Why a live task failed, read from its audit trail and compared with the expert.

``classify`` names one cause per failed task. The causes, in order of precedence (the
first that applies wins):

1. ``error``: the task did not run to an end of its own: failed, rejected or
   dead-lettered, or no result came back in time. Nothing else can be judged.
2. ``step limit``: the episode was cut at ``max_steps`` (outcome ``step_limit``). What
   the agent would have done with more steps is unknown, so no finer cause is claimed.
3. ``policy refusal``: a policy step with ``allowed=false`` (access, approval, kill
   switch; not a schema check, see below, nor the ``claims`` check of the answer, nor
   the repeat guard: a refused repeat is a call not made, and what went wrong is in the
   calls and the answer around it), or an episode the policies ended (``refused``,
   ``awaiting_approval``). The rest of the episode follows from it.
4. ``wrong tool`` / ``wrong argument`` / ``wrong plan`` on the calls: the agent's calls
   are walked in order against the expert's (the world's ``solve``, ``worker.world``); the
   first call that matches no expert call still to make is the divergence: its tool is
   the tool of such a call → ``wrong argument``; its tool is not needed at all (or an
   unparseable call) → ``wrong tool``. Exact repeats of a call already made are
   ignored. A divergence counts when the agent then left an expert call unmade, or
   when the divergent call was a write (it changed the systems); a superfluous read
   after which the agent still made every expert call is harmless. A write made
   after every expert call was made is ``wrong plan`` (it called when it should have
   concluded). A call the schema check refused is a ``wrong argument`` divergence
   (nothing was executed).
5. ``wrong plan`` on the ending: the agent concluded or gave up while an expert call
   was still unmade ("too early"), or answered a task the expert gives up.
6. ``gave up``: it gave up on a task the expert answers, after making every call the
   expert makes. A give-up on a task the expert gives up on, made without a lookup
   that came back empty (the record was found, or never looked up), is ``wrong plan``:
   the right end for the wrong reason.
7. ``wrong argument`` when every expert call was made and none diverged but the
   systems still differ from the expected state (a write's free text or a field the
   comparison let pass); without an expert to compare with, ``wrong plan``.
8. ``wrong answer``: the calls and the systems are right, the answer misses or
   discloses facts (the checker's answer reasons), or the episode was ``held``
   because the answer states a change no call made (the ``claims`` reasons).

An episode ``held`` for an unbacked claim is judged like an answered one: the claim
usually follows a plan that concluded too early (5).

Arguments compare after normalising (strings with spaces collapsed and case-folded,
numbers to two decimals, keys with null values dropped). Two strings of more than three
words are free text (a dispute reason, a mail body): no two writers phrase them alike,
so only their presence is compared. A personal-data token in the agent's value
(``<EMAIL_1>``: the model never sees the raw value, the guard resolves it) matches any
text in its place, as the raw value cannot be read back without the sealed token map.

Pure functions over plain data: steps are audit ``StepRecord``\\ s or the result dict's
step entries (``kind``, ``details``, ``output`` or ``text``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.audit.events import CallerDetails, PolicyDetails, StepDetails, details_of

CAUSES: tuple[str, ...] = (
    "error",
    "step limit",
    "policy refusal",
    "wrong tool",
    "wrong argument",
    "wrong plan",
    "gave up",
    "wrong answer",
)
"""Every cause, in order of precedence."""

#: Outcomes of an episode that ran to an end of its own.
ENDED = ("answered", "held", "gave_up", "step_limit", "refused", "awaiting_approval")
_POLICY_ENDS = ("refused", "awaiting_approval")
_FREE_TEXT_WORDS = 3
_ACTION = re.compile(r"Action:\s*([A-Za-z_][\w.-]*)")


@dataclass(frozen=True)
class Call:
    """One call: the tool and arguments, or the error that kept it from being one."""

    tool: str | None
    arguments: Mapping[str, Any] | None = None
    error: str | None = None
    refused_by_schema: bool = False

    def describe(self) -> str:
        if self.tool is None:
            return f"an unparseable call ({self.error})"
        args = json.dumps(dict(self.arguments or {}), ensure_ascii=False, sort_keys=True)
        return f"{self.tool}({args})"


@dataclass(frozen=True)
class Diagnosis:
    """The cause of a failure and a sentence saying what was seen."""

    cause: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"cause": self.cause, "detail": self.detail}


# -- reading steps ------------------------------------------------------------------------


def _get(step: Any, name: str, default: Any = None) -> Any:
    if isinstance(step, Mapping):
        return step.get(name, default)
    return getattr(step, name, default)


def _kind(step: Any) -> str:
    return str(_get(step, "kind", ""))


def _event(step: Any) -> StepDetails:
    """The typed details of ``step`` (an audit record or a result's step entry)."""
    return details_of({"kind": _kind(step), "details": _get(step, "details") or {}})


def _text(step: Any) -> str:
    text = _get(step, "output")
    return str(text if text is not None else _get(step, "text", ""))


def agent_calls(steps: Iterable[Any]) -> list[Call]:
    """The calls the caller made, in order; a schema refusal marks the call before it."""
    calls: list[Call] = []
    for step in steps:
        event = _event(step)
        if isinstance(event, CallerDetails):
            if event.error:
                match = _ACTION.search(_text(step))
                calls.append(Call(match.group(1) if match else None, None, str(event.error)))
            else:
                calls.append(Call(event.tool, dict(event.arguments or {})))
        elif (
            isinstance(event, PolicyDetails)
            and event.policy == "schema"
            and event.allowed is False
            and calls
        ):
            last = calls[-1]
            calls[-1] = Call(last.tool, last.arguments, last.error, refused_by_schema=True)
    return calls


def expert_calls(trajectory: Mapping[str, Any]) -> list[Call]:
    """The calls in a gold trajectory (the expert's ``caller`` turns)."""
    from worker.agent import protocol

    calls = []
    for turn in trajectory.get("conversations", []):
        if turn.get("from") == "caller":
            parsed = protocol.parse_caller(turn["value"])
            calls.append(Call(parsed.tool, dict(parsed.arguments)))
    return calls


def policy_denials(steps: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The details of policy steps that refused a call (schema checks aside; the
    ``claims`` check judges an answer, not a call; the repeat guard refuses the agent's
    own loop, not a call a policy forbids)."""
    events = [_event(step) for step in steps]
    return [
        event.to_details()
        for event in events
        if isinstance(event, PolicyDetails)
        and event.allowed is False
        and event.policy not in ("schema", "claims", "repeat")
    ]


# -- comparing calls ----------------------------------------------------------------------


_TOKEN = re.compile(r"<[a-z][a-z_]*_\d+>")


def _text_of(value: str) -> str:
    return " ".join(value.split()).casefold()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(agent: Any, gold: Any) -> bool:
    """Whether an argument value of the agent's stands for the expert's (see the module)."""
    if isinstance(agent, Mapping) and isinstance(gold, Mapping):
        keys = {k for k, v in agent.items() if v is not None}
        if keys != {k for k, v in gold.items() if v is not None}:
            return False
        return all(_equal(agent[k], gold[k]) for k in keys)
    if isinstance(agent, list | tuple) and isinstance(gold, list | tuple):
        return len(agent) == len(gold) and all(map(_equal, agent, gold))
    if _is_number(agent) and _is_number(gold):
        return round(float(agent), 2) == round(float(gold), 2)
    if isinstance(agent, str) and isinstance(gold, str):
        mine, theirs = _text_of(agent), _text_of(gold)
        if len(mine.split()) > _FREE_TEXT_WORDS and len(theirs.split()) > _FREE_TEXT_WORDS:
            return True
        if _TOKEN.search(mine):  # a token stands for a value the model never saw
            parts = [re.escape(part) for part in _TOKEN.split(mine)]
            return re.fullmatch(".+".join(parts), theirs) is not None
        return mine == theirs
    return bool(agent == gold)


def same_call(a: Call, b: Call) -> bool:
    """Whether two calls name the same tool with equal arguments (see the module)."""
    if a.tool is None or b.tool is None or a.tool != b.tool:
        return False
    return _equal(dict(a.arguments or {}), dict(b.arguments or {}))


def _divergence(call: Call, remaining: Sequence[Call], gold: Sequence[Call]) -> Diagnosis:
    if call.tool is None:
        return Diagnosis("wrong tool", f"the caller wrote {call.describe()}")
    needed = [g for g in remaining if g.tool == call.tool]
    if call.refused_by_schema or call.error or needed:
        want = needed[0].describe() if needed else "a valid call"
        return Diagnosis(
            "wrong argument", f"called {call.describe()} where the expert calls {want}"
        )
    if not remaining:
        return Diagnosis(
            "wrong plan", f"called {call.describe()} after every call the expert makes"
        )
    if any(g.tool == call.tool for g in gold):
        return Diagnosis(
            "wrong argument",
            f"called {call.describe()}; the expert's calls of {call.tool} are "
            + ", ".join(g.describe() for g in gold if g.tool == call.tool),
        )
    return Diagnosis(
        "wrong tool",
        f"called {call.tool}, which the expert does not use; next expert call: "
        f"{remaining[0].describe()}",
    )


def walk_calls(
    calls: Sequence[Call], gold: Sequence[Call], write_tools: Collection[str] = ()
) -> tuple[Diagnosis | None, list[Call]]:
    """The call divergence that counts (see the module) and the expert calls left unmade."""
    remaining = list(gold)
    made: list[Call] = []
    first: Diagnosis | None = None
    first_write: Diagnosis | None = None
    for call in calls:
        hit = next((g for g in remaining if same_call(call, g)), None)
        if hit is not None and not call.refused_by_schema:
            remaining.remove(hit)
            made.append(call)
            continue
        if not call.refused_by_schema and any(same_call(call, m) for m in made):
            continue  # an exact repeat of a call already made
        diagnosis = _divergence(call, remaining, gold)
        executed = call.tool is not None and not call.error and not call.refused_by_schema
        if first is None:
            first = diagnosis
        if first_write is None and executed and call.tool in write_tools:
            first_write = diagnosis
    if remaining:
        return first, remaining
    return first_write, remaining


# -- classifying --------------------------------------------------------------------------


def classify(
    *,
    outcome: str | None,
    steps: Sequence[Any],
    expected_outcome: str,
    gold: Sequence[Call] | None,
    state_reasons: Sequence[str] = (),
    answer_reasons: Sequence[str] = (),
    give_up_reasons: Sequence[str] = (),
    write_tools: Collection[str] = (),
    reason: str = "",
) -> Diagnosis:
    """The cause of a failed task (see the module for the precedence).

    ``outcome`` is the result's outcome (None when no result came back);
    ``expected_outcome`` the catalogue's (``answer`` or ``give_up``); ``gold`` the
    expert's calls, or None when there is no expert solution to compare with.
    """
    if outcome not in ENDED:
        what = outcome or "no result"
        return Diagnosis("error", f"the task ended {what}" + (f": {reason}" if reason else ""))
    if outcome == "step_limit":
        return Diagnosis("step limit", reason or "no conclusion within the step limit")
    denials = policy_denials(steps)
    if denials or outcome in _POLICY_ENDS:
        if denials:
            first = denials[0]
            detail = f"{first.get('policy', 'policy')} refused {first.get('tool')}: " + "; ".join(
                str(r) for r in first.get("reasons", [])
            )
        else:
            detail = reason or f"the episode ended {outcome}"
        return Diagnosis("policy refusal", detail)

    remaining: list[Call] = []
    if gold is not None:
        divergence, remaining = walk_calls(agent_calls(steps), gold, write_tools)
        if divergence is not None:
            return divergence
        if remaining:
            verb = "gave up" if outcome == "gave_up" else "concluded"
            return Diagnosis(
                "wrong plan",
                f"{verb} before calling {remaining[0].describe()}"
                + (f" and {len(remaining) - 1} more" if len(remaining) > 1 else ""),
            )
    if outcome in ("answered", "held") and expected_outcome == "give_up":
        return Diagnosis("wrong plan", "answered a task the expert gives up")
    if outcome == "gave_up" and expected_outcome != "give_up":
        return Diagnosis("gave up", "gave up on a task the expert answers")
    if give_up_reasons:
        # the right end for the wrong reason: no lookup had come back empty
        return Diagnosis("wrong plan", "; ".join(give_up_reasons))
    if state_reasons:
        # every expert call was made and none diverged, yet the records differ: the
        # writes carried other contents (free text, a field the comparison let pass)
        cause = "wrong argument" if gold is not None else "wrong plan"
        return Diagnosis(cause, "; ".join(state_reasons))
    if outcome == "held":
        return Diagnosis("wrong answer", reason or "the answer states a change no call made")
    if answer_reasons:
        return Diagnosis("wrong answer", "; ".join(answer_reasons))
    return Diagnosis("wrong answer", "the checker refused the answer")

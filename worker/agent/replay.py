"""Resume by replay: an interrupted episode rebuilt from its audit steps, pure.

A task whose worker died mid-episode is delivered again. Its recorded steps are the
episode so far: :func:`rebuild` turns them back into the α-UMi history (each turn the
exact text the model saw the first time: a ``tool`` step's output is the observation
as it was shown, keys in the service's order) and says where the episode stopped, so
that it goes on at the first missing step without asking a model or a connector again.

A task that waited for a human's approval goes on the same way: :func:`awaiting` rebuilds
its history and finds the call the human approved, to be made now; and a resume that was
itself cut off (:func:`cut_off_after_approval`) goes on by :func:`rebuild`.

A call that is replayed from a committed tool call must be the call that was committed:
:func:`call_mismatch` compares tool and arguments, and the episode stops for a human
when they differ instead of handing one tool's response to another call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from connectors import ToolCall
from worker.audit.events import APPROVED, CallerDetails, OutcomeDetails, PolicyDetails, policy_of
from worker.errors import AuditError

#: The history turn each recorded step kind becomes when an episode is replayed.
TURN_OF_STEP = {
    "planner": "assistant",
    "caller": "caller",
    "tool": "observation",
    "summarizer": "conclusion",
}

Stopped = Literal["start", "observed", "planned", "called", "concluded"]
"""Where a replayed episode stopped: before its first plan, after an observation, after a
plan (its ``next`` not yet acted on), after a call (no observation yet), after the
summarizer's answer (no outcome yet)."""


@dataclass(frozen=True)
class Replayed:
    """An episode rebuilt from its recorded steps."""

    turns: list[dict[str, str]]
    """The history after the user turn, exactly as recorded."""
    steps: list[Any]
    """The recorded steps replayed (the episode's own, ``rejected`` refusals left out)."""
    last_index: int
    planner_steps: int
    repeats: int
    """Calls the repeat guard refused so far."""
    stopped: Stopped
    last: Any = None
    """The step the episode stopped after (for ``planned``, ``called``, ``concluded``)."""
    policies_after_last: list[Mapping[str, Any]] = field(default_factory=list)
    """The ``details`` of the policy steps recorded after ``last``."""


def rebuild(recorded: Sequence[Any]) -> Replayed:
    """The history, counters and stopping point of the episode that wrote ``recorded``.

    ``recorded`` are a task's step records in chain order (``kind``, ``index``,
    ``output``, ``details``). ``rejected`` steps (refused messages) are not the episode's.
    """
    turns: list[dict[str, str]] = []
    steps: list[Any] = []
    last_index = planners = repeats = 0
    last: Any = None
    after: list[Mapping[str, Any]] = []
    for step in recorded:
        if step.kind == "rejected":
            continue
        steps.append(step)
        last_index = max(last_index, int(step.index))
        details = step.details if isinstance(step.details, Mapping) else {}
        if step.kind in TURN_OF_STEP:
            turns.append({"from": TURN_OF_STEP[step.kind], "value": step.output})
            planners += step.kind == "planner"
            last, after = step, []
        elif step.kind == "policy":
            policy = PolicyDetails.from_details(details)
            repeats += policy.policy == "repeat" and policy.allowed is False
            after.append(details)
    stopped: Stopped
    if last is None:
        stopped = "start"
    else:
        stopped = {
            "planner": "planned",
            "caller": "called",
            "tool": "observed",
            "summarizer": "concluded",
        }[last.kind]
    return Replayed(turns, steps, last_index, planners, repeats, stopped, last, after)


@dataclass(frozen=True)
class Awaiting:
    """An episode that waits for a human's approval of a call, rebuilt from its steps."""

    turns: list[dict[str, str]]
    """The history after the user turn, exactly as recorded."""
    steps: list[Any]
    """Every recorded step of the task."""
    last_index: int
    call: ToolCall
    """The call waiting for the approval, as its caller step recorded it."""
    caller_step: int
    """The index of that caller step (its idempotency key's step)."""


def awaiting(recorded: Sequence[Any], key: str, task_id: str) -> Awaiting:
    """The history of the task that wrote ``recorded`` and the call ``key`` it waits for.

    Raises ``AuditError`` when the steps hold no approval request for ``key`` or not the
    caller step it names.
    """
    turns: list[dict[str, str]] = []
    last_index = 0
    request: PolicyDetails | None = None
    for step in recorded:
        if step.kind in TURN_OF_STEP:
            turns.append({"from": TURN_OF_STEP[step.kind], "value": step.output})
        policy = policy_of(step)
        if policy is not None and policy.key == key and policy.is_approval_request:
            request = policy
        last_index = max(last_index, step.index)
    if request is None or request.caller_step is None:
        raise AuditError(f"task {task_id!r} has no approval request for call {key!r}")
    caller_step = int(request.caller_step)
    caller = next((s for s in recorded if s.kind == "caller" and s.index == caller_step), None)
    called = CallerDetails.from_details(caller.details) if caller is not None else None
    if called is None or called.tool is None:
        raise AuditError(
            f"task {task_id!r}: the call {key!r} awaiting approval has no "
            f"recorded caller step {caller_step}"
        )
    call = ToolCall(called.tool, dict(called.arguments or {}))
    return Awaiting(turns, list(recorded), last_index, call, caller_step)


def _arguments_text(arguments: Any) -> str:
    return json.dumps(arguments, ensure_ascii=False, sort_keys=True)


def call_mismatch(
    key: str,
    committed: tuple[str, Mapping[str, Any]],
    replayed: tuple[str, Mapping[str, Any]],
) -> str | None:
    """Why the replayed call is not the call committed under ``key``, or None when it is.

    Both are ``(tool, request)``; requests compare as JSON values (a tuple and a list
    with the same items are the same, key order does not matter, ``1`` equals ``1.0``).
    """
    (committed_tool, committed_request), (tool, request) = committed, replayed
    same_request = json.loads(json.dumps(dict(request))) == dict(committed_request)
    if committed_tool == tool and same_request:
        return None
    return (
        f"replayed call {tool} {_arguments_text(dict(request))} is not the call committed "
        f"under key {key}: {committed_tool} {_arguments_text(dict(committed_request))}; "
        "its response is not handed to another call and no new call is made: a person "
        "must look at this task"
    )


def cut_off_after_approval(recorded: Sequence[Any], key: str) -> bool:
    """Whether the episode resumed after a human approved call ``key`` and was cut off
    before it ended: the last outcome is still the wait for ``key``, an approval of
    ``key`` follows it, and steps follow the approval (a resume had begun)."""
    outcomes = [s for s in recorded if s.kind == "outcome"]
    if not outcomes:
        return False
    wait = OutcomeDetails.from_details(outcomes[-1].details)
    if wait.outcome != "awaiting_approval" or wait.key != key:
        return False
    decisions = [
        s
        for s in recorded
        if s.seq > outcomes[-1].seq
        and s.kind == "policy"
        and PolicyDetails.from_details(s.details).decides_call(key)
    ]
    if not decisions or PolicyDetails.from_details(decisions[-1].details).status != APPROVED:
        return False
    return any(s.seq > decisions[-1].seq for s in recorded)

"""The repeat guard: a call that repeats the task's last successful call is not made.

Its response is already in the history. The first time, the planner is asked again with
the refusal as the observation (a small planner that missed the answer reads it there);
a second repeat in the same task hands the history to the summarizer, since everything a
repeated read could return is already there. What the guard decides and the texts it
writes into the history are here; the episode records them as steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors import ToolResult, ToolSpec
from worker.agent import protocol
from worker.errors import ProtocolError

NOT_RUN = "not run:"
"""How the repeat guard's observations start (a call it refused is not a call made)."""

FORCED_THOUGHT = "The answer is already in the history.\n " + protocol.CONCLUSION
"""The plan the loop writes for the planner after a second repeat."""


def repeated_call(turns: Sequence[dict[str, str]], text: str) -> protocol.CallerOutput | None:
    """The call ``text`` names when it is exactly the task's last call (same tool, same
    arguments) and that call succeeded: its response is already in the history."""
    last = _last_call(turns)
    if last is None:
        return None
    try:
        call = protocol.parse_caller(text)
    except ProtocolError:
        return None
    same = call.tool == last.tool and dict(call.arguments) == dict(last.arguments)
    return call if same else None


def refusal(call: protocol.CallerOutput) -> str:
    """Why the guard did not run ``call`` (the ``repeat`` policy step's reason)."""
    return f"{call.tool} with these arguments was the last call and succeeded; not run again"


def observation(repeats: int) -> ToolResult:
    """What the history shows for the task's ``repeats``-th refused repeat."""
    if repeats == 1:
        return ToolResult(
            ok=False, error=f"{NOT_RUN} this exact call was just made; its response is above"
        )
    return ToolResult(ok=False, error=f"{NOT_RUN} the same call again")


def _last_call(turns: Sequence[dict[str, str]]) -> protocol.CallSeen | None:
    """The task's last call that ran (not a refused repeat), when it succeeded with
    arguments that parsed; its response is the history's latest news."""
    seen = [c for c in protocol.calls_seen(turns) if not (c.error or "").startswith(NOT_RUN)]
    if not seen or not seen[-1].ok or seen[-1].arguments is None:
        return None
    return seen[-1]


def only_call(tool: ToolSpec) -> dict[str, Any] | None:
    """The one call ``tool``'s schema admits, when it admits exactly one: every argument
    required and fixed to a single value (a grounded id the task has seen once)."""
    properties: Mapping[str, Any] = tool.parameters.get("properties") or {}
    if not properties or set(properties) != set(tool.parameters.get("required") or ()):
        return None
    call: dict[str, Any] = {}
    for name, schema in properties.items():
        values = schema.get("enum") if isinstance(schema, Mapping) else None
        if not isinstance(values, list) or len(values) != 1:
            return None
        call[name] = values[0]
    return call


def without_repeat(
    tools: Sequence[ToolSpec], turns: Sequence[dict[str, str]]
) -> tuple[ToolSpec, ...]:
    """``tools`` less the one whose only admitted call is the task's last successful call:
    the caller is not offered a call the guard would refuse (``get_leave_request(LR-0008)``
    right after it answered, when the plan is to approve LR-0008). Measured: a repeat of
    the last call was the commonest failure (19 of 54 on the Acme test split), the
    caller copying the call above instead of making the next one. All stay when none
    would be left."""
    last = _last_call(turns)
    if last is None:
        return tuple(tools)
    kept = [t for t in tools if not (t.name == last.tool and only_call(t) == dict(last.arguments))]
    return tuple(kept or tools)


def for_summarizer(turns: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The history the summarizer reads: without the refused repeats (each refused call,
    its "not run" observation and the plan that asked for it). Nothing they hold is news
    (the refused call's response is the observation before), and the summarizer was
    trained on histories that end in real observations: shown "not run", a 135M
    summarizer answered "LR-0007 is not run: it was just made"."""
    out: list[dict[str, str]] = []
    for turn in turns:
        refused = turn.get("from") == "observation" and _is_refusal(turn["value"])
        if refused and out and out[-1].get("from") == "caller":
            out.pop()
            if out and out[-1].get("from") == "assistant":
                out.pop()
            continue
        out.append(turn)
    return out


def _is_refusal(observation: str) -> bool:
    seen = protocol.calls_seen([{"from": "observation", "value": observation}])
    return bool(seen) and (seen[0].error or "").startswith(NOT_RUN)

"""The repeat guard: a call whose answer the history already holds is not made again.

A call repeats when the same call (same tool, same arguments) already succeeded in this
task and what it said still stands: a read with no successful write since (the systems
have not changed under it, so its response above is what it would return), or a write
at all (it went through; doing it twice is never what a request asks). Measured: a
repeat of the *last* call was the commonest failure (19 of 54 on the Acme test split);
once that was refused, a planner trained on fewer samples alternated two reads
(``get_invoice``, ``get_vendor``, ``get_invoice``, …) to the step limit and named a
write again right after it went through (v9, docs/results). A read after a write is
not a repeat: it may read what the write changed.

The first time, the planner is asked again with the refusal as the observation (a small
planner that missed the answer reads it there); a second repeat in the same task hands
the history to the summarizer, since everything a repeated call could return is already
there. A plan that names a tool whose only admitted call is such a repeat is refused the
same way before the caller runs (:func:`planned_repeat`): offered the other tools, the
caller wrote a stray call instead. What the guard decides and the texts it writes into
the history are here; the episode records them as steps.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from connectors import ToolResult, ToolSpec
from worker.agent import named, protocol
from worker.errors import ProtocolError

NOT_RUN = "not run:"
"""How the repeat guard's observations start (a call it refused is not a call made)."""

FORCED_THOUGHT = "The answer is already in the history.\n " + protocol.CONCLUSION
"""The plan the loop writes for the planner after a second repeat."""


def standing_calls(
    turns: Sequence[dict[str, str]], writes: Collection[str] = ()
) -> list[protocol.CallSeen]:
    """The task's successful calls whose answer still stands (see the module): every
    successful write, and the successful reads since the last successful write. Calls
    the guard refused are no calls; a call whose arguments did not parse stands for
    nothing. ``writes`` names the tools that change a system."""
    standing: list[protocol.CallSeen] = []
    for seen in protocol.calls_seen(turns):
        if (seen.error or "").startswith(NOT_RUN) or not seen.ok or seen.arguments is None:
            continue
        if seen.tool in writes:
            standing = [c for c in standing if c.tool in writes]  # reads may be stale now
        standing.append(seen)
    return standing


def repeated_call(
    turns: Sequence[dict[str, str]], text: str, writes: Collection[str] = ()
) -> protocol.CallerOutput | None:
    """The call ``text`` names when the history already holds its answer: the same tool
    with the same arguments as a call that still stands (:func:`standing_calls`)."""
    try:
        call = protocol.parse_caller(text)
    except ProtocolError:
        return None
    for seen in standing_calls(turns, writes):
        if call.tool == seen.tool and dict(call.arguments) == dict(seen.arguments or {}):
            return call
    return None


def refusal(call: protocol.CallerOutput) -> str:
    """Why the guard did not run ``call`` (the ``repeat`` policy step's reason)."""
    return (
        f"{call.tool} with these arguments already succeeded in this task and its answer "
        "still stands; not run again"
    )


def observation(repeats: int) -> ToolResult:
    """What the history shows for the task's ``repeats``-th refused repeat."""
    if repeats == 1:
        return ToolResult(
            ok=False, error=f"{NOT_RUN} this exact call was already made; its response is above"
        )
    return ToolResult(ok=False, error=f"{NOT_RUN} the same call again")


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


def planned_repeat(
    thought: str,
    tools: Sequence[ToolSpec],
    turns: Sequence[dict[str, str]],
    writes: Collection[str] = (),
) -> protocol.CallerOutput | None:
    """The repeat a plan asks for: ``thought`` ends naming a tool of ``tools`` (grounded,
    before :func:`without_repeat`) whose only admitted call repeats a call that still
    stands. The caller cannot write anything else of that tool, and offered the other
    tools it made a stray call instead ("INV-1004 is open; I'll check its status. I'll
    use get_invoice." right after get_invoice(INV-1004), then list_invoices: a live
    failure), so the plan is refused as the call would be (:func:`refusal`)."""
    name = named.last_named(thought)
    tool = next((t for t in tools if t.name == name), None)
    if tool is None:
        return None
    call = _standing_repeat(tool, standing_calls(turns, writes))
    return None if call is None else protocol.CallerOutput(tool.name, call)


def _standing_repeat(
    tool: ToolSpec, standing: Sequence[protocol.CallSeen]
) -> dict[str, Any] | None:
    """The arguments of ``tool``'s only admitted call when that call is one of
    ``standing``; else None."""
    call = only_call(tool)
    if call is None:
        return None
    found = any(tool.name == seen.tool and call == dict(seen.arguments or {}) for seen in standing)
    return call if found else None


def without_repeat(
    tools: Sequence[ToolSpec], turns: Sequence[dict[str, str]], writes: Collection[str] = ()
) -> tuple[ToolSpec, ...]:
    """``tools`` less those whose only admitted call repeats a call that still stands
    (:func:`standing_calls`): the caller is not offered a call the guard would refuse
    (``get_leave_request(LR-0008)`` right after it answered, when the plan is to approve
    LR-0008). All stay when none would be left."""
    standing = standing_calls(turns, writes)
    if not standing:
        return tuple(tools)
    kept = [t for t in tools if _standing_repeat(t, standing) is None]
    return tuple(kept or tools)


def for_summarizer(turns: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The history the summarizer reads: without the refused repeats (each refused call,
    its "not run" observation and the plan that asked for it). Nothing they hold is news
    (the refused call's response is the observation before), and the summarizer was
    trained on histories that end in real observations: shown "not run", a 135M
    summarizer answered "LR-0007 is not run: it was just made" (earlier wording)."""
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

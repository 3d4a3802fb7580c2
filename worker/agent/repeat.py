"""The repeat guard: a call that repeats the task's last successful call is not made.

Its response is already in the history. The first time, the planner is asked again with
the refusal as the observation (a small planner that missed the answer reads it there);
a second repeat in the same task hands the history to the summarizer, since everything a
repeated read could return is already there. What the guard decides and the texts it
writes into the history are here; the episode records them as steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors import ToolResult
from worker.agent import protocol
from worker.errors import ProtocolError

NOT_RUN = "not run:"
"""How the repeat guard's observations start (a call it refused is not a call made)."""

FORCED_THOUGHT = "The answer is already in the history.\n " + protocol.CONCLUSION
"""The plan the loop writes for the planner after a second repeat."""


def repeated_call(turns: Sequence[dict[str, str]], text: str) -> protocol.CallerOutput | None:
    """The call ``text`` names when it is exactly the task's last call (same tool, same
    arguments) and that call succeeded: its response is already in the history."""
    seen = [c for c in protocol.calls_seen(turns) if not (c.error or "").startswith(NOT_RUN)]
    if not seen or not seen[-1].ok or seen[-1].arguments is None:
        return None
    try:
        call = protocol.parse_caller(text)
    except ProtocolError:
        return None
    same = call.tool == seen[-1].tool and dict(call.arguments) == dict(seen[-1].arguments)
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

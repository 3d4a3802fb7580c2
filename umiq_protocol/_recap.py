"""The recap: how umiq's own thoughts begin after an observation.

Not part of the α-UMi reference (ToolBench thoughts have no fixed opening). In umiq's
training data (the compact prompt view) every planner thought that follows an
observation starts with a few words on what that observation said, so the planner
learns to decide from the step it just saw: ``INV-1008 came back.``, ``3 records came
back.``, ``Nothing was found.``, ``That went through.``, ``That call failed.`` A back
office's scripted expert writes them (``examples.acme``) and the agent loop, serving a
model trained on such data, starts the planner's thought with the same words
(``worker.agent.episode``): the recap is a function of the observation, so the model
never has to guess it. Measured before it was forced: the v10 planner wrote a wrong
recap at 18 of 118 steps on the Acme test split, "That went through." after a refused
approval among them, and then acted on it.

The recap names no tool: the tool a thought names is the one to call next, and a small
caller copies the tool name it reads in the thought (a recap that named the previous
call, "get_invoice returned INV-1010. I'll schedule…", made it call get_invoice again).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from umiq_protocol._alpha_umi import Turn, calls_seen

#: Observations of a call that was refused or failed (an error with no "not found").
FAILED = "That call failed."
#: A lookup that found nothing: an empty response, or an error saying "not found".
NOTHING = "Nothing was found."
#: A successful call of a write tool.
WENT_THROUGH = "That went through."


def recap_of(turns: Sequence[Turn], writes: Collection[str] = ()) -> str:
    """A few words on the last observation of ``turns``, or ``""`` when the last turn
    is not an observation. ``writes`` names the write tools (a successful write reads
    ``That went through.`` whatever it returned)."""
    if not turns or turns[-1].get("from") != "observation":
        return ""
    seen = calls_seen(turns)[-1]
    if not seen.ok:
        return NOTHING if "not found" in (seen.error or "").lower() else FAILED
    if seen.tool is not None and seen.tool in writes:
        return WENT_THROUGH
    response = seen.response
    if response in (None, [], {}, ""):
        return NOTHING
    if isinstance(response, list):
        return f"{len(response)} record{'s' if len(response) != 1 else ''} came back."
    if isinstance(response, dict) and isinstance(response.get("id"), str):
        return f"{response['id']} came back."
    return "The record came back."

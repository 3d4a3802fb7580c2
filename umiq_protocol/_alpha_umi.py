"""The α-UMi text protocol: prompts for each role and parsers for their outputs.

Pure functions over plain data, byte-compatible with the α-UMi reference
(X-PLUG/Multi-LLM-Agent, ``GLPFT/utils/prompt_lib.py`` and
``GLPFT/process_data/toolbench/prepro_*.py``), so ToolBench-format data trains and
evaluates unchanged. No I/O and no torch here.

Data shapes, kept as dicts so that import and export stay lossless:

- a *turn* is ``{"from": "user|assistant|caller|observation|conclusion", "value": str}``
  (the normalised ToolBench form);
- a *tool* is an α-UMi doc dict ``{"Name": str, "function": str, "input": dict}``.

Two deliberate differences from the reference code, neither visible on real data:

- Placeholders (``{doc}``, ``{tool_names}``, ``{history}``, ``{thought}``) are filled in
  one pass. The reference chains ``str.replace`` calls, so a tool doc or a turn that
  itself contains, say, ``{history}`` would be expanded again there; here it is kept
  as written.
- ``history_string`` refuses a turn whose ``from`` it does not know; the reference
  silently drops it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from umiq_protocol._errors import ProtocolError

Turn = Mapping[str, str]
Tool = Mapping[str, Any]
Next = Literal["caller", "conclusion", "give up"]

CALLER = "Next: caller."
CONCLUSION = "Next: conclusion."
GIVE_UP = "Next: give up."
#: Planner marker text for each value of ``PlannerOutput.next``.
MARKERS: dict[Next, str] = {"caller": CALLER, "conclusion": CONCLUSION, "give up": GIVE_UP}

#: Marks a caller turn the reference data generator flagged as calling a tool that
#: does not exist; such turns are never training targets.
HALLUCINATED_CALL = "invalid_hallucination_function_name"

#: What the backbone writes when it gives up (after its thought, on a new line).
BACKBONE_GIVE_UP = "conclusion: give up."

_APIS = "You have assess to the following apis:\n{doc}\nThe conversation history is:\n{history}\n"
_CALL_FORMAT = (
    "Action: the name of api that should be called in this step, "
    "should be exactly in [{tool_names}],\n"
    "Action Input: the api call request."
)

# The reference wording, typos included: the role models were trained on these bytes.
PLANNER_TEMPLATE = (
    _APIS + "You are the assistant to plan what to do next and whether is caller's or "
    "conclusion's turn to answer.\n"
    "Answer with a following format:\n"
    "The thought of the next step, followed by Next: caller or conclusion or give up."
)
CALLER_TEMPLATE = (
    _APIS + "The thought of this step is:\n{thought}\n"
    "Base on the thought make an api call in the following format:\n" + _CALL_FORMAT
)
SUMMARIZER_TEMPLATE = "Make a conclusion based on the conversation history:\n{history}"
BACKBONE_TEMPLATE = (
    _APIS + "You should answer the action of next step in the following format:\n"
    "The thought to solve the question,\n" + _CALL_FORMAT + "\n"
    "Once you think the question is finished, output conclusion: the final answer of "
    "the question or give up if you think you cannot answer this question.\n"
)

_PLACEHOLDER = re.compile(r"\{(doc|tool_names|history|thought)\}")

# How each role's turn is rendered in a history; observations carry no end-of-turn mark.
_TURN_END = {
    "user": "</s>",
    "assistant": "</s>",
    "caller": "</s>",
    "observation": "",
    "conclusion": "</s>",
}


def _fill(template: str, **values: str) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def tool_docs(tools: Iterable[Tool]) -> str:
    """One ``json.dumps`` line per tool, each ending in a newline."""
    return "".join(json.dumps(tool) + "\n" for tool in tools)


def tool_names(tools: Iterable[Tool]) -> str:
    """The tools' ``Name`` fields joined by ``", "``."""
    return ", ".join(tool["Name"] for tool in tools)


def _role(turn: Turn) -> str:
    role = turn.get("from", "")
    if role not in _TURN_END:
        raise ProtocolError(f"unknown turn role {role!r}; expected one of {', '.join(_TURN_END)}")
    return role


def history_string(turns: Iterable[Turn]) -> str:
    """Render turns as the planner, caller and summarizer see them.

    ``user: …</s>``, ``assistant: …</s>``, ``caller: …</s>``, ``observation: …`` (no
    ``</s>``) and ``conclusion: …</s>``, concatenated without separators.
    """
    parts = []
    for turn in turns:
        role = _role(turn)
        parts.append(f"{role}: {turn['value']}{_TURN_END[role]}")
    return "".join(parts)


#: What a restated planner prompt adds after the history (``planner_prompt``).
RESTATED_REQUEST = "The request is: {request}"


def planner_prompt(
    tools: Sequence[Tool],
    turns: Iterable[Turn],
    *,
    docs: str | None = None,
    restate: bool = False,
) -> str:
    """The planner's prompt for the next step after ``turns``; ends with ``" assistant: "``.

    ``docs`` replaces the α-UMi JSON tool docs (a prompt view's own rendering of
    ``tools``, see ``views``); by default the reference form. ``restate`` repeats the
    request (the first user turn) after the history, next to where the planner writes
    (``RESTATED_REQUEST``): not in the reference form, which ToolBench data keeps."""
    turns = list(turns)
    history = history_string(turns)
    if restate:
        request = next((t["value"] for t in turns if t.get("from") == "user"), "")
        history += "\n" + RESTATED_REQUEST.format(request=request)
    body = _fill(
        PLANNER_TEMPLATE,
        doc=tool_docs(tools) if docs is None else docs,
        tool_names=tool_names(tools),
        history=history,
    )
    return body + " assistant: "


def caller_prompt(
    tools: Sequence[Tool], turns: Iterable[Turn], thought: str, *, docs: str | None = None
) -> str:
    """The caller's prompt; ends with ``" caller: "``.

    As in the reference training data, ``turns`` already ends with the planner's
    assistant turn and ``thought`` is that turn's value (marker included), so the
    thought appears twice: last in the history and again after it. (The reference
    *inference* script instead appends it to the history as ``planner: …</s>``, which
    its models never saw in training; umiq follows the training form.)
    """
    body = _fill(
        CALLER_TEMPLATE,
        doc=tool_docs(tools) if docs is None else docs,
        tool_names=tool_names(tools),
        history=history_string(turns),
        thought=thought,
    )
    return body + " caller: "


def summarizer_prompt(turns: Iterable[Turn]) -> str:
    """The summarizer's prompt (history only, no tools); ends with ``" conclusion: "``.

    ``turns`` ends with the planner's ``Next: conclusion.`` assistant turn.
    """
    return _fill(SUMMARIZER_TEMPLATE, history=history_string(turns)) + " conclusion: "


def _strip_marker(thought: str, marker: str) -> str:
    # str.replace removes every occurrence, as the reference does.
    return thought.replace(marker, "").strip()


def fold_assistant(thought: str, following: Turn | None) -> str:
    """The backbone form of one assistant turn, given the turn after it (if any).

    The thought loses its marker and gains ``"\n" + <caller turn>``,
    ``"\nconclusion: " + <conclusion>`` or ``"\nconclusion: give up."``; an assistant
    turn followed by anything else is kept as it is.
    """
    if GIVE_UP in thought:
        return _strip_marker(thought, GIVE_UP) + "\n" + BACKBONE_GIVE_UP
    if following is not None and following["from"] == "caller":
        return _strip_marker(thought, CALLER) + "\n" + following["value"]
    if following is not None and following["from"] == "conclusion":
        return _strip_marker(thought, CONCLUSION) + "\nconclusion: " + following["value"]
    return thought


def backbone_turns(turns: Sequence[Turn]) -> list[Turn]:
    """Fold normalised turns into the single-model (backbone) form.

    Each assistant turn absorbs the caller or conclusion turn after it
    (``fold_assistant``); caller and conclusion turns then disappear.
    """
    folded: list[Turn] = []
    for i, turn in enumerate(turns):
        role = _role(turn)
        if role == "assistant":
            following = turns[i + 1] if i + 1 < len(turns) else None
            folded.append({"from": "assistant", "value": fold_assistant(turn["value"], following)})
        elif role not in ("caller", "conclusion"):
            folded.append(turn)
    return folded


def backbone_prompt(
    tools: Sequence[Tool], turns: Sequence[Turn], *, docs: str | None = None
) -> str:
    """The single-model baseline's prompt; ends with ``" assistant: "``.

    ``turns`` are in the normalised (multi-role) form; they are folded with
    ``backbone_turns`` first.
    """
    body = _fill(
        BACKBONE_TEMPLATE,
        doc=tool_docs(tools) if docs is None else docs,
        tool_names=tool_names(tools),
        history=history_string(backbone_turns(turns)),
    )
    return body + " assistant: "


@dataclass(frozen=True)
class PlannerOutput:
    """The planner's decision: its thought (marker included) and which role goes next."""

    thought: str
    next: Next


def parse_planner(text: str) -> PlannerOutput:
    """Read a planner generation.

    The text is cut right after the earliest of ``Next: caller.``, ``Next:
    conclusion.`` and ``Next: give up.``; the thought keeps the marker so it can be
    appended to the history exactly like the reference assistant turns.

    Without a marker the step counts as ``caller`` and, as in the reference inference
    pipeline (``infer_pipeline.py``), ``"Next: caller."`` is appended to the text as it
    is, with no separator and no stripping.

    The reference pipeline tests the markers in a fixed order (give up, then
    conclusion, then caller) rather than by position; the two rules differ only for a
    generation that contains two different markers, where the earliest one is the
    planner's actual decision and the rest is run-on text.
    """
    found = [(text.find(marker), marker, step) for step, marker in MARKERS.items()]
    hits = [hit for hit in found if hit[0] >= 0]
    if not hits:
        return PlannerOutput(thought=text + CALLER, next="caller")
    position, marker, step = min(hits)
    return PlannerOutput(thought=text[: position + len(marker)], next=step)


@dataclass(frozen=True)
class CallerOutput:
    """The caller's tool call."""

    tool: str
    arguments: dict[str, Any]


_ACTION = "Action:"
_ACTION_INPUT = "Action Input:"


def parse_caller(text: str) -> CallerOutput:
    """Read a caller generation ``Action: <tool>\\nAction Input: <JSON object>``.

    An empty Action Input means no arguments (``{}``). Raises ``ProtocolError`` saying
    what is wrong: no ``Action:``, an empty tool name, no ``Action Input:``, JSON that
    does not parse (trailing text included), or JSON that is not an object.
    """
    # "Action:" never matches inside "Action Input:".
    start = text.find(_ACTION)
    if start < 0:
        raise ProtocolError(f"caller output has no {_ACTION!r} line: {_excerpt(text)}")
    rest = text[start + len(_ACTION) :]
    split = rest.find(_ACTION_INPUT)
    if split < 0:
        raise ProtocolError(f"caller output has no {_ACTION_INPUT!r} line: {_excerpt(text)}")
    tool = rest[:split].strip()
    if not tool:
        raise ProtocolError(f"caller output names no tool after {_ACTION!r}: {_excerpt(text)}")
    raw = rest[split + len(_ACTION_INPUT) :].strip()
    if not raw:
        return CallerOutput(tool=tool, arguments={})
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"caller Action Input for {tool!r} is not valid JSON ({exc.msg} at line "
            f"{exc.lineno} column {exc.colno}): {_excerpt(raw)}"
        ) from exc
    if not isinstance(arguments, dict):
        raise ProtocolError(
            f"caller Action Input for {tool!r} must be a JSON object, "
            f"got {type(arguments).__name__}: {_excerpt(raw)}"
        )
    return CallerOutput(tool=tool, arguments=arguments)


@dataclass(frozen=True)
class CallSeen:
    """An observation of a history and the call it answered, as the model saw them."""

    tool: str | None
    """The preceding caller turn's tool; None when there was none or it did not parse."""
    ok: bool
    response: Any
    error: str | None
    text: str
    """The observation turn as written (JSON: ``{"error": …, "response": …}``)."""
    arguments: Mapping[str, Any] | None = None
    """The preceding caller turn's arguments (None when it did not parse)."""


def calls_seen(turns: Iterable[Turn]) -> list[CallSeen]:
    """Every observation turn of ``turns`` with the caller turn before it; an
    observation that is not JSON counts as an error whose text is the observation."""
    seen: list[CallSeen] = []
    tool: str | None = None
    arguments: Mapping[str, Any] | None = None
    for turn in turns:
        if turn.get("from") == "caller":
            try:
                parsed = parse_caller(turn["value"])
                tool, arguments = parsed.tool, parsed.arguments
            except ProtocolError:
                tool, arguments = None, None
        elif turn.get("from") == "observation":
            text = turn["value"]
            try:
                body = json.loads(text)
                if not isinstance(body, dict):
                    raise TypeError(type(body).__name__)
            except (TypeError, ValueError):
                body = {"error": str(text), "response": None}
            error = body.get("error") or None
            seen.append(CallSeen(tool, error is None, body.get("response"), error, text, arguments))
            tool, arguments = None, None
    return seen


@dataclass(frozen=True)
class BackboneOutput:
    """The single-LLM (backbone) output split into the three roles' parts.

    ``thought`` is the text before the decision, without a marker; ``call`` is the
    ``Action: …`` text when ``next`` is ``caller`` (empty when the output had neither an
    action nor a conclusion, which then counts as a caller step with no call);
    ``answer`` is the text after ``conclusion:`` when ``next`` is ``conclusion``.
    """

    thought: str
    next: Next
    call: str = ""
    answer: str = ""

    def planner_thought(self) -> str:
        """The thought with its marker, as an assistant turn of the normalised history."""
        return f"{self.thought}\n {MARKERS[self.next]}"


_CONCLUSION_PREFIX = "conclusion:"


def parse_backbone(text: str) -> BackboneOutput:
    """Read a backbone generation: ``thought\nAction: …`` or ``thought\nconclusion: …``.

    The earlier of ``Action:`` and ``conclusion:`` decides; ``conclusion: give up.`` (the
    form ``fold_assistant`` writes) is a give-up. This is the inverse of
    ``fold_assistant``: ``backbone_turns`` of the turns rebuilt from the output give the
    output back.
    """
    action = text.find(_ACTION)
    conclusion = text.find(_CONCLUSION_PREFIX)
    if conclusion >= 0 and (action < 0 or conclusion < action):
        thought = text[:conclusion].strip()
        answer = text[conclusion + len(_CONCLUSION_PREFIX) :].strip()
        if text[conclusion:].startswith(BACKBONE_GIVE_UP) or answer.lower() in (
            "give up",
            "give up.",
        ):
            return BackboneOutput(thought=thought, next="give up")
        return BackboneOutput(thought=thought, next="conclusion", answer=answer)
    if action >= 0:
        return BackboneOutput(thought=text[:action].strip(), next="caller", call=text[action:])
    return BackboneOutput(thought=text.strip(), next="caller")


def format_caller(tool: str, arguments: Mapping[str, Any]) -> str:
    """Write a call as the reference caller turns do (JSON indented by 2, ASCII-escaped)."""
    return f"{_ACTION} {tool}\n{_ACTION_INPUT} {json.dumps(dict(arguments), indent=2)}"


def _excerpt(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")

"""ToolBench native answers ⇄ the normalised α-UMi trajectory form.

Import follows the α-UMi preprocessing (X-PLUG/Multi-LLM-Agent,
``GLPFT/process_data/toolbench/prepro_raw_stage_1.py`` then ``prepro_raw_stage_2.py``):

- stage 1 turns a ToolBench answer file (``answer_generation`` with ``query``,
  ``function`` and ``train_messages``) into ``{"tools", "instruction", "chains"}``:
  α-UMi tool docs (name cut to its last 64 characters, description to its first 256,
  each argument ``"<type>, <last 256 characters of its description>"``, ``Finish``
  left out) and the last chain of ``train_messages``;
- stage 2 turns a chain into conversations: the instruction as the first user turn,
  then, from the third message on, an assistant message becomes its content plus
  ``"\\n"`` (when there is content) plus ``" Next: caller."`` followed by a caller
  turn ``"Action: <name>\\nAction Input: <arguments>"``, or plus ``" Next:
  conclusion."`` followed by the ``Finish`` call's ``final_answer``, or plus ``" Next:
  give up."`` when ``Finish`` gave up; a function message becomes an observation
  holding its JSON's ``response``; a user message stays a user turn.

The odd cases are reproduced as the reference handles them (``Finish`` arguments that
are not JSON, observations that are not JSON, a missing ``final_answer`` → ``"none"``).
An assistant message with no function call is dropped, as the reference drops it.

Export writes the stage-1 form (``{"tools", "instruction", "chains"}``) so that
``import_stage_1(export_trajectory(x)) == x`` for every trajectory that the import can
produce; a trajectory the stage-1 form cannot carry is refused with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from worker.errors import ProtocolError

Trajectory = dict[str, Any]

MARK_CALLER = " Next: caller."
MARK_CONCLUSION = " Next: conclusion."
MARK_GIVE_UP = " Next: give up."
FINISH = "Finish"

#: The system message of exported chains (the import skips it, as the reference does).
SYSTEM_PROMPT = (
    "You are AutoGPT, you can use many tools(functions) to do the following task.\n"
    "First I will give you the task description, and your task start.\n"
    "At each step, you need to give your thought to analyze the status now and what to do "
    "next, with a function call to actually excute your step.\n"
    "After the call, you will get the call result, and you are now in a new state.\n"
    "Then you will analyze your status now, then decide what to do next...\n"
    "After many (Thought-call) pairs, you finally perform the task, then you can give your "
    "finial answer.\n"
)


# -- import ---------------------------------------------------------------------------------


def tool_doc(function: Mapping[str, Any]) -> dict[str, Any]:
    """The α-UMi doc of one ToolBench function, cut as ``prepro_raw_stage_1`` cuts it."""
    inputs: dict[str, str] = {}
    for arg, schema in function["parameters"]["properties"].items():
        kind = schema["type"]
        inputs[arg] = f"{kind}, {schema['description'][-256:]}" if "description" in schema else kind
    return {
        "Name": function["name"][-64:],
        "function": function["description"][:256],
        "input": inputs,
    }


def stage_1(answer: Mapping[str, Any]) -> Trajectory | None:
    """A ToolBench answer file in the stage-1 form, or None when it has no train messages."""
    generation = answer.get("answer_generation")
    if not isinstance(generation, Mapping) or "train_messages" not in generation:
        return None
    return {
        "tools": [tool_doc(f) for f in generation["function"] if f["name"] != FINISH],
        "instruction": generation["query"],
        "chains": generation["train_messages"][-1],
    }


def import_stage_1(record: Mapping[str, Any]) -> Trajectory:
    """One stage-1 record (``tools``, ``instruction``, ``chains``) in the normalised form."""
    try:
        chains, instruction, tools = record["chains"], record["instruction"], record["tools"]
    except KeyError as exc:
        raise ProtocolError(f"stage-1 record has no {exc.args[0]!r} field") from exc
    conversations: list[dict[str, Any]] = [{"from": "user", "value": instruction}]
    for message in chains[2:]:
        role = message["role"]
        if role == "assistant":
            conversations.extend(_assistant(message))
        elif role == "user":
            conversations.append({"from": "user", "value": message["content"]})
        elif role == "function":
            conversations.append({"from": "observation", "value": _observation(message["content"])})
    return {"tools": tools, "instruction": instruction, "conversations": conversations}


def _assistant(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    span = message["content"] + "\n" if message["content"] is not None else ""
    call = message.get("function_call")
    if call is None:
        return []  # the reference keeps only assistant messages that call a function
    if call["name"] != FINISH:
        return [
            {"from": "assistant", "value": span + MARK_CALLER},
            {
                "from": "caller",
                "value": "Action: " + call["name"] + "\nAction Input: " + call["arguments"],
            },
        ]
    gives_up, answer = _finish(call["arguments"], message["content"])
    if gives_up:
        return [{"from": "assistant", "value": span + MARK_GIVE_UP}]
    return [
        {"from": "assistant", "value": span + MARK_CONCLUSION},
        {"from": "conclusion", "value": answer},
    ]


def _finish(arguments: Any, content: str | None) -> tuple[bool, Any]:
    """(gives up, final answer) of a ``Finish`` call, as ``prepro_raw_stage_2`` reads it."""
    try:
        parsed = arguments if isinstance(arguments, dict) else json.loads(arguments)
        if parsed["return_type"] == "give_up_and_restart":
            return True, None
        return False, parsed.get("final_answer", "none")
    except Exception:  # the reference falls back on any failure
        if "give_up_and_restart" in arguments:
            return True, None
        marker = '"final_answer": '
        if isinstance(arguments, str) and arguments.find(marker) != -1:
            begin = arguments.index(marker) + len(marker)
            return False, arguments[begin:].strip().strip("}").strip('"')
        return False, content if content is not None else "none"


def _observation(content: str) -> Any:
    """The ``response`` of a function message, as ``prepro_raw_stage_2`` extracts it."""
    text: Any = content
    try:
        text = json.loads(content)
        return text["response"]
    except Exception:  # the reference falls back on any failure
        if not isinstance(text, str):
            raise ProtocolError(
                f"function message is JSON without a 'response' field: {content[:120]!r}"
            ) from None
        marker = '"response":'
        if text.find(marker) != -1:
            return text[text.index(marker) + len(marker) :]
        return ""


def import_toolbench(records: Iterable[Mapping[str, Any]]) -> list[Trajectory]:
    """Normalise ToolBench data: answer files (``answer_generation``) or stage-1 records.

    Answer files without train messages are skipped, as the reference skips them.
    """
    out: list[Trajectory] = []
    for record in records:
        if "answer_generation" in record:
            staged = stage_1(record)
            if staged is None:
                continue
            record = staged
        out.append(import_stage_1(record))
    return out


# -- export ---------------------------------------------------------------------------------


def export_trajectory(trajectory: Mapping[str, Any]) -> Trajectory:
    """One normalised trajectory in the stage-1 form, which imports back to it unchanged.

    Raises ``ProtocolError`` naming the turn that the stage-1 form cannot carry: a first
    turn that is not the instruction, an assistant turn without a marker (or whose
    thought does not end in a newline), a caller turn without a planner turn before it,
    a conclusion without a ``Next: conclusion.`` turn before it, and so on.
    """
    turns = trajectory["conversations"]
    instruction = trajectory["instruction"]
    if not turns or turns[0] != {"from": "user", "value": instruction}:
        raise ProtocolError("the first turn must be the user's instruction")
    chains: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": instruction},
    ]
    last_call = ""
    i = 1
    while i < len(turns):
        turn, role = turns[i], turns[i]["from"]
        following = turns[i + 1] if i + 1 < len(turns) else None
        if role == "user":
            chains.append({"role": "user", "content": turn["value"]})
        elif role == "observation":
            content = json.dumps({"error": "", "response": turn["value"]}, ensure_ascii=False)
            chains.append({"role": "function", "name": last_call, "content": content})
        elif role == "assistant":
            message, consumed = _assistant_message(i, turn["value"], following)
            chains.append(message)
            last_call = message["function_call"]["name"]
            i += consumed
        else:
            raise ProtocolError(f"turn {i}: a {role} turn must follow its assistant turn")
        i += 1
    native = {"tools": trajectory["tools"], "instruction": instruction, "chains": chains}
    if import_stage_1(native) != _plain(trajectory):
        raise ProtocolError("the trajectory does not survive the stage-1 form unchanged")
    return native


def _assistant_message(
    index: int, value: str, following: Mapping[str, Any] | None
) -> tuple[dict[str, Any], int]:
    for marker in (MARK_CALLER, MARK_CONCLUSION, MARK_GIVE_UP):
        if value.endswith(marker):
            head = value[: -len(marker)]
            break
    else:
        raise ProtocolError(f"turn {index}: the assistant turn ends in no ' Next: …' marker")
    if head and not head.endswith("\n"):
        raise ProtocolError(f"turn {index}: the thought must end in a newline before the marker")
    content = head[:-1] if head else None
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if marker == MARK_GIVE_UP:
        arguments = {"return_type": "give_up_and_restart"}
        message["function_call"] = {"name": FINISH, "arguments": json.dumps(arguments, indent=2)}
        return message, 0
    want = "caller" if marker == MARK_CALLER else "conclusion"
    if following is None or following["from"] != want:
        raise ProtocolError(f"turn {index}: {marker.strip()!r} must be followed by a {want} turn")
    if marker == MARK_CONCLUSION:
        arguments = {"return_type": "give_answer", "final_answer": following["value"]}
        message["function_call"] = {
            "name": FINISH,
            "arguments": json.dumps(arguments, indent=2, ensure_ascii=False),
        }
        return message, 1
    text = following["value"]
    name, sep, rest = text.removeprefix("Action: ").partition("\nAction Input: ")
    if not text.startswith("Action: ") or not sep or name == FINISH:
        raise ProtocolError(
            f"turn {index + 1}: the caller turn is not 'Action: …\\nAction Input: …'"
        )
    message["function_call"] = {"name": name, "arguments": rest}
    return message, 1


def _plain(trajectory: Mapping[str, Any]) -> Trajectory:
    return {
        "tools": trajectory["tools"],
        "instruction": trajectory["instruction"],
        "conversations": [dict(t) for t in trajectory["conversations"]],
    }


def export_toolbench(trajectories: Iterable[Mapping[str, Any]]) -> list[Trajectory]:
    """Every trajectory in the stage-1 form (see ``export_trajectory``)."""
    out = []
    for index, trajectory in enumerate(trajectories):
        try:
            out.append(export_trajectory(trajectory))
        except ProtocolError as exc:
            raise ProtocolError(f"trajectory {index}: {exc}") from exc
    return out

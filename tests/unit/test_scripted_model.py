"""The scripted role model that integration tests plug into the real worker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from tests.support.scripted import ForcedFirstCalls, ScriptedRoleModel, answer, fill
from worker.agent import protocol
from worker.agent.roles import Generation, GenerationRequest

DOCS = [{"Name": "get_employee", "function": "Get one employee.", "input": {}}]
SCRIPT = [
    {"tool": "find_employee", "arguments": {"name": "$NAME"}},
    {"tool": "send_email", "arguments": {"to": "$EMAIL[-1]", "body": "Dear $NAME"}},
]
TURNS = [
    {"from": "user", "value": "Mail <NAME_1> at <EMAIL_1>."},
    {"from": "assistant", "value": "Find.\n Next: caller."},
    {"from": "caller", "value": 'Action: find_employee\nAction Input: {"name": "<NAME_1>"}'},
    {"from": "observation", "value": '{"error": "", "response": [{"email": "<EMAIL_2>"}]}'},
    {"from": "assistant", "value": "Mail.\n Next: caller."},
]


def test_placeholders_take_the_tokens_of_their_kind_from_the_prompt() -> None:
    """$KIND is the first token of that kind, $KIND[n] the n-th; unknown kinds stay."""
    prompt = "a <EMAIL_1> b <NAME_2> c <EMAIL_4> d <EMAIL_1>"
    assert fill({"a": "$EMAIL", "b": "$EMAIL[1]", "c": "$EMAIL[-1]", "d": "Hi $NAME!"}, prompt) == {
        "a": "<EMAIL_1>",
        "b": "<EMAIL_4>",
        "c": "<EMAIL_4>",
        "d": "Hi <NAME_2>!",
    }
    assert fill(["$IBAN", 7], prompt) == ["$IBAN", 7]


def test_planner_calls_while_the_script_has_steps_then_concludes() -> None:
    """The planner says caller for each scripted call and conclusion after the last."""
    first = protocol.planner_prompt(DOCS, TURNS[:1])
    later = protocol.planner_prompt(DOCS, [*TURNS, {"from": "caller", "value": "x"}])
    assert answer(GenerationRequest("planner", first), SCRIPT).endswith("Next: caller.")
    assert answer(GenerationRequest("planner", later), SCRIPT).endswith("Next: conclusion.")


def test_caller_writes_the_next_call_with_tokens_it_sees() -> None:
    """The caller writes the next scripted call, its placeholders filled from the prompt."""
    prompt = protocol.caller_prompt(DOCS, TURNS, TURNS[-1]["value"])
    text = answer(GenerationRequest("caller", prompt), SCRIPT)
    call = protocol.parse_caller(text)
    assert (call.tool, call.arguments) == (
        "send_email",
        {"to": "<EMAIL_2>", "body": "Dear <NAME_1>"},
    )


def test_summarizer_repeats_the_last_observation() -> None:
    """The summarizer's answer is the last observation of the history."""
    prompt = protocol.summarizer_prompt(TURNS)
    assert answer(GenerationRequest("summarizer", prompt), SCRIPT) == TURNS[3]["value"]


def test_prompts_are_logged_with_the_bound_task_id(tmp_path: Path) -> None:
    """Every prompt and answer goes to the JSONL log with the task id bound by the worker."""
    log = tmp_path / "prompts.jsonl"
    model = ScriptedRoleModel(lambda: SCRIPT, log)
    with structlog.contextvars.bound_contextvars(task_id="t-9"):
        model.generate([GenerationRequest("planner", protocol.planner_prompt(DOCS, TURNS[:1]))])
    [line] = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    assert line["task_id"] == "t-9"
    assert line["role"] == "planner"
    assert line["text"] == "Next step: find_employee.\n Next: caller."


class Echo:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.seen.extend(r.role for r in requests)
        return [Generation("inner", model="echo") for _ in requests]

    def describe(self) -> dict[str, Any]:
        return {"base": "echo"}


def test_forced_first_calls_then_the_wrapped_model_decides() -> None:
    """ForcedFirstCalls plays the scripted calls, then hands every turn to the wrapped model."""
    inner = Echo()
    model = ForcedFirstCalls(inner, SCRIPT[:1])
    first = protocol.planner_prompt(DOCS, TURNS[:1])
    later = protocol.planner_prompt(DOCS, TURNS)
    out = model.generate([GenerationRequest("planner", first), GenerationRequest("planner", later)])
    assert [g.text for g in out] == ["Next step: find_employee.\n Next: caller.", "inner"]
    assert inner.seen == ["planner"]

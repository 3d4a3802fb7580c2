"""The repeat guard's two helpers: the caller is not offered the one call it would repeat,
and the summarizer reads the history without refused repeats."""

from __future__ import annotations

import json

from connectors import ToolSpec
from worker.agent.grounding import ground
from worker.agent.repeat import (
    NOT_RUN,
    for_summarizer,
    only_call,
    planned_repeat,
    repeated_call,
    standing_calls,
    without_repeat,
)

LR = {"type": "string", "pattern": r"^LR-\d{4}$"}
GET = ToolSpec(
    "get_leave_request",
    "Get one leave request.",
    {"type": "object", "properties": {"request_id": LR}, "required": ["request_id"]},
)
APPROVE = ToolSpec(
    "approve_leave_request",
    "Approve a leave request.",
    {
        "type": "object",
        "properties": {"request_id": LR, "note": {"type": "string"}},
        "required": ["request_id"],
    },
    effect="write",
)


def call(tool: str, **arguments: str) -> dict[str, str]:
    return {"from": "caller", "value": f"Action: {tool}\nAction Input: {json.dumps(arguments)}"}


def observed(response: object = None, error: str = "") -> dict[str, str]:
    return {"from": "observation", "value": json.dumps({"error": error, "response": response})}


HISTORY = [
    {"from": "user", "value": "Approve the pending request LR-0008, please."},
    {"from": "assistant", "value": "First the request.\n Next: caller."},
    call("get_leave_request", request_id="LR-0008"),
    observed({"id": "LR-0008", "status": "pending"}),
]


def test_only_call_is_the_single_call_a_fully_fixed_schema_admits() -> None:
    grounded = {t.name: t for t in ground([GET, APPROVE], HISTORY)}
    assert only_call(grounded["get_leave_request"]) == {"request_id": "LR-0008"}
    assert only_call(grounded["approve_leave_request"]) is None  # the note may vary
    assert only_call(GET) is None  # not grounded: any LR id


def test_the_caller_is_not_offered_the_call_it_just_made() -> None:
    offered = without_repeat(ground([GET, APPROVE], HISTORY), HISTORY)
    assert [t.name for t in offered] == ["approve_leave_request"]
    # Before any call, or after a failed one, nothing is left out.
    assert len(without_repeat(ground([GET, APPROVE], HISTORY[:2]), HISTORY[:2])) == 2
    failed = [*HISTORY[:3], observed(error="LR-0008 not found")]
    assert len(without_repeat(ground([GET, APPROVE], failed), failed)) == 2
    # The only tool is never taken away.
    assert [t.name for t in without_repeat(ground([GET], HISTORY), HISTORY)] == [
        "get_leave_request"
    ]


def test_the_summarizer_reads_the_history_without_refused_repeats() -> None:
    refused = observed(error=f"{NOT_RUN} this exact call was already made; its response is above")
    history = [
        *HISTORY,
        {"from": "assistant", "value": "Again.\n Next: caller."},
        call("get_leave_request", request_id="LR-0008"),
        refused,
        {"from": "assistant", "value": "The answer is already in the history.\n Next: conclusion."},
    ]
    shown = for_summarizer(history)
    assert shown == [*HISTORY, history[-1]]
    assert all(NOT_RUN not in t["value"] for t in shown)
    assert for_summarizer(HISTORY) == HISTORY  # nothing refused: unchanged


def test_calls_stand_until_a_write_and_writes_stand_for_good() -> None:
    """What the guard refuses: any earlier successful read with no write since, and any
    successful write; a failed or refused call stands for nothing."""
    writes = {"approve_leave_request"}
    approve = call("approve_leave_request", request_id="LR-0008")
    history = [
        *HISTORY,
        call("get_leave_request", request_id="LR-0009"),
        observed({"id": "LR-0009"}),
    ]
    assert [c.arguments for c in standing_calls(history, writes)] == [
        {"request_id": "LR-0008"},
        {"request_id": "LR-0009"},
    ]
    assert repeated_call(history, HISTORY[2]["value"], writes) is not None  # not the last
    after_write = [*history, approve, observed({"id": "LR-0008", "status": "approved"})]
    assert [c.tool for c in standing_calls(after_write, writes)] == ["approve_leave_request"]
    assert repeated_call(after_write, HISTORY[2]["value"], writes) is None  # may have changed
    assert repeated_call(after_write, approve["value"], writes) is not None
    failed = [*HISTORY[:3], observed(error="LR-0008 not found")]
    assert standing_calls(failed, writes) == []
    refused = [*HISTORY, HISTORY[2], observed(error=f"{NOT_RUN} the same call again")]
    assert len(standing_calls(refused, writes)) == 1
    # Without knowing the writes, every call reads as a read.
    assert len(standing_calls(after_write)) == 3


def test_the_caller_is_not_offered_an_earlier_read_it_would_repeat() -> None:
    history = [
        *HISTORY,
        call("approve_leave_request", request_id="LR-0009"),
        observed(error="LR-0009 not found"),
    ]
    offered = without_repeat(ground([GET, APPROVE], history), history, {APPROVE.name})
    assert "get_leave_request" not in [t.name for t in offered]


def test_a_plan_naming_a_tool_whose_only_call_repeats_is_the_repeat() -> None:
    """ "I'll use get_leave_request." right after get_leave_request(LR-0008) answered asks
    for that call again: the guard refuses it before a caller writes a stray call."""
    tools = ground([GET, APPROVE], HISTORY)
    again = "LR-0008 came back. I'll check its status. I'll use get_leave_request.\n Next: caller."
    found = planned_repeat(again, tools, HISTORY)
    assert found is not None
    assert (found.tool, found.arguments) == ("get_leave_request", {"request_id": "LR-0008"})
    # another tool, or one that admits other calls (the note may vary), is no repeat
    approve = "LR-0008 is pending. I'll use approve_leave_request.\n Next: caller."
    assert planned_repeat(approve, tools, HISTORY) is None
    assert planned_repeat("I'll check it again.\n Next: caller.", tools, HISTORY) is None
    # before the call was made, or after it failed, the plan is a first call
    assert planned_repeat(again, ground([GET, APPROVE], HISTORY[:2]), HISTORY[:2]) is None
    failed = [*HISTORY[:3], observed(error="LR-0008 not found")]
    assert planned_repeat(again, ground([GET, APPROVE], failed), failed) is None
    # a second id seen: the tool admits another call, the caller chooses
    two = [*HISTORY, {"from": "user", "value": "And LR-0009."}]
    assert planned_repeat(again, ground([GET, APPROVE], two), two) is None

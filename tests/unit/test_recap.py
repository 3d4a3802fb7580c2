"""The recap that starts a planner thought after an observation (``umiq_protocol.recap_of``)
and the episode that gives it to the planner instead of letting it guess."""

from __future__ import annotations

import json

import pytest

from tests.unit import test_grounding
from tests.unit.test_grounding import Scripted, _episode
from umiq_protocol import recap_of
from worker.agent.views import ALPHA_UMI, COMPACT, PromptView
from worker.audit.events import PlannerDetails

audit = test_grounding.audit  # the grounding tests' fixture: an embedded audit log
CALL = 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1008"}'
PAY = 'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1008"}'


def _after(caller: str, error: str = "", response: object = None) -> list[dict[str, str]]:
    observation = json.dumps({"error": error, "response": response})
    return [
        {"from": "user", "value": "Is INV-1008 open?"},
        {"from": "assistant", "value": "Look it up.\n Next: caller."},
        {"from": "caller", "value": caller},
        {"from": "observation", "value": observation},
    ]


@pytest.mark.parametrize(
    ("turns", "recap"),
    [
        (_after(CALL, response={"id": "INV-1008", "status": "open"}), "INV-1008 came back."),
        (_after(CALL, response=[{"id": "P-1"}, {"id": "P-2"}]), "2 records came back."),
        (_after(CALL, response=[{"id": "P-1"}]), "1 record came back."),
        (_after(CALL, response=[]), "Nothing was found."),
        (_after(CALL, error="invoice INV-1008 not found"), "Nothing was found."),
        (_after(CALL, error="only a pending request can be decided"), "That call failed."),
        (_after(PAY, response={"id": "PAY-0002"}), "That went through."),
        (_after(CALL, response={"status": "open"}), "The record came back."),
    ],
)
def test_the_recap_says_what_the_last_observation_said(turns, recap) -> None:
    assert recap_of(turns, writes={"schedule_payment"}) == recap


def test_no_recap_before_the_first_observation_or_after_another_turn() -> None:
    turns = _after(CALL, response=[])
    assert recap_of(turns[:1]) == ""
    assert recap_of([*turns, {"from": "assistant", "value": "Done.\n Next: conclusion."}]) == ""
    # a failed write did not go through, whatever the tool
    assert (
        recap_of(_after(PAY, error="refused"), writes={"schedule_payment"}) == "That call failed."
    )


def _planner_requests(model: Scripted) -> list:
    return [r for r in model.requests if r.role == "planner"]


def test_the_planner_is_given_the_recap_and_writes_the_rest(audit) -> None:
    """Compact view: the second planner request carries the recap as its prefix (not in
    its prompt), the thought in the history is recap + what the model wrote, and the
    audit says which part the loop gave."""
    model = Scripted(
        planner=["I'll look it up.\n Next: caller.", " It is open.\n Next: conclusion."],
        caller=[CALL],
        summarizer=["INV-1008 is open."],
    )
    result = _episode(audit, model, recap=True, view=PromptView(COMPACT)).run()
    assert result.outcome == "answered"
    first, second = _planner_requests(model)
    assert first.prefix == ""  # nothing was observed yet
    assert second.prefix == "INV-1008 came back."
    assert not second.prompt.endswith(second.prefix)
    planner_steps = [s for s in result.steps if s.kind == "planner"]
    assert planner_steps[1].text == "INV-1008 came back. It is open.\n Next: conclusion."
    details = [PlannerDetails.from_details(s.details) for s in planner_steps]
    assert [d.recap for d in details] == [None, "INV-1008 came back."]
    summarizer = next(r for r in model.requests if r.role == "summarizer")
    assert "INV-1008 came back. It is open." in summarizer.prompt


@pytest.mark.parametrize(("recap", "view"), [(False, COMPACT), (True, ALPHA_UMI)])
def test_no_recap_when_off_or_for_the_alpha_umi_view(audit, recap, view) -> None:
    """ToolBench thoughts have no recap: the α-UMi view never gets one."""
    model = Scripted(
        planner=["Look.\n Next: caller.", "Open.\n Next: conclusion."],
        caller=[CALL],
        summarizer=["INV-1008 is open."],
    )
    result = _episode(audit, model, recap=recap, view=PromptView(view)).run()
    assert [r.prefix for r in _planner_requests(model)] == ["", ""]
    assert [s.text for s in result.steps if s.kind == "planner"][1] == "Open.\n Next: conclusion."

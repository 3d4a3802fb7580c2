"""The expert replay role model: each role says the gold turn its prompt has reached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from examples.acme.replay import ExpertReplay, say, targets_of
from worker.agent.roles import GenerationRequest

TRAJECTORY = {
    "tools": [{"Name": "get_invoice", "function": "Get an invoice.", "input": {}}],
    "instruction": "Status of INV-1001?",
    "conversations": [
        {"from": "user", "value": "Status of INV-1001?"},
        {"from": "assistant", "value": "Look it up.\n Next: caller."},
        {
            "from": "caller",
            "value": 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1001"}',
        },
        {"from": "observation", "value": '{"status": "open"}'},
        {"from": "assistant", "value": "Done.\n Next: conclusion."},
        {"from": "conclusion", "value": "INV-1001 is open."},
    ],
}


def request(role: str, calls: int) -> GenerationRequest:
    history = "user: Status of INV-1001?" + "</s>caller: Action: get_invoice" * calls
    return GenerationRequest(role=role, prompt=history)


def test_targets_are_the_trajectorys_turns_by_role() -> None:
    """The targets are the planner, caller and summarizer turns in order."""
    targets = targets_of(TRAJECTORY)
    assert targets["planner"] == ["Look it up.\n Next: caller.", "Done.\n Next: conclusion."]
    assert targets["caller"] == [TRAJECTORY["conversations"][2]["value"]]
    assert targets["summarizer"] == ["INV-1001 is open."]


def test_each_role_says_the_turn_its_history_has_reached() -> None:
    """The planner after one call says the second thought; past the end is an error."""
    targets = targets_of(TRAJECTORY)
    assert say(request("planner", 0), targets).endswith("Next: caller.")
    assert say(request("planner", 1), targets) == "Done.\n Next: conclusion."
    assert say(request("summarizer", 1), targets) == "INV-1001 is open."
    with pytest.raises(LookupError, match="no caller step 2"):
        say(request("caller", 1), targets)


def test_the_model_reads_the_current_tasks_targets(tmp_path: Path) -> None:
    """The model answers from the entry of the task bound to the log context."""
    path = tmp_path / "replay.json"
    path.write_text(json.dumps({"t-1": targets_of(TRAJECTORY)}))
    model = ExpertReplay(path)
    with structlog.contextvars.bound_contextvars(task_id="t-1"):
        (said,) = model.generate([request("caller", 0)])
    assert said.text.startswith("Action: get_invoice")
    with structlog.contextvars.bound_contextvars(task_id="t-2"), pytest.raises(LookupError):
        model.generate([request("caller", 0)])

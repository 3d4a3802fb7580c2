"""The single-LLM baseline: backbone parsing, its agent loop and its static predictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import ToolCall
from policies import AccessRule
from worker.agent import protocol
from worker.agent.episode import Episode
from worker.audit import AuditLog, ensure_schema
from worker.errors import ConfigError
from worker.evaluation.metrics import score
from worker.evaluation.static import evaluate_static, evaluation_steps, single_prediction
from worker.models.adapters import find_adapters
from worker.toolbox import Toolbox

from .test_episode import ENV, Scripted, erp

CALL = 'Action: get_invoice\nAction Input: {\n  "invoice_id": "INV-1"\n}'


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url)


@pytest.mark.parametrize(
    ("following", "expected_next"),
    [
        ({"from": "caller", "value": CALL}, "caller"),
        ({"from": "conclusion", "value": "INV-1 is open."}, "conclusion"),
    ],
)
def test_parse_backbone_inverts_fold_assistant(
    following: dict[str, str], expected_next: str
) -> None:
    """Parsing a folded assistant turn gives back its thought, decision and call or answer."""
    marker = protocol.MARKERS[expected_next]  # type: ignore[index]
    folded = protocol.fold_assistant(f"I need the invoice.\n {marker}", following)
    out = protocol.parse_backbone(folded)
    assert out.next == expected_next
    assert out.thought == "I need the invoice."
    assert out.planner_thought() == f"I need the invoice.\n {marker}"
    if expected_next == "caller":
        assert out.call == CALL
    else:
        assert out.answer == "INV-1 is open."


def test_parse_backbone_reads_give_up() -> None:
    """``conclusion: give up.`` is a give-up, not an answer."""
    out = protocol.parse_backbone("Nothing here can do it.\nconclusion: give up.")
    assert (out.next, out.answer) == ("give up", "")


def test_parse_backbone_earliest_decision_wins() -> None:
    """A conclusion written before an action decides the step."""
    out = protocol.parse_backbone("Done.\nconclusion: it is open.\nAction: get_invoice")
    assert out.next == "conclusion"
    assert out.answer.startswith("it is open.")


def test_parse_backbone_without_decision_is_a_call_without_action() -> None:
    """Text with neither Action nor conclusion is a caller step with an empty call."""
    out = protocol.parse_backbone("I am thinking about it")
    assert (out.next, out.call) == ("caller", "")


def test_single_episode_calls_and_concludes(audit: AuditLog) -> None:
    """One backbone model calls the tool, sees the observation and answers; all audited."""
    model = Scripted(
        backbone=[
            "I should fetch the invoice.\n" + CALL,
            "It is open.\nconclusion: INV-1 is open.",
        ]
    )
    connector = erp()
    result = Episode(
        ENV,
        model=model,
        toolbox=Toolbox([connector]),
        access=AccessRule("finance", tools=("*",), may_write=True),
        audit=audit,
        max_steps=4,
        agent="single",
    ).run()
    assert result.outcome == "answered"
    assert result.answer == "INV-1 is open."
    assert connector.calls == [(ToolCall("get_invoice", {"invoice_id": "INV-1"}), "t-1:2")]
    assert [r.role for r in model.requests] == ["backbone", "backbone"]
    second = model.requests[1].prompt
    assert "observation: " in second and "caller: " not in second.split("history is:")[1]
    steps = audit.steps("t-1")
    assert [s.kind for s in steps] == [
        "planner",
        "caller",
        "policy",
        "policy",
        "tool",
        "planner",
        "summarizer",
        "policy",  # the claims check of the answer
        "outcome",
    ]
    assert {s.role for s in steps if s.kind in ("planner", "caller", "summarizer")} == {"backbone"}
    assert audit.verify().ok


def test_single_episode_refuses_forbidden_tool(audit: AuditLog) -> None:
    """The single model naming a tool the department may not use is refused, not executed."""
    model = Scripted(
        backbone=[
            'Pay it.\nAction: schedule_payment\nAction Input: {"invoice_id": "INV-1", "amount": 5}',
            "Refused.\nconclusion: give up.",
        ]
    )
    connector = erp()
    result = Episode(
        ENV,
        model=model,
        toolbox=Toolbox([connector]),
        access=AccessRule("finance", tools=("get_*",)),
        audit=audit,
        agent="single",
    ).run()
    assert result.outcome == "gave_up"
    assert connector.calls == []


def test_single_prediction_is_read_by_the_scorer() -> None:
    """A backbone call on a gold call step scores Plan ACC 1, Act. EM 1 and Arg. F1 1."""
    trajectory = {
        "tools": [{"Name": "get_invoice", "function": "Get one invoice.", "input": {}}],
        "instruction": "",
        "conversations": [
            {"from": "user", "value": "Is INV-1 open?"},
            {"from": "assistant", "value": "I need the invoice.\n Next: caller."},
            {"from": "caller", "value": CALL},
            {"from": "observation", "value": '{"status": "open"}'},
            {"from": "assistant", "value": "It is open.\n Next: conclusion."},
            {"from": "conclusion", "value": "INV-1 is open."},
        ],
    }
    steps = evaluation_steps([trajectory])
    model = Scripted(backbone=["Get it.\n" + CALL, "Open.\nconclusion: INV-1 is open."])
    result = evaluate_static(model, steps, agent="single")
    assert [r.role for r in model.requests] == ["backbone", "backbone"]
    m = result.metrics
    assert (m.plan_acc, m.act_em, m.arg_f1, m.hallu_rate) == (1.0, 1.0, 1.0, 0.0)
    assert m.rouge_l == pytest.approx(1.0)
    assert result.run["agent"] == "single"
    assert score(result.predictions()).plan_acc == 1.0


def test_single_prediction_of_an_empty_output_is_a_call_without_action() -> None:
    """An output without action or conclusion routes to the caller with no call."""
    prediction, route = single_prediction("hmm")
    assert route == "caller"
    assert prediction.endswith("caller: ")


def test_find_adapters_single_prefers_single_then_global(tmp_path: Path) -> None:
    """The single agent loads ``single/``, else GLPFT's ``global/`` stage, as the backbone."""
    (tmp_path / "global").mkdir()
    assert find_adapters(tmp_path, agent="single") == {"backbone": tmp_path / "global"}
    (tmp_path / "single").mkdir()
    assert find_adapters(tmp_path, agent="single") == {"backbone": tmp_path / "single"}


def test_find_adapters_single_without_adapter_is_refused(tmp_path: Path) -> None:
    """A directory without a single-LLM adapter is refused with what to do."""
    (tmp_path / "planner").mkdir()
    with pytest.raises(ConfigError, match="umiq train --method single"):
        find_adapters(tmp_path, agent="single")

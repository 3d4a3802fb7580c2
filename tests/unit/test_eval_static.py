"""Static evaluation over reference trajectories with a scripted role model."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from worker.agent import protocol
from worker.agent.roles import Generation, GenerationRequest
from worker.data.samples import load_trajectories
from worker.evaluation.cli import plan_misses, register
from worker.evaluation.metrics import parse_step, score
from worker.evaluation.static import (
    caller_constraint,
    clean_output,
    evaluate_static,
    evaluation_steps,
    route_planner,
)

Handler = Callable[[GenerationRequest], str]


class ScriptedModel:
    """A RoleModel that answers each request with ``handler(request)`` and logs the batches."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.batches: list[list[GenerationRequest]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.batches.append(list(requests))
        return [Generation(text=self.handler(r), model="scripted") for r in requests]

    def describe(self) -> dict[str, Any]:
        return {"backend": "scripted"}


@pytest.fixture(scope="module")
def trajectories(toolbench_dir: Path) -> list[dict[str, Any]]:
    """The first three reference trajectories: call, finish and give-up steps."""
    return load_trajectories(toolbench_dir / "raw_data_stage_2.json")[:3]


def gold_handler(trajectories: list[dict[str, Any]]) -> Handler:
    """Answers every role prompt with the gold turn the prompt was built for."""
    answers: dict[str, str] = {}
    for trajectory in trajectories:
        tools, turns = trajectory["tools"], trajectory["conversations"]
        for j, turn in enumerate(turns):
            if turn["from"] != "assistant":
                continue
            answers[protocol.planner_prompt(tools, turns[:j])] = turn["value"]
            if j + 1 < len(turns):
                following = turns[j + 1]
                if following["from"] == "caller":
                    prompt = protocol.caller_prompt(tools, turns[: j + 1], turn["value"])
                    answers[prompt] = following["value"]
                elif following["from"] == "conclusion":
                    answers[protocol.summarizer_prompt(turns[: j + 1])] = following["value"]
    return lambda request: answers[request.prompt]


def test_gold_outputs_score_perfectly(trajectories: list[dict[str, Any]]) -> None:
    """A model that answers with the gold turns gets every metric perfect."""
    steps = evaluation_steps(trajectories)
    result = evaluate_static(ScriptedModel(gold_handler(trajectories)), steps)
    m = result.metrics
    assert (m.steps, m.call_steps, m.finish_steps, m.give_up_steps) == (10, 7, 2, 1)
    assert (m.plan_acc, m.act_em, m.arg_f1, m.hallu_rate) == (1.0, 1.0, 1.0, 0.0)
    assert m.rouge_l == pytest.approx(1.0, abs=1e-7)


def test_wrong_tools_count_as_hallucinations(trajectories: list[dict[str, Any]]) -> None:
    """A caller that names tools the step does not have is counted as hallucinating."""
    gold = gold_handler(trajectories)

    def handler(request: GenerationRequest) -> str:
        if request.role == "caller":
            return 'Action: no_such_tool\nAction Input: {"x": 1}'
        return gold(request)

    result = evaluate_static(ScriptedModel(handler), evaluation_steps(trajectories))
    m = result.metrics
    assert (m.hallucinations, m.hallu_rate) == (7, 0.7)
    assert (m.plan_acc, m.act_em, m.arg_f1) == (1.0, 0.0, 0.0)


def test_predictions_have_the_reference_form(
    trajectories: list[dict[str, Any]], tmp_path: Path
) -> None:
    """predictions.json holds one entry per step with the reference's keys and strings."""
    result = evaluate_static(
        ScriptedModel(gold_handler(trajectories)), evaluation_steps(trajectories)
    )
    predictions, metrics = result.write(tmp_path)
    entries = json.loads(predictions.read_text())
    assert len(entries) == 10
    for item in entries:
        assert {"tools", "instruction", "history", "reference", "predictions"} <= set(item)
        assert parse_step(item["predictions"]).plan == parse_step(item["reference"]).plan
    call = next(e for e in entries if parse_step(e["reference"]).plan == "call")
    assert call["predictions"].startswith("asssitant: ")
    assert "</s>caller: Action: " in call["predictions"]
    assert call["reference"].startswith("assistant: ") and call["reference"].endswith("</s>")
    give_up = next(e for e in entries if parse_step(e["reference"]).plan == "give up")
    assert give_up["predictions"] == give_up["reference"]
    assert "model_input_for_caller" not in give_up
    record = json.loads(metrics.read_text())
    assert record["reference_keys"]["f1"] == 1.0
    assert record["run"]["model"] == {"backend": "scripted"}


def test_requests_are_batched(trajectories: list[dict[str, Any]]) -> None:
    """Requests go to the model at most ``batch_size`` at a time, planner first."""
    model = ScriptedModel(gold_handler(trajectories))
    evaluate_static(model, evaluation_steps(trajectories), batch_size=4, max_new_tokens=7)
    assert [len(b) for b in model.batches] == [4, 4, 2, 4, 4, 1]
    assert {r.role for b in model.batches[:3] for r in b} == {"planner"}
    assert all(r.max_new_tokens == 7 for b in model.batches for r in b)


def test_routing_follows_the_planners_prediction(trajectories: list[dict[str, Any]]) -> None:
    """A planner that always gives up gets no caller or summarizer requests."""
    model = ScriptedModel(lambda request: "Hopeless. Next: give up. trailing")
    result = evaluate_static(model, evaluation_steps(trajectories))
    assert len(model.batches) == 2  # 10 planner requests in batches of 8
    assert {s.predictions for s in result.steps} == {"Hopeless. Next: give up."}
    assert result.metrics.plan_acc == 0.1


def test_constrained_caller_gets_the_step_tools(trajectories: list[dict[str, Any]]) -> None:
    """With ``constrained=True`` every caller request carries the step's tools."""
    model = ScriptedModel(gold_handler(trajectories))
    result = evaluate_static(model, evaluation_steps(trajectories), constrained=True)
    callers = [r for b in model.batches for r in b if r.role == "caller"]
    assert callers and all(r.constraint is not None for r in callers)
    first = callers[0].constraint
    assert first is not None
    assert [t.name for t in first.tools] == [t["Name"] for t in trajectories[0]["tools"]]
    assert first.tools[1].parameters == {
        "type": "object",
        "properties": {"quizid": {}},
        "additionalProperties": False,
    }
    assert result.run["unconstrained_steps"] == 0


def test_constraint_is_skipped_for_tools_it_cannot_express() -> None:
    """Tools with non-identifier or duplicate names get no constraint."""
    assert caller_constraint([{"Name": "has-dash", "input": {}}]) is None
    assert caller_constraint([{"Name": "a", "input": {}}, {"Name": "a", "input": {}}]) is None
    assert caller_constraint([]) is None


def test_output_cleaning_and_routing() -> None:
    """Outputs lose a leading ': ', blank ones become 'none', markerless ones call."""
    assert clean_output(": Next: caller.") == "Next: caller."
    assert clean_output(" . ") == "none"
    assert route_planner("none") == ("caller", "noneNext: caller.")
    assert route_planner("a Next: caller. b Next: conclusion. c") == (
        "summarizer",
        "a Next: caller. b Next: conclusion.",
    )


def test_limit_and_max_steps(trajectories: list[dict[str, Any]]) -> None:
    """``limit`` keeps the first trajectories, ``max_steps`` caps the steps."""
    assert len(evaluation_steps(trajectories, limit=1)) == 2
    assert len(evaluation_steps(trajectories, max_steps=3)) == 3


def test_cli_static_writes_results(
    trajectories: list[dict[str, Any]], toolbench_dir: Path, tmp_path: Path
) -> None:
    """``eval static`` prints the five metrics and writes both files."""
    app = typer.Typer()
    app.command()(lambda: None)  # a second command keeps "eval" a sub-command
    register(
        app,
        load_model=lambda settings: ScriptedModel(gold_handler(trajectories)),
        console=Console(width=120),
    )
    out = tmp_path / "out"
    data = toolbench_dir / "raw_data_stage_2.json"
    run = CliRunner().invoke(
        app, ["eval", "static", "--data", str(data), "--limit", "3", "--out", str(out)]
    )
    assert run.exit_code == 0, run.output
    assert "Plan ACC" in run.output and "R-L" in run.output
    assert "plan misses: none" in run.output
    written = json.loads((out / "metrics.json").read_text())
    assert written["plan_acc"] == 1.0
    assert all(pair.split("→")[0] == pair.split("→")[1] for pair in written["plan_confusion"])
    assert sum(written["plan_confusion"].values()) == written["steps"]
    score = CliRunner().invoke(app, ["eval", "score", str(out / "predictions.json")])
    assert score.exit_code == 0 and "Act. EM" in score.output


def test_plan_misses_rank_the_wrong_plans() -> None:
    """The misses line leaves out right plans and lists the most frequent miss first."""
    metrics = dataclasses.replace(
        score([]),
        plan_confusion={"call→call": 9, "call→finish": 1, "give up→call": 5, "finish→finish": 3},
    )
    assert plan_misses(metrics) == "plan misses (gold → predicted): give up→call 5, call→finish 1"

"""Static (teacher-forced) evaluation of the three role models on ToolBench-format data.

Reproduces how α-UMi's ``GLPFT/inference_utils/toolbench/infer_pipeline.py``
(X-PLUG/Multi-LLM-Agent) builds ``predictions.json``, so that
``worker.evaluation.metrics.score`` (and the reference's ``evaluate-multi_agent.py``)
read it as they read the reference's own files:

- **Steps.** Every assistant turn containing ``Next: caller.``, ``Next: conclusion.`` or
  ``Next: give up.`` is one step. Its gold ``reference`` is
  ``"assistant: <turn></s><next role>: <next turn></s>"`` when the turn contains
  ``Next: caller`` or ``Next: conclusion.``, else (give up) the turn's text alone.
- **Teacher forcing.** Every prompt is built from the *gold* turns before the step; the
  models' own earlier outputs never enter a later step.
- **Planner.** The planner generates from the gold history. Its text loses a leading
  ``": "`` and becomes ``"none"`` when it is empty, ``"."`` or ``","`` once stripped.
- **Routing, on the planner's prediction** (as the reference pipeline; the markers are
  tested in this order, not by position): ``Next: give up.`` → the step's prediction is
  the text cut after that marker, and no other role runs; ``Next: conclusion.`` → cut
  there, the summarizer runs; otherwise the caller runs, on the text cut after
  ``Next: caller.`` or, with no marker, the text with ``"Next: caller."`` appended.
- **Caller and summarizer** get the gold history plus the planner's (cut) thought as an
  assistant turn, through ``protocol.caller_prompt`` / ``protocol.summarizer_prompt``
  (the training form; the reference inference script instead appends
  ``"planner: <thought></s>"``, see ``protocol.caller_prompt``). Their text is cleaned
  as the planner's, and the step's prediction is
  ``"asssitant: <thought></s>caller: <text>"`` or
  ``"asssitant: <thought></s>conclusion: <text>"``, the reference's spelling included
  (the metrics never read the word).

So the caller is always given the planner's *predicted* thought, never the gold one: a
gold call step the planner routes elsewhere scores Act. EM 0, exactly as in the paper's
numbers. Routing on the gold plan instead cannot be written as one prediction string the
reference script reads consistently (its plan label and action come from the same text).

Differences from the reference file, none of which the metrics read: entries are in step
order (the reference groups them by the role that ran), ``trajectory`` and ``turn`` say
where each step comes from, and the role prompts are stored under ``model_input`` /
``model_input_for_caller`` / ``model_input_for_summarizer``.

Constrained caller (``constrained=True``, an umiq addition): the caller's output is
forced to ``Action: <one of the step's tools>`` and a JSON object. ToolBench docs carry
no JSON schema, so each tool gets a permissive one (``tool_spec``): one property per key
of its ``input`` doc, any JSON value, none required, no other keys. A step whose tools
cannot be turned into ``ToolSpec``\\ s (a name that is not an identifier, duplicate names,
no tools) runs unconstrained and is counted in ``unconstrained_steps``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors import ToolSpec
from worker.agent import protocol
from worker.agent.roles import CallerConstraint, GenerationRequest, Role, RoleModel
from worker.agent.views import ALPHA_UMI, PromptView, view_of
from worker.errors import ProtocolError
from worker.evaluation.metrics import StaticMetrics, score

#: The view of ToolBench data (no ``prompt_view``): every tool, the reference JSON docs.
REFERENCE_VIEW = PromptView(ALPHA_UMI)

PREDICTION_ROLE_PREFIX = "asssitant: "
"""How the reference pipeline spells the assistant role in a prediction (sic)."""

Progress = Callable[[int], None]
"""Called with the number of generations just finished."""


@dataclass
class Step:
    """One assistant step of a gold trajectory, and what the models made of it."""

    trajectory: int
    turn: int
    tools: list[dict[str, Any]]
    instruction: str
    history: list[dict[str, str]]
    reference: str
    view: PromptView = REFERENCE_VIEW
    """The prompt view the trajectory was written for (``views``, its whole spec: name,
    top k, restated request): prompts are rendered in it, as the worker and training
    render them."""
    model_input: str = ""
    planner_output: str = ""
    planner_prediction: str = ""
    route: str = ""
    role_input: str = ""
    role_output: str = ""
    predictions: str = ""

    def record(self) -> dict[str, Any]:
        """The step as a ``predictions.json`` entry."""
        entry: dict[str, Any] = {
            "trajectory": self.trajectory,
            "turn": self.turn,
            "tools": self.tools,
            "instruction": self.instruction,
            "history": self.history,
            "model_input": self.model_input,
            "reference": self.reference,
            "planner_prediction": self.planner_prediction,
            "predictions": self.predictions,
        }
        if self.route in ("caller", "summarizer"):
            entry[f"model_input_for_{self.route}"] = self.role_input
        return entry


def evaluation_steps(
    trajectories: Sequence[Mapping[str, Any]],
    *,
    limit: int | None = None,
    max_steps: int | None = None,
) -> list[Step]:
    """The steps of the first ``limit`` trajectories (all when ``None``), at most ``max_steps``."""
    steps: list[Step] = []
    for t, trajectory in enumerate(trajectories[:limit] if limit is not None else trajectories):
        try:
            tools, turns = trajectory["tools"], trajectory["conversations"]
        except KeyError as exc:
            raise ProtocolError(f"trajectory {t} has no {exc.args[0]!r} field") from exc
        for j, turn in enumerate(turns):
            if turn["from"] != "assistant":
                continue
            value = turn["value"]
            if not any(marker in value for marker in protocol.MARKERS.values()):
                continue
            if "Next: caller" in value or protocol.CONCLUSION in value:
                if j + 1 >= len(turns):
                    raise ProtocolError(
                        f"trajectory {t}, turn {j}: the assistant hands over to the next "
                        "role but the trajectory ends there"
                    )
                following = turns[j + 1]
                reference = f"assistant: {value}</s>{following['from']}: {following['value']}</s>"
            else:
                reference = value
            steps.append(
                Step(
                    trajectory=t,
                    turn=j,
                    tools=list(tools),
                    instruction=trajectory.get("instruction", ""),
                    history=list(turns[:j]),
                    reference=reference,
                    view=view_of(trajectory),
                )
            )
            if max_steps is not None and len(steps) >= max_steps:
                return steps
    return steps


def clean_output(text: str) -> str:
    """A generation as the reference pipeline keeps it (leading ``": "`` off, blank → none)."""
    if text.startswith(": "):
        text = text[2:]
    if text.strip() in ("", ".", ","):
        return "none"
    return text


def route_planner(text: str) -> tuple[str, str]:
    """The role that runs after this planner text and the thought it gets (reference order)."""
    for marker, route in (
        (protocol.GIVE_UP, "give up"),
        (protocol.CONCLUSION, "summarizer"),
        (protocol.CALLER, "caller"),
    ):
        if marker in text:
            return route, text[: text.index(marker) + len(marker)]
    return "caller", text + protocol.CALLER


def tool_spec(tool: Mapping[str, Any]) -> ToolSpec:
    """A permissive ``ToolSpec`` for a ToolBench doc: its input keys, any values, all optional."""
    inputs = tool.get("input") or {}
    return ToolSpec(
        name=tool["Name"],
        description=str(tool.get("function", "")),
        parameters={
            "type": "object",
            "properties": {key: {} for key in inputs},
            "additionalProperties": False,
        },
    )


def caller_constraint(tools: Sequence[Mapping[str, Any]]) -> CallerConstraint | None:
    """The constraint for a step's tools, or ``None`` when they cannot form one."""
    names = [tool.get("Name") for tool in tools]
    if not tools or len(set(names)) != len(names):
        return None
    try:
        return CallerConstraint(tools=tuple(tool_spec(tool) for tool in tools))
    except (ValueError, KeyError, TypeError):
        return None


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _generate(
    model: RoleModel,
    requests: Sequence[GenerationRequest],
    batch_size: int,
    progress: Progress | None,
) -> list[str]:
    texts: list[str] = []
    for batch in _batches(requests, batch_size):
        generations = model.generate(list(batch))
        if len(generations) != len(batch):
            raise ProtocolError(
                f"role model answered {len(generations)} generations for {len(batch)} requests"
            )
        texts.extend(g.text for g in generations)
        if progress is not None:
            progress(len(batch))
    return texts


@dataclass
class StaticResult:
    """The evaluated steps, their metrics, and how the run was set up."""

    steps: list[Step]
    metrics: StaticMetrics
    run: dict[str, Any] = field(default_factory=dict)

    def predictions(self) -> list[dict[str, Any]]:
        """The ``predictions.json`` entries."""
        return [step.record() for step in self.steps]

    def metrics_record(self) -> dict[str, Any]:
        """The ``metrics.json`` content: the metrics, the reference's key names, the run."""
        return {
            **self.metrics.as_dict(),
            "reference_keys": self.metrics.reference_keys(),
            "run": self.run,
        }

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """Write ``predictions.json`` and ``metrics.json`` under ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        predictions = out / "predictions.json"
        metrics = out / "metrics.json"
        predictions.write_text(json.dumps(self.predictions(), indent=2), encoding="utf-8")
        metrics.write_text(json.dumps(self.metrics_record(), indent=2), encoding="utf-8")
        return predictions, metrics


def evaluate_static(
    model: RoleModel,
    steps: Sequence[Step],
    *,
    max_new_tokens: int = 160,
    batch_size: int = 8,
    constrained: bool = False,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    agent: str = "multi",
) -> StaticResult:
    """Run the planner on every step, then the caller or summarizer it routes to; score.

    ``on_total`` is told the number of generations as soon as it is known (the planner's
    first, then the planner's plus the routed roles'), for a progress bar.
    ``agent="single"`` evaluates the single-LLM baseline instead (``evaluate_single``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if agent == "single":
        return evaluate_single(
            model,
            steps,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=progress,
            on_total=on_total,
        )
    if agent != "multi":
        raise ValueError(f"agent must be 'multi' or 'single', got {agent!r}")
    steps = list(steps)
    if on_total is not None:
        on_total(len(steps))
    planner_requests = []
    for step in steps:
        step.model_input = step.view.planner(step.tools, step.history)
        planner_requests.append(
            GenerationRequest(
                role="planner", prompt=step.model_input, max_new_tokens=max_new_tokens
            )
        )
    for step, text in zip(
        steps, _generate(model, planner_requests, batch_size, progress), strict=True
    ):
        step.planner_output = text
        step.route, step.planner_prediction = route_planner(clean_output(text))

    follow_ups: list[Step] = []
    requests: list[GenerationRequest] = []
    unconstrained = 0
    for step in steps:
        if step.route == "give up":
            step.predictions = step.planner_prediction
            continue
        turns = [*step.history, {"from": "assistant", "value": step.planner_prediction}]
        role: Role
        constraint = None
        if step.route == "caller":
            role = "caller"
            step.role_input = step.view.caller(step.tools, turns, step.planner_prediction)
            if constrained:
                constraint = caller_constraint(step.tools)
                unconstrained += constraint is None
        else:
            role = "summarizer"
            step.role_input = protocol.summarizer_prompt(turns)
        follow_ups.append(step)
        requests.append(
            GenerationRequest(
                role=role,
                prompt=step.role_input,
                max_new_tokens=max_new_tokens,
                constraint=constraint,
            )
        )
    if on_total is not None:
        on_total(len(steps) + len(requests))
    for step, text in zip(
        follow_ups, _generate(model, requests, batch_size, progress), strict=True
    ):
        step.role_output = text
        turn = "caller" if step.route == "caller" else "conclusion"
        step.predictions = (
            f"{PREDICTION_ROLE_PREFIX}{step.planner_prediction}</s>{turn}: {clean_output(text)}"
        )

    metrics = score(step.record() for step in steps)
    run = _run_record(
        model, steps, max_new_tokens, batch_size, "multi", unconstrained if constrained else None
    )
    run["constrained"] = constrained
    return StaticResult(steps=steps, metrics=metrics, run=run)


def single_prediction(text: str) -> tuple[str, str]:
    """A backbone output as a multi-agent prediction string, and the route it implies.

    The output is split with ``protocol.parse_backbone`` and written as the multi-agent
    pipeline writes its steps, so the same scorer reads both: a call becomes
    ``"asssitant: <thought>\n Next: caller.</s>caller: Action: …"``, a conclusion
    ``"…Next: conclusion.</s>conclusion: <answer>"``, a give-up the thought with
    ``Next: give up.``. An output with neither an action nor a conclusion is a caller
    step without a call (no action, Act. EM 0), as a planner text without a marker is.
    """
    out = protocol.parse_backbone(clean_output(text))
    thought = out.planner_thought()
    if out.next == "give up":
        return thought, "give up"
    if out.next == "conclusion":
        return f"{PREDICTION_ROLE_PREFIX}{thought}</s>conclusion: {out.answer}", "summarizer"
    return f"{PREDICTION_ROLE_PREFIX}{thought}</s>caller: {out.call.strip()}", "caller"


def evaluate_single(
    model: RoleModel,
    steps: Sequence[Step],
    *,
    max_new_tokens: int = 160,
    batch_size: int = 8,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> StaticResult:
    """Static metrics of the single-LLM baseline: one backbone generation per step.

    Each step's prompt is ``protocol.backbone_prompt`` over the gold history (teacher
    forcing, as for the roles); the output is scored through ``single_prediction`` with
    the same rules and denominators as the multi-agent predictions.
    """
    steps = list(steps)
    if on_total is not None:
        on_total(len(steps))
    requests = []
    for step in steps:
        step.model_input = step.view.backbone(step.tools, step.history)
        requests.append(
            GenerationRequest(
                role="backbone", prompt=step.model_input, max_new_tokens=max_new_tokens
            )
        )
    for step, text in zip(steps, _generate(model, requests, batch_size, progress), strict=True):
        step.planner_output = text
        step.predictions, step.route = single_prediction(text)
        step.planner_prediction = step.predictions
    metrics = score(step.record() for step in steps)
    run = _run_record(model, steps, max_new_tokens, batch_size, "single", None)
    return StaticResult(steps=steps, metrics=metrics, run=run)


def _run_record(
    model: RoleModel,
    steps: Sequence[Step],
    max_new_tokens: int,
    batch_size: int,
    agent: str,
    unconstrained: int | None,
) -> dict[str, Any]:
    """How a static run was set up (``metrics.json``'s ``run``)."""
    return {
        "steps": len(steps),
        "trajectories": len({step.trajectory for step in steps}),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "constrained": False,
        "unconstrained_steps": unconstrained,
        "agent": agent,
        "model": model.describe(),
    }

"""Split normalised ToolBench trajectories into per-role training samples.

Reproduces the α-UMi reference preprocessing
(``GLPFT/process_data/toolbench/prepro_{planner,caller,summarizer,backbone}.py``).
Each sample is ``{"tools", "history", "input", "target"}``: ``history`` is the list of
turns before the target turn, ``input`` the full prompt, ``target`` the text to learn.

Which turns become samples (the same in both modes):

- planner: every assistant turn that gives up or is followed by a caller or conclusion
  turn, except one followed by a caller turn flagged as a hallucinated tool;
- caller: every caller turn not flagged as a hallucinated tool; its thought is the turn
  before it;
- summarizer: every conclusion turn whose value is not ``"none"``;
- backbone: every assistant turn that gives up or is followed by a caller or
  conclusion turn, with the target folded as in ``protocol.backbone_turns``.

``reference_quirks=True`` reproduces the reference files byte for byte, including two
ways in which its prompts differ from what the model sees at inference:

- backbone give-up samples reuse the prompt of the trajectory's previous backbone
  sample, so their ``input`` history is stale and misses the turns since (their
  ``history`` field is right); a give-up with no earlier backbone sample in the
  trajectory gets its own prompt, where the reference would reuse the previous
  trajectory's prompt;
- the caller's history leaves out hallucinated caller turns (but keeps their
  observations), and the summarizer's leaves out ``"none"`` conclusions.

``reference_quirks=False``, umiq's choice for its own training data, builds every
``input`` with the public prompt functions from the turns before the target, which is
exactly what the agent loop sends at inference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.agent import protocol
from worker.agent.roles import ALL_ROLES as ROLES
from worker.agent.views import PromptView, view_of
from worker.errors import ProtocolError

Sample = dict[str, Any]


def load_trajectories(path: str | Path) -> list[dict[str, Any]]:
    """Load trajectories from a JSON list file, or from every ``*.json`` under a folder.

    Files in a folder are read in sorted path order.
    """
    path = Path(path)
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    trajectories: list[dict[str, Any]] = []
    for file in files:
        data = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ProtocolError(f"{file}: expected a JSON list of trajectories")
        trajectories.extend(data)
    return trajectories


def role_samples(
    trajectory: dict[str, Any], *, reference_quirks: bool = True, view: PromptView | None = None
) -> dict[str, list[Sample]]:
    """Split one trajectory into samples keyed by role (see the module docstring).

    Prompts are rendered in ``view``, by default the one the trajectory names
    (``prompt_view``; ToolBench data names none and gets the α-UMi reference form).
    """
    view = view if view is not None else view_of(trajectory)
    try:
        tools = trajectory["tools"]
        turns = trajectory["conversations"]
    except KeyError as exc:
        raise ProtocolError(f"trajectory has no {exc.args[0]!r} field") from exc

    out: dict[str, list[Sample]] = {role: [] for role in ROLES}
    last_backbone_input: str | None = None

    def sample(i: int, prompt: str, target: str) -> Sample:
        return {"tools": tools, "history": turns[:i], "input": prompt, "target": target}

    for i, turn in enumerate(turns):
        role = turn["from"]
        value = turn["value"]
        before = turns[:i]
        next_turn = turns[i + 1] if i + 1 < len(turns) else None
        following = next_turn["from"] if next_turn is not None else None

        if role == "assistant":
            gives_up = protocol.GIVE_UP in value
            if gives_up or following in ("caller", "conclusion"):
                if not (
                    next_turn is not None and following == "caller" and _hallucinated(next_turn)
                ):
                    out["planner"].append(sample(i, view.planner(tools, before), value))
                prompt = view.backbone(tools, before)
                if gives_up and reference_quirks and last_backbone_input is not None:
                    prompt = last_backbone_input
                elif not gives_up:
                    last_backbone_input = prompt
                target = protocol.fold_assistant(value, next_turn)
                out["backbone"].append(sample(i, prompt, target))

        elif role == "caller" and not _hallucinated(turn):
            history = before
            if reference_quirks:
                history = [t for t in before if not (t["from"] == "caller" and _hallucinated(t))]
            thought = turns[i - 1]["value"]
            out["caller"].append(sample(i, view.caller(tools, history, thought), value))

        elif role == "conclusion" and value != "none":
            history = before
            if reference_quirks:
                history = [t for t in before if t != {"from": "conclusion", "value": "none"}]
            out["summarizer"].append(sample(i, view.summarizer(history), value))

    return out


def _hallucinated(turn: dict[str, str]) -> bool:
    return protocol.HALLUCINATED_CALL in turn["value"]

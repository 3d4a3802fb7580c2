"""The α-UMi prompts, parsers and role split against the reference ToolBench samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from worker.agent import protocol
from worker.data.samples import ROLES, load_trajectories, role_samples
from worker.errors import ProtocolError

TOOLS = [
    {"Name": "get_quiz", "function": "Fetch a quiz.", "input": {"quizid": "string, the quiz"}},
    {"Name": "list_quizzes", "function": "List quizzes.", "input": {}},
]
STALE_GIVE_UPS = 6  # backbone give-up samples in the fixtures whose prompt is stale


@pytest.fixture(scope="module")
def trajectories(toolbench_dir: Path) -> list[dict[str, Any]]:
    return load_trajectories(toolbench_dir / "raw_data_stage_2.json")


@pytest.fixture(scope="module")
def reference(toolbench_dir: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        role: json.loads((toolbench_dir / f"train_{role}.json").read_text(encoding="utf-8"))
        for role in ROLES
    }


def split_all(trajectories: list[dict[str, Any]], **options: bool) -> dict[str, list[dict]]:
    merged: dict[str, list[dict]] = {role: [] for role in ROLES}
    for trajectory in trajectories:
        for role, samples in role_samples(trajectory, **options).items():
            merged[role].extend(samples)
    return merged


def hallucination_trajectory() -> dict[str, Any]:
    bad_call = "Action: invalid_hallucination_function_name\nAction Input: {}"
    return {
        "tools": TOOLS,
        "conversations": [
            {"from": "user", "value": "Show quiz 1."},
            {"from": "assistant", "value": "Call a tool.\n Next: caller."},
            {"from": "caller", "value": bad_call},
            {"from": "observation", "value": "no such function"},
            {"from": "assistant", "value": "Fetch quiz 1.\n Next: caller."},
            {"from": "caller", "value": protocol.format_caller("get_quiz", {"quizid": "1"})},
            {"from": "observation", "value": "{'id': 1}"},
            {"from": "assistant", "value": "Done.\n Next: conclusion."},
            {"from": "conclusion", "value": "Quiz 1 has id 1."},
        ],
    }


# -- role split -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_reference_split_matches_reference_files(trajectories, reference, role):
    """With reference quirks the role split equals the reference train_<role>.json exactly."""
    assert split_all(trajectories, reference_quirks=True)[role] == reference[role]


def test_reference_split_counts(trajectories):
    """The 20 fixture trajectories give 79 planner, 59 caller, 14 summarizer, 79 backbone."""
    counts = {role: len(s) for role, s in split_all(trajectories).items()}
    assert counts == {"planner": 79, "caller": 59, "summarizer": 14, "backbone": 79}


def test_corrected_split_differs_only_in_stale_backbone_give_ups(trajectories, reference):
    """Without quirks only the backbone give-up prompts change, to the fresh prompt."""
    corrected = split_all(trajectories, reference_quirks=False)
    for role in ("planner", "caller", "summarizer"):
        assert corrected[role] == reference[role]
    changed = [
        (ours, ref)
        for ours, ref in zip(corrected["backbone"], reference["backbone"], strict=True)
        if ours != ref
    ]
    assert len(changed) == STALE_GIVE_UPS
    for ours, ref in changed:
        assert ref["target"].endswith("\nconclusion: give up.")
        assert {k: v for k, v in ours.items() if k != "input"} == {
            k: v for k, v in ref.items() if k != "input"
        }
        assert ours["input"] == protocol.backbone_prompt(ours["tools"], ours["history"])


def test_reference_give_up_reuses_previous_backbone_prompt(reference):
    """Each reference backbone give-up sample carries the input of the sample before it."""
    backbone = reference["backbone"]
    give_ups = [i for i, s in enumerate(backbone) if s["target"].endswith("conclusion: give up.")]
    assert len(give_ups) == STALE_GIVE_UPS
    for i in give_ups:
        assert backbone[i]["input"] == backbone[i - 1]["input"]


def test_hallucinated_call_yields_no_caller_or_planner_sample():
    """A hallucinated caller turn is no caller target, nor is the thought that led to it."""
    split = role_samples(hallucination_trajectory())
    assert [s["target"] for s in split["planner"]] == [
        "Fetch quiz 1.\n Next: caller.",
        "Done.\n Next: conclusion.",
    ]
    assert len(split["caller"]) == 1
    assert len(split["backbone"]) == 3


def test_reference_caller_history_omits_hallucinated_calls():
    """Reference quirks drop hallucinated calls from the caller's history; umiq keeps them."""
    trajectory = hallucination_trajectory()
    quirky = role_samples(trajectory, reference_quirks=True)["caller"][0]["input"]
    corrected = role_samples(trajectory, reference_quirks=False)["caller"][0]["input"]
    assert "invalid_hallucination_function_name</s>" not in quirky
    assert "caller: Action: invalid_hallucination_function_name" in corrected


def test_none_conclusion_yields_no_summarizer_sample():
    """A conclusion whose value is 'none' is no summarizer target."""
    trajectory = hallucination_trajectory()
    trajectory["conversations"][-1] = {"from": "conclusion", "value": "none"}
    assert role_samples(trajectory)["summarizer"] == []


def test_load_trajectories_reads_a_folder(tmp_path):
    """A folder loads as the concatenation of its JSON files in sorted order."""
    (tmp_path / "b.json").write_text(json.dumps([{"n": 2}]))
    (tmp_path / "a.json").write_text(json.dumps([{"n": 1}]))
    assert load_trajectories(tmp_path) == [{"n": 1}, {"n": 2}]


# -- prompts ----------------------------------------------------------------------------


def test_planner_prompts_equal_reference_inputs(reference):
    """planner_prompt rebuilds every reference planner input from its tools and history."""
    for s in reference["planner"]:
        assert protocol.planner_prompt(s["tools"], s["history"]) == s["input"]


def test_caller_prompts_equal_reference_inputs(reference):
    """caller_prompt rebuilds every reference caller input, the thought being the last turn."""
    for s in reference["caller"]:
        thought = s["history"][-1]["value"]
        assert protocol.caller_prompt(s["tools"], s["history"], thought) == s["input"]


def test_summarizer_prompts_equal_reference_inputs(reference):
    """summarizer_prompt rebuilds every reference summarizer input from its history."""
    for s in reference["summarizer"]:
        assert protocol.summarizer_prompt(s["history"]) == s["input"]


def test_backbone_prompts_equal_reference_inputs_but_stale_give_ups(reference):
    """backbone_prompt rebuilds every reference backbone input except the stale give-ups."""
    mismatches = sum(
        protocol.backbone_prompt(s["tools"], s["history"]) != s["input"]
        for s in reference["backbone"]
    )
    assert mismatches == STALE_GIVE_UPS


def test_prompts_end_with_the_role_cue():
    """Each prompt ends with the cue of the role that answers it."""
    turns = [{"from": "user", "value": "hi"}]
    assert protocol.planner_prompt(TOOLS, turns).endswith("give up. assistant: ")
    assert protocol.caller_prompt(TOOLS, turns, "t").endswith("request. caller: ")
    assert protocol.summarizer_prompt(turns).endswith("hi</s> conclusion: ")
    assert protocol.backbone_prompt(TOOLS, turns).endswith("question.\n assistant: ")


def test_history_string_renders_each_role():
    """Every role ends with </s> except observations, which run straight into the next turn."""
    turns = [
        {"from": role, "value": role[0]}
        for role in ("user", "assistant", "caller", "observation", "conclusion")
    ]
    expected = "user: u</s>assistant: a</s>caller: c</s>observation: oconclusion: c</s>"
    assert protocol.history_string(turns) == expected


def test_history_string_refuses_unknown_role():
    """A turn from an unknown role raises ProtocolError naming it."""
    with pytest.raises(ProtocolError, match="'system'"):
        protocol.history_string([{"from": "system", "value": "x"}])


def test_tool_docs_and_names():
    """Tool docs are one JSON line per tool; names are comma-joined."""
    assert protocol.tool_docs(TOOLS) == "".join(json.dumps(t) + "\n" for t in TOOLS)
    assert protocol.tool_names(TOOLS) == "get_quiz, list_quizzes"


def test_placeholders_in_values_are_not_expanded():
    """A placeholder inside a tool doc or turn stays literal in the prompt."""
    tools = [{"Name": "t", "function": "see {history}", "input": {}}]
    prompt = protocol.planner_prompt(tools, [{"from": "user", "value": "{doc}"}])
    assert '"see {history}"' in prompt
    assert "user: {doc}</s>" in prompt


def test_backbone_turns_fold_calls_and_conclusions():
    """The backbone form merges each thought with its call or conclusion and drops those turns."""
    folded = protocol.backbone_turns(hallucination_trajectory()["conversations"][4:])
    assert folded == [
        {
            "from": "assistant",
            "value": 'Fetch quiz 1.\nAction: get_quiz\nAction Input: {\n  "quizid": "1"\n}',
        },
        {"from": "observation", "value": "{'id': 1}"},
        {"from": "assistant", "value": "Done.\nconclusion: Quiz 1 has id 1."},
    ]


# -- planner output -------------------------------------------------------------------


@pytest.mark.parametrize("step", ["caller", "conclusion", "give up"])
def test_parse_planner_reads_each_marker(step):
    """Each marker sets next and stays at the end of the thought."""
    text = f"Think.\n {protocol.MARKERS[step]}"
    assert protocol.parse_planner(text) == protocol.PlannerOutput(thought=text, next=step)


def test_parse_planner_cuts_after_marker():
    """Text after the marker is dropped."""
    parsed = protocol.parse_planner("Think.\n Next: conclusion. And then more.")
    assert parsed.thought == "Think.\n Next: conclusion."


def test_parse_planner_earliest_marker_wins():
    """With two markers the earlier one decides."""
    parsed = protocol.parse_planner("A.\n Next: caller. B.\n Next: give up.")
    assert parsed == protocol.PlannerOutput(thought="A.\n Next: caller.", next="caller")


def test_parse_planner_without_marker_means_caller():
    """No marker means caller, with the marker appended as the reference inference does."""
    parsed = protocol.parse_planner("Look it up")
    assert parsed == protocol.PlannerOutput(thought="Look it upNext: caller.", next="caller")


def test_parse_planner_reads_every_reference_target(reference):
    """Every reference planner target parses back to itself."""
    for s in reference["planner"]:
        assert protocol.parse_planner(s["target"]).thought == s["target"]


# -- caller output ----------------------------------------------------------------------


def test_parse_caller_reads_call():
    """A well-formed call gives the tool and its arguments."""
    parsed = protocol.parse_caller('Action: get_quiz\nAction Input: {\n  "quizid": "2"\n}')
    assert parsed == protocol.CallerOutput(tool="get_quiz", arguments={"quizid": "2"})


def test_parse_caller_accepts_empty_input():
    """An empty Action Input means no arguments."""
    assert protocol.parse_caller("Action: list_quizzes\nAction Input: ").arguments == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("get_quiz\nAction Input: {}", "no 'Action:'"),
        ("Action: get_quiz", "no 'Action Input:'"),
        ("Action: \nAction Input: {}", "names no tool"),
        ('Action: get_quiz\nAction Input: {"quizid": 2', "not valid JSON"),
        ('Action: get_quiz\nAction Input: {"quizid": 2} then', "not valid JSON"),
        ('Action: get_quiz\nAction Input: ["2"]', "must be a JSON object, got list"),
    ],
    ids=["no-action", "no-input", "no-tool", "bad-json", "trailing-text", "not-object"],
)
def test_parse_caller_refuses_malformed_output(text, reason):
    """A malformed call raises ProtocolError saying what is wrong."""
    with pytest.raises(ProtocolError, match=reason):
        protocol.parse_caller(text)


def test_format_caller_round_trips():
    """format_caller output parses back to the same tool and arguments."""
    arguments = {"city": "Zürich", "limit": 3, "nested": {"a": [1, 2]}}
    parsed = protocol.parse_caller(protocol.format_caller("search", arguments))
    assert parsed == protocol.CallerOutput(tool="search", arguments=arguments)


def test_format_caller_reproduces_reference_targets(reference):
    """Parsing then formatting every reference caller target gives it back byte for byte."""
    for s in reference["caller"]:
        parsed = protocol.parse_caller(s["target"])
        assert protocol.format_caller(parsed.tool, parsed.arguments) == s["target"]


def test_format_caller_empty_arguments():
    """No arguments are written as {}."""
    assert protocol.format_caller("list_quizzes", {}) == "Action: list_quizzes\nAction Input: {}"


# -- weight -----------------------------------------------------------------------------


def test_import_does_not_load_torch():
    """Importing the protocol and the role split does not import torch."""
    code = "import sys, worker.agent.protocol, worker.data.samples; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_calls_seen_pairs_each_observation_with_its_call() -> None:
    """Each observation carries the tool of the caller turn before it; an unparseable
    call leaves the tool unknown and a non-JSON observation reads as an error."""
    from worker.agent.protocol import calls_seen

    turns = [
        {"from": "user", "value": "Is INV-1 open?"},
        {"from": "caller", "value": 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}'},
        {"from": "observation", "value": '{"error": "", "response": {"status": "open"}}'},
        {"from": "caller", "value": "no call here"},
        {"from": "observation", "value": "connection refused"},
    ]
    first, second = calls_seen(turns)
    assert (first.tool, first.ok, first.response) == ("get_invoice", True, {"status": "open"})
    assert (second.tool, second.ok, second.error) == (None, False, "connection refused")

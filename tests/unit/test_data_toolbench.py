"""ToolBench import (α-UMi stages 1 and 2) and lossless export."""

from __future__ import annotations

import json

import pytest

from worker.data.toolbench import (
    export_toolbench,
    export_trajectory,
    import_stage_1,
    import_toolbench,
    stage_1,
)
from worker.errors import ProtocolError


def load(folder, name):
    return json.loads((folder / name).read_text(encoding="utf-8"))


def test_import_reproduces_stage_2_from_stage_1(toolbench_dir):
    """Importing the stage-1 reference file yields the stage-2 reference file exactly."""
    stage1 = load(toolbench_dir, "raw_data_stage_1.json")
    assert import_toolbench(stage1) == load(toolbench_dir, "raw_data_stage_2.json")


def test_reference_trajectories_round_trip(toolbench_dir):
    """Exporting the stage-2 references and importing them again changes nothing."""
    stage2 = load(toolbench_dir, "raw_data_stage_2.json")
    assert import_toolbench(export_toolbench(stage2)) == stage2


def test_export_keeps_the_calls_of_the_native_chains(toolbench_dir):
    """Exported chains call the same functions with the same arguments as the originals."""
    stage1 = load(toolbench_dir, "raw_data_stage_1.json")
    exported = export_toolbench(load(toolbench_dir, "raw_data_stage_2.json"))
    for original, mine in zip(stage1, exported, strict=True):
        calls = [m["function_call"] for m in original["chains"][2:] if m.get("function_call")]
        ours = [m["function_call"] for m in mine["chains"][2:] if m.get("function_call")]
        assert [c["name"] for c in ours] == [c["name"] for c in calls]
        assert [c["arguments"] for c in ours if c["name"] != "Finish"] == [
            c["arguments"] for c in calls if c["name"] != "Finish"
        ]


ANSWER = {
    "answer_generation": {
        "query": "Weather in Paris?",
        "function": [
            {
                "name": "x" * 70,
                "description": "d" * 300,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "The city."},
                        "n": {"type": "integer"},
                    },
                },
            },
            {"name": "Finish", "description": "end", "parameters": {"properties": {}}},
        ],
        "train_messages": [
            [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": "Look it up.",
                    "function_call": {"name": "x" * 64, "arguments": '{"city": "Paris"}'},
                },
                {
                    "role": "function",
                    "name": "x" * 64,
                    "content": '{"error": "", "response": "sunny"}',
                },
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {
                        "name": "Finish",
                        "arguments": '{"return_type": "give_answer"}',
                    },
                },
            ]
        ],
    }
}


def test_answer_files_become_stage_1_records():
    """An answer file's functions become α-UMi docs cut as the reference cuts them."""
    record = stage_1(ANSWER)
    assert record["tools"] == [
        {
            "Name": "x" * 64,
            "function": "d" * 256,
            "input": {"city": "string, The city.", "n": "integer"},
        }
    ]


def test_answer_files_import_with_the_reference_fallbacks():
    """A Finish without final_answer concludes 'none'; an observation keeps its response."""
    [trajectory] = import_toolbench([ANSWER])
    assert trajectory["conversations"] == [
        {"from": "user", "value": "Weather in Paris?"},
        {"from": "assistant", "value": "Look it up.\n Next: caller."},
        {"from": "caller", "value": "Action: " + "x" * 64 + '\nAction Input: {"city": "Paris"}'},
        {"from": "observation", "value": "sunny"},
        {"from": "assistant", "value": " Next: conclusion."},
        {"from": "conclusion", "value": "none"},
    ]


def test_answer_files_without_train_messages_are_skipped():
    """An answer file with no train messages yields no trajectory, as in the reference."""
    assert import_toolbench([{"answer_generation": {"query": "q"}}]) == []


def test_unparseable_finish_arguments_fall_back_like_the_reference():
    """Finish arguments that are not JSON still yield the final answer text after its key."""
    record = {
        "tools": [],
        "instruction": "q",
        "chains": [
            {"role": "system", "content": ""},
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": "done",
                "function_call": {"name": "Finish", "arguments": '{"final_answer": "42"'},
            },
        ],
    }
    assert import_stage_1(record)["conversations"][-1] == {"from": "conclusion", "value": "42"}


def test_give_up_round_trips():
    """A trajectory that gives up survives export and import unchanged."""
    trajectory = {
        "tools": [],
        "instruction": "q",
        "conversations": [
            {"from": "user", "value": "q"},
            {"from": "assistant", "value": "No such record.\n Next: give up."},
        ],
    }
    assert import_stage_1(export_trajectory(trajectory)) == trajectory


def test_export_refuses_a_turn_without_a_marker():
    """An assistant turn with no ' Next: …' marker cannot be exported."""
    trajectory = {
        "tools": [],
        "instruction": "q",
        "conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "hm"}],
    }
    with pytest.raises(ProtocolError, match="marker"):
        export_trajectory(trajectory)


def test_acme_gold_trajectories_round_trip(tmp_path):
    """Gold Acme trajectories (answers and give-ups) survive export and import unchanged."""
    from examples.acme.tasks import Facts, available_families, generate, solve
    from examples.acme.tasks.world import in_process_world

    with in_process_world(tmp_path, seed=2) as world:
        families = available_families(world)
        splits = generate(Facts.gather(world), seed=2, per_family=1, families=families)
        trajectories = []
        for inst in splits["train"]:
            world.reset()
            trajectories.append(solve(world, inst).trajectory)
    assert import_toolbench(export_toolbench(trajectories)) == trajectories

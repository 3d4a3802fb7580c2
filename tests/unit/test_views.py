"""Prompt views: compact tool docs, BM25 retrieval, and the reference form kept byte-exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.agent import protocol
from worker.agent.views import (
    ALPHA_UMI,
    COMPACT,
    PromptView,
    compact_doc,
    rank,
    recall_at_k,
    strip_examples,
    view_of,
)
from worker.data.samples import role_samples

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "toolbench"

TOOLS = [
    {
        "Name": "list_vendors",
        "function": "List vendors, optionally by country or by a part of the name.",
        "input": {"country": "string, ISO country code, e.g. DE.", "name": "string, Part of it."},
    },
    {
        "Name": "get_vendor",
        "function": "Get one vendor: name, country, IBAN and contact.",
        "input": {"vendor_id": "string, Vendor id, e.g. V-0042."},
    },
    {
        "Name": "get_invoice",
        "function": "Get one invoice: vendor, amount, due date and status.",
        "input": {"invoice_id": "string, Invoice id, e.g. INV-1001."},
    },
    {
        "Name": "get_purchase_order",
        "function": "Get one purchase order with its lines.",
        "input": {"po_id": "string, Purchase order id, e.g. PO-4501."},
    },
    {
        "Name": "schedule_payment",
        "function": "Schedule the payment of an open invoice (e.g. after a match).",
        "input": {"invoice_id": "string, Invoice id, e.g. INV-1001.", "date": "string, "},
    },
    {
        "Name": "send_email",
        "function": "Send an e-mail.",
        "input": {"to": "string, Recipient address, e.g. anna.schmidt@example.com."},
    },
]


def test_strip_examples_removes_example_values() -> None:
    """Example clauses, trailing or in parentheses, leave the description without them."""
    assert strip_examples("Invoice id, e.g. INV-1001.") == "Invoice id."
    assert strip_examples("Recipient address, e.g. anna.schmidt@example.com.") == (
        "Recipient address."
    )
    assert strip_examples("Dispute an invoice (e.g. its amount is wrong), stating why.") == (
        "Dispute an invoice, stating why."
    )
    assert strip_examples("Part of the name") == "Part of the name."


def test_compact_doc_carries_no_example_id() -> None:
    """A compact doc names the tool, its parameters and meanings, and no example value."""
    line = compact_doc(TOOLS[2])
    assert line.startswith("get_invoice(invoice_id: string): Get one invoice")
    assert "INV-1001" not in line and "e.g." not in line
    assert "\n" not in line


def test_retrieval_finds_the_tool_of_a_lower_case_id() -> None:
    """An id prefix written in lower case ranks the tool whose parameter takes such ids first."""
    ranked = [name for name, _ in rank(TOOLS, "where does inv-1008 stand")]
    assert ranked[0] == "get_invoice"
    ranked = [name for name, _ in rank(TOOLS, "Which country is V0042 in?")]
    assert ranked[0] in ("get_vendor", "list_vendors")


def test_compact_view_shows_top_k_and_every_called_tool() -> None:
    """The compact view shows the top k for the request plus tools the history called."""
    view = PromptView(COMPACT, top_k=1)
    turns = [{"from": "user", "value": "Is INV-1001 paid?"}]
    assert [t["Name"] for t in view.shown(TOOLS, turns)] == ["get_invoice"]
    turns += [
        {"from": "assistant", "value": "Mail it.\n Next: caller."},
        {"from": "caller", "value": protocol.format_caller("send_email", {"to": "x"})},
        {"from": "observation", "value": '{"error": "", "response": {}}'},
    ]
    shown = [t["Name"] for t in view.shown(TOOLS, turns)]
    assert "send_email" in shown and len(shown) == 2


def test_alpha_umi_view_is_the_reference_prompt() -> None:
    """The α-UMi view renders exactly what the protocol's reference functions render."""
    view = PromptView(ALPHA_UMI)
    turns = [{"from": "user", "value": "Is INV-1001 paid?"}]
    assert view.planner(TOOLS, turns) == protocol.planner_prompt(TOOLS, turns)
    assert view.backbone(TOOLS, turns) == protocol.backbone_prompt(TOOLS, turns)
    thought = "Fetch it.\n Next: caller."
    history = [*turns, {"from": "assistant", "value": thought}]
    assert view.caller(TOOLS, history, thought) == protocol.caller_prompt(TOOLS, history, thought)


def test_compact_prompt_is_shorter_and_keeps_the_protocol() -> None:
    """A compact planner prompt keeps the α-UMi template around fewer, shorter docs."""
    turns = [{"from": "user", "value": "Is INV-1001 paid?"}]
    compact = PromptView(COMPACT, top_k=2).planner(TOOLS, turns)
    full = PromptView(ALPHA_UMI).planner(TOOLS, turns)
    assert len(compact) < len(full)
    assert compact.startswith("You have assess to the following apis:\n")
    assert compact.endswith(" assistant: ")
    assert "e.g." not in compact


def test_unknown_view_is_refused() -> None:
    """A view name that does not exist is refused with the names that do."""
    with pytest.raises(ValueError, match="unknown prompt view 'short'"):
        PromptView("short")


def test_trajectory_names_its_view_and_toolbench_data_keeps_the_reference() -> None:
    """Samples follow the trajectory's prompt_view; without one they are the reference form."""
    trajectory = {
        "tools": TOOLS,
        "conversations": [
            {"from": "user", "value": "Is INV-1001 paid?"},
            {"from": "assistant", "value": "Fetch it.\n Next: caller."},
            {
                "from": "caller",
                "value": protocol.format_caller("get_invoice", {"invoice_id": "INV-1001"}),
            },
            {"from": "observation", "value": '{"error": "", "response": {"status": "paid"}}'},
            {"from": "assistant", "value": "It is paid.\n Next: conclusion."},
            {"from": "conclusion", "value": "Yes, INV-1001 is paid."},
        ],
    }
    assert view_of(trajectory).name == ALPHA_UMI
    reference = role_samples(trajectory, reference_quirks=False)
    assert reference["planner"][0]["input"] == protocol.planner_prompt(
        TOOLS, trajectory["conversations"][:1]
    )
    compact = role_samples({**trajectory, "prompt_view": COMPACT}, reference_quirks=False)
    assert "INV-1001." not in compact["caller"][0]["input"].split("The conversation history")[0]
    assert len(compact["caller"][0]["input"]) < len(reference["caller"][0]["input"])


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="the shared ToolBench fixtures are not here")
def test_toolbench_fixture_samples_are_unchanged_by_views() -> None:
    """ToolBench trajectories render byte for byte as the reference prompts."""
    files = sorted(FIXTURES.rglob("*.json"))
    trajectories = [
        t
        for f in files
        for t in (json.loads(f.read_text()) if f.stat().st_size < 5_000_000 else [])
        if isinstance(t, dict) and "conversations" in t and "tools" in t
    ]
    if not trajectories:
        pytest.skip("no normalised trajectories among the fixtures")
    for trajectory in trajectories[:20]:
        turns = trajectory["conversations"]
        samples = role_samples(trajectory, reference_quirks=False)
        planner_steps = [
            i
            for i, t in enumerate(turns)
            if t["from"] == "assistant" and i + 1 < len(turns) and turns[i + 1]["from"] == "caller"
        ]
        if planner_steps:
            first = planner_steps[0]
            expected = protocol.planner_prompt(trajectory["tools"], turns[:first])
            assert expected in [s["input"] for s in samples["planner"]]


def test_recall_at_k_counts_each_gold_call() -> None:
    """recall@k counts a caller turn as hit when its tool is among those shown to it."""
    trajectory = {
        "tools": TOOLS,
        "conversations": [
            {"from": "user", "value": "Is INV-1001 paid?"},
            {"from": "assistant", "value": "Fetch it.\n Next: caller."},
            {
                "from": "caller",
                "value": protocol.format_caller("get_invoice", {"invoice_id": "INV-1001"}),
            },
            {"from": "observation", "value": '{"error": "", "response": {}}'},
            {"from": "assistant", "value": "Mail it.\n Next: caller."},
            {"from": "caller", "value": protocol.format_caller("send_email", {"to": "a"})},
            {"from": "observation", "value": '{"error": "", "response": {}}'},
        ],
    }
    report = recall_at_k([trajectory], PromptView(COMPACT, top_k=1))
    assert report["calls"] == 2
    assert report["recall"] == 0.5
    assert report["missed"] == {"send_email": 1}


def test_static_evaluation_renders_a_trajectory_in_its_view() -> None:
    """eval static prompts compact trajectories in the compact view, ToolBench in the reference."""
    from worker.evaluation.static import evaluation_steps

    trajectory = {
        "tools": TOOLS,
        "conversations": [
            {"from": "user", "value": "Is INV-1001 paid?"},
            {"from": "assistant", "value": "Fetch it.\n Next: caller."},
            {
                "from": "caller",
                "value": protocol.format_caller("get_invoice", {"invoice_id": "INV-1001"}),
            },
        ],
    }
    assert [s.view for s in evaluation_steps([trajectory])] == [PromptView(ALPHA_UMI)]
    compact = evaluation_steps([{**trajectory, "prompt_view": COMPACT}])
    assert [s.view for s in compact] == [PromptView(COMPACT)]
    assert compact[0].view.planner(TOOLS, compact[0].history) == PromptView(COMPACT).planner(
        TOOLS, trajectory["conversations"][:1]
    )
    spec = {"name": COMPACT, "top_k": 3, "restate": True}
    restated = evaluation_steps([{**trajectory, "prompt_view": spec}])
    assert restated[0].view == PromptView(COMPACT, 3, restate=True)
    assert "The request is: Is INV-1001 paid?" in restated[0].view.planner(
        TOOLS, restated[0].history
    )


def test_a_restated_view_repeats_the_request_to_the_planner_only() -> None:
    turns = [
        {"from": "user", "value": "Has INV-1005 been paid?"},
        {"from": "assistant", "value": "I'll look it up. I'll use get_invoice.\n Next: caller."},
        {
            "from": "caller",
            "value": protocol.format_caller("get_invoice", {"invoice_id": "INV-1005"}),
        },
        {"from": "observation", "value": '{"error": "", "response": {"id": "INV-1005"}}'},
    ]
    plain, restated = PromptView(COMPACT), PromptView(COMPACT, restate=True)
    prompt = restated.planner(TOOLS, turns)
    # right after the history, before the instruction: the last thing read before writing
    history = protocol.history_string(turns)
    assert f"{history}\nThe request is: Has INV-1005 been paid?\nYou are the assistant" in prompt
    assert prompt == plain.planner(TOOLS, turns).replace(
        history + "\n", history + "\nThe request is: Has INV-1005 been paid?\n", 1
    )
    thought = turns[1]["value"]
    assert restated.caller(TOOLS, turns[:2], thought) == plain.caller(TOOLS, turns[:2], thought)
    assert restated.summarizer(turns) == plain.summarizer(turns)
    assert restated.backbone(TOOLS, turns) == plain.backbone(TOOLS, turns)
    with pytest.raises(ValueError, match="restates"):
        PromptView(ALPHA_UMI, restate=True)


def test_a_restated_view_round_trips_and_older_specs_read_as_plain() -> None:
    from worker.agent.views import parse_view

    assert PromptView(COMPACT, 6, restate=True).spec() == {
        "name": COMPACT,
        "top_k": 6,
        "restate": True,
    }
    assert "restate" not in PromptView(COMPACT).spec()  # earlier datasets' specs unchanged
    assert parse_view({"name": COMPACT, "top_k": 6, "restate": True}).restate
    assert not parse_view({"name": COMPACT, "top_k": 6}).restate

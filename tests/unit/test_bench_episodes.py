"""bench/episodes.py's pure parts (its scripts; episode_figures: aggregation of the
generation records, the table) and bench/timed_model.py's records."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import episode_figures as figures  # noqa: E402
import episodes  # noqa: E402
import timed_model  # noqa: E402

from worker.agent.roles import Generation, GenerationRequest  # noqa: E402

T0 = datetime(2026, 12, 6, 12, 0, 0)


def gen(at: float, ms: float, task: str = "t1", **fields: Any) -> dict[str, Any]:
    return {"task_id": task, "role": "planner", "at": at, "ms": ms, **fields}


def task(received_s: float, ended_s: float | None, outcome: str = "answered") -> dict[str, Any]:
    return {
        "received": T0 + timedelta(seconds=received_s),
        "ended": None if ended_s is None else T0 + timedelta(seconds=ended_s),
        "outcome": outcome,
    }


def test_script_from_a_trajectory_plays_its_calls_then_its_answer() -> None:
    """A gold trajectory's caller turns become the script's calls, its conclusion the answer."""
    trajectory = {
        "conversations": [
            {"from": "user", "value": "Status of INV-1001?"},
            {"from": "assistant", "value": "Let me look.\n Next: caller."},
            {
                "from": "caller",
                "value": 'Action: get_invoice\nAction Input: {\n  "invoice_id": "INV-1001"\n}',
            },
            {"from": "observation", "value": '{"status": "paid"}'},
            {"from": "assistant", "value": "Done.\n Next: conclusion."},
            {"from": "conclusion", "value": "INV-1001 is paid."},
        ]
    }
    assert episodes.script_from(trajectory) == [
        {"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}},
        {"answer": "INV-1001 is paid."},
    ]


def test_in_flight_counts_overlapping_calls() -> None:
    """Calls that overlap count together; the mean is weighted by time while any runs."""
    records = [gen(0.0, 2000, "a"), gen(1.0, 2000, "b"), gen(10.0, 1000, "c")]
    peak, mean = figures.in_flight(records)
    assert peak == 2
    # 0-1 s: one, 1-2 s: two, 2-3 s: one, 10-11 s: one → 5 call-seconds over 4 busy seconds
    assert mean == pytest.approx(1.25)


def test_in_flight_counts_a_batch_once() -> None:
    """Records of one generate call (same task, start and time) are one call in flight."""
    records = [gen(0.0, 1000, "a", batch=2), gen(0.0, 1000, "a", batch=2)]
    assert figures.in_flight(records) == (1, 1.0)


def test_summarize_rates_over_the_level_wall_time() -> None:
    """Episodes/min and tokens/s divide by first receipt to last outcome; costs are means."""
    records = [
        gen(0.0, 1000, "a", prompt_tokens=1000, completion_tokens=20, prompt_ms=300,
            decode_ms=700, cached_tokens=800),
        gen(1.0, 3000, "b", prompt_tokens=1000, completion_tokens=40, prompt_ms=100,
            decode_ms=900, cached_tokens=0),
    ]  # fmt: skip
    tasks = {"a": task(0, 20), "b": task(5, 30, "gave_up")}
    row = figures.summarize("openai", 2, records, tasks, overhead_ms_per_step=12.5)
    assert row["wall_s"] == 30
    assert row["episodes_per_min"] == 4.0
    assert row["completion_tok_per_s"] == 2.0
    assert row["generate_ms"] == 2000
    assert row["prefill_ms"] == 200 and row["decode_ms"] == 800
    assert row["prefill_share"] == pytest.approx(0.2)
    assert row["cache_hit"] == pytest.approx(0.4)
    assert row["outcomes"] == {"answered": 1, "gave_up": 1}
    assert row["overhead_ms_per_step"] == 12.5
    assert row["queue_ms"] is None


def test_summarize_leaves_out_what_the_backend_does_not_report() -> None:
    """No cached tokens or timings reported: cache hit and prefill are None, not zero."""
    row = figures.summarize("hf", 1, [gen(0, 10, prompt_tokens=5)], {"t1": task(0, 1)})
    assert row["cache_hit"] is None
    assert row["prefill_ms"] is None and row["prefill_share"] is None


def test_summarize_counts_only_ended_tasks() -> None:
    """A task without an outcome (timed out) is in ``tasks`` but not among the ended."""
    row = figures.summarize("hf", 1, [], {"a": task(0, 60), "b": task(1, None)})
    assert (row["ended"], row["tasks"]) == (1, 2)
    assert row["episodes_per_min"] == 1.0


def test_summarize_with_nothing_ended_has_no_rates() -> None:
    """No outcome at all: wall time 0 and no rate, rather than a division by zero."""
    row = figures.summarize("hf", 4, [], {"a": task(0, None)})
    assert row["wall_s"] == 0 and row["episodes_per_min"] is None


def test_markdown_table_has_one_row_per_level_and_dashes_for_missing_figures() -> None:
    """One header, one separator and one row per level; missing figures show as dashes."""
    rows = [
        figures.summarize("hf", 1, [gen(0, 10, queue_ms=0.0)], {"t1": task(0, 6)}),
        figures.summarize(
            "openai", 4, [gen(0, 10, cached_tokens=5, prompt_tokens=10)], {"t1": task(0, 6)},
            worker_memory={"rss": 100.0, "peak": 120.0}, engine_memory={"rss": 600, "peak": 650},
        ),
    ]  # fmt: skip
    lines = figures.markdown_table(rows).splitlines()
    assert len(lines) == 4
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert lines[2].startswith("| in process, batched (hf) | 1 | 1/1 | 6.0 | 10.00 |")
    assert "| 50% |" in lines[3] and "| 120 | 650 |" in lines[3]
    assert "| – | – |" in lines[2]


def test_weights_compare_base_plus_adapters_with_one_full_model_per_role() -> None:
    """Base + adapters on disk against as many full models as there are adapters."""
    found = figures.weights(500.0, {"planner": 5.0, "caller": 5.0, "summarizer": 5.0})
    assert found is not None
    assert found["base_plus_adapters_mib"] == 515.0
    assert found["full_models_mib"] == 1500.0
    assert figures.weights(None, {}) is None
    assert "515.0 MiB, against 1500.0 MiB for 3 full models" in figures.weights_lines(
        {"hf": found, "openai": None}
    )


class _Model:
    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        extra = {"finish": "stop", "queue_ms": 3.0, "prompt_ms": 10.0, "decode_ms": 20.0}
        return [Generation("ok", 7, 2, "m", extra={**extra, "batch": len(requests)})] * len(
            requests
        )

    def describe(self) -> dict[str, Any]:
        return {"base": "m"}


def test_timed_model_appends_one_record_per_generation(tmp_path: Path) -> None:
    """Each generation becomes a JSON line with its tokens and the backend's costs."""
    path = tmp_path / "generations.jsonl"
    model = timed_model.TimedRoleModel(_Model(), path)
    requests = [GenerationRequest("planner", "p"), GenerationRequest("caller", "c")]
    assert [g.text for g in model.generate(requests)] == ["ok", "ok"]
    model.generate(requests[:1])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["role"] for r in lines] == ["planner", "caller", "planner"]
    first = lines[0]
    assert first["prompt_tokens"] == 7 and first["completion_tokens"] == 2
    assert (first["queue_ms"], first["prompt_ms"], first["decode_ms"]) == (3.0, 10.0, 20.0)
    assert first["batch"] == 2 and lines[2]["batch"] == 1
    assert "finish" not in first and "cached_tokens" not in first
    assert model.describe() == {"base": "m"}


def test_ratio_lines_compare_with_the_first_backend_and_the_lowest_level() -> None:
    """Speed-ups come from one run: each backend at a level against the first backend at
    that level, and each level against the same backend's lowest."""
    rows = [
        {"backend": "hf-serial", "level": 1, "episodes_per_min": 2.0},
        {"backend": "hf-serial", "level": 16, "episodes_per_min": 2.5},
        {"backend": "hf", "level": 1, "episodes_per_min": 2.0},
        {"backend": "hf", "level": 16, "episodes_per_min": 10.0},
        {"backend": "openai", "level": 16, "episodes_per_min": None},
    ]
    lines = figures.ratio_lines(rows).splitlines()
    assert "hf-serial), 16 at once: episodes/min 1.25x its own 1 at once" in lines[0]
    assert lines[1].endswith("1 at once: episodes/min 1.00x in process, one at a time (hf-serial)")
    assert lines[2].endswith(
        "16 at once: episodes/min 4.00x in process, one at a time (hf-serial), "
        "5.00x its own 1 at once"
    )
    assert len(lines) == 3  # no figure, no ratio
    assert figures.ratio_lines([]) == ""

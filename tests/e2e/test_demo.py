"""`umiq demo` end to end on the embedded default: no server, real ERP, real base model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def test_demo_runs_tasks_and_verifies_the_chain(tmp_path: Path, model_dir: Path) -> None:
    """The demo runs tasks through the shipped role adapters, prints steps, endings and
    checks, verifies the chain. The trained planner stops on the status lookup (the
    untuned base and the first shipped planner ran to the step limit; the v4 adapters
    answer it and run the country lookup to the step limit: docs/results), and the
    caller fetched the vendor the second task names (grounding admits only V-0042)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
    env.update(
        {
            "UMIQ_DATA_DIR": str(tmp_path / "data"),
            "UMIQ_MODEL_DIR": str(model_dir),
            "COLUMNS": "200",
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--tasks", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "ERP service: http://127.0.0.1:" in out
    assert out.count("── task demo-") == 2
    endings = [line for line in out.splitlines() if line.startswith("ended: ")]
    assert len(endings) == 2, out  # every task ends by itself, within the limit
    assert any(line.startswith("ended: answered") for line in endings), out
    assert 'Action Input: { "vendor_id": "V-0042" }' in out
    assert "planner" in out and "caller" in out
    assert out.count("checked:") == 2 and "tasks correct (checked against the ERP)" in out
    assert "audit chain verified" in out
    assert (tmp_path / "data" / "audit.sqlite").is_file()
    assert (tmp_path / "data" / "broker.sqlite").is_file()

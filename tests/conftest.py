"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The α-UMi reference trajectories and role samples live beside the repository, in
#: ``../shared/fixtures/toolbench``; UMIQ_FIXTURES points elsewhere.
TOOLBENCH_FIXTURES = Path(
    os.environ.get(
        "UMIQ_FIXTURES",
        Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "toolbench",
    )
)


@pytest.fixture(scope="session")
def toolbench_dir() -> Path:
    """The folder of ToolBench reference fixtures; tests that need it skip without it."""
    if not (TOOLBENCH_FIXTURES / "raw_data_stage_2.json").is_file():
        pytest.skip(f"ToolBench fixtures not found in {TOOLBENCH_FIXTURES} (set UMIQ_FIXTURES)")
    return TOOLBENCH_FIXTURES

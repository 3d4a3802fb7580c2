"""bench/gpu.sh: valid bash, and a quick, clean refusal where it cannot run.

On a machine without an NVIDIA GPU the script must stop before it installs, starts or
writes anything. Every command it could reach next is replaced by a tripwire on a PATH
of its own, so a test fails if the script gets past its GPU check (or, with a GPU but no
base checkpoint, past its input check).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu.sh"
BASH = shutil.which("bash") or "/bin/bash"
TRIPWIRES = ("python3", "pip", "pip3", "vllm", "git", "curl", "sed", "head", "mkdir", "date")


def test_script_is_valid_bash_and_executable() -> None:
    result = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(SCRIPT, os.X_OK)


def test_script_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _run(
    tmp_path: Path, nvidia_smi: str | None, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name in TRIPWIRES:
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho {name} >> '{calls}'\nexit 0\n")
        tool.chmod(0o755)
    if nvidia_smi is not None:
        tool = bin_dir / "nvidia-smi"
        tool.write_text(nvidia_smi)
        tool.chmod(0o755)
    environ = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "OUT": str(tmp_path / "out"),
        "VLLM_VENV": str(tmp_path / "vllm-venv"),
        "CLIENT_VENV": str(tmp_path / "client-venv"),
        **env,
    }
    started = time.monotonic()
    result = subprocess.run(
        [BASH, str(SCRIPT)], env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    return result, time.monotonic() - started


def _nothing_done(tmp_path: Path) -> None:
    assert not (tmp_path / "calls").exists(), (tmp_path / "calls").read_text()
    for path in ("out", "vllm-venv", "client-venv"):
        assert not (tmp_path / path).exists(), path


@pytest.mark.parametrize(
    ("nvidia_smi", "why"),
    [
        (None, "nvidia-smi is not on PATH"),
        (
            "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the "
            "NVIDIA driver.'\nexit 9\n",
            "nvidia-smi -L failed: NVIDIA-SMI has failed",
        ),
        ("#!/bin/sh\nexit 0\n", "nvidia-smi -L lists no GPU"),
    ],
    ids=["no-nvidia-smi", "driver-fails", "no-device-listed"],
)
def test_refuses_without_a_gpu(tmp_path: Path, nvidia_smi: str | None, why: str) -> None:
    result, seconds = _run(tmp_path, nvidia_smi)
    assert result.returncode == 3, result.stderr
    assert "no NVIDIA GPU here" in result.stderr
    assert why in result.stderr
    assert "nothing was installed or run" in result.stderr
    assert seconds < 10
    _nothing_done(tmp_path)


def test_with_a_gpu_checks_its_inputs_before_installing(tmp_path: Path) -> None:
    gpu = "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n"
    result, _ = _run(tmp_path, gpu, UMIQ_BASE_DIR=str(tmp_path / "no-base"))
    assert result.returncode == 1, result.stderr
    assert "no base checkpoint at" in result.stderr
    assert "umiq models fetch" in result.stderr
    _nothing_done(tmp_path)


def test_throughput_table_lists_every_row_and_no_cache_figure_it_lacks() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("throughput", ROOT / "bench" / "throughput.py")
    assert spec is not None and spec.loader is not None
    throughput = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(throughput)
    row = {"requests": 8, "wall_s": 12.0, "req_per_min": 40.0, "tok_per_s": 14.8}
    table = throughput.markdown_table(
        [
            {**row, "backend": "openai", "level": 1, "latency_s": 1.5, "cache_hit": None},
            {**row, "backend": "openai", "level": 64, "latency_s": 9.25, "cache_hit": 0.78},
        ]
    )
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2] == "| openai | 1 | 8 | 12.0 | 40.0 | 14.8 | 1.50 | – |"
    assert lines[3].endswith("| 9.25 | 78% |")

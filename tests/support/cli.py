"""Run the ``umiq`` command line in a subprocess, and read a task's steps from the audit DB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def umiq(
    env: dict[str, str], *args: str | Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m worker.cli ARGS`` with ``env`` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *map(str, args)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def steps_of(url: str, task_id: str) -> list[dict[str, Any]]:
    """The ``step`` rows of ``task_id`` in the audit database at ``url``, in chain order."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT seq, kind, output, details FROM step WHERE task_id = :t ORDER BY seq"
                ),
                {"t": task_id},
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()

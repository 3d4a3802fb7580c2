"""Importing the model registry and the role protocol must not load torch."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "xgrammar")


def test_importing_models_and_roles_loads_no_ml_library() -> None:
    """worker.models and worker.agent.roles import without torch, transformers, peft, xgrammar."""
    code = (
        "import sys, worker.models, worker.agent.roles\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_registry_names_backends_as_strings() -> None:
    """The backend registry maps names to 'module:callable' strings, resolved on first use."""
    from worker.models import BACKENDS

    assert all(":" in target for target in BACKENDS.values())

"""Policy, connector, audit and worker-shell code never loads torch (DESIGN §2)."""

from __future__ import annotations

import subprocess
import sys

LIGHT_MODULES = [
    "policies",
    "connectors",
    "connectors.testing",
    "worker.settings",
    "worker.envelope",
    "worker.errors",
    "worker.logs",
    "worker.audit",
    "umiq_protocol",
    "worker.agent.protocol",
    "worker.data.samples",
    "worker.agent.roles",
    "worker.agent.episode",
    "worker.toolbox",
    "worker.models",
    "worker.celery_app",
    "worker.tasks",
    "worker.consumer",
    "worker.deadletter",
    "worker.cli",
    "examples.acme.serve",
]


def test_light_modules_do_not_import_torch() -> None:
    """Importing every module outside worker.models' backend leaves torch unloaded."""
    code = (
        "import importlib, sys\n"
        f"for name in {LIGHT_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'xgrammar') "
        "if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules loaded: {out.stdout.strip()}"


def test_policies_import_nothing_of_umiq() -> None:
    """The policies package depends on no other umiq package."""
    code = (
        "import sys, policies\n"
        "print(','.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('worker', 'connectors', 'examples'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

"""One exception tree: every error worker raises comes under UmiqError, drawn in its docstring."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import worker.errors
from worker.errors import UmiqError

ROOT = Path(__file__).parents[2]

OUTSIDE = {
    # control flow inside the agent loop, never raised out of it
    "worker.agent.calls.AwaitingApproval",
    "worker.agent.calls.ReplayMismatch",
}


def _exception_classes() -> list[str]:
    """``module.Class`` of every class in worker/ whose base names an Error or Exception."""
    found = []
    for path in sorted((ROOT / "worker").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(b).endswith(("Error", "Exception", "Broken")) for b in node.bases
            ):
                found.append(f"{module}.{node.name}")
    return found


def test_every_worker_error_is_under_umiq_error() -> None:
    """Each exception class worker defines derives from UmiqError (the listed ones aside)."""
    outside = []
    for name in _exception_classes():
        if name in OUTSIDE:
            continue
        module, _, cls = name.rpartition(".")
        if not issubclass(getattr(importlib.import_module(module), cls), UmiqError):
            outside.append(name)
    assert outside == []


def test_errors_are_defined_in_errors_py() -> None:
    """Every error of the tree is defined in worker/errors.py, not beside its use."""
    elsewhere = [
        n for n in _exception_classes() if n not in OUTSIDE and not n.startswith("worker.errors.")
    ]
    assert elsewhere == []


def test_the_docstring_draws_every_error() -> None:
    """The module docstring names each class of the tree."""
    doc = worker.errors.__doc__ or ""
    classes = [
        name
        for name, value in vars(worker.errors).items()
        if isinstance(value, type) and issubclass(value, UmiqError)
    ]
    assert classes and [c for c in classes if c not in doc] == []

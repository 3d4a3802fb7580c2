"""The arrows between umiq's packages (docs/architecture.md), read from the source.

Every ``import`` and ``from … import`` counts, also those inside functions (lazy
imports), so a rule cannot be broken by importing late.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _imports(package: str | Path) -> dict[str, set[str]]:
    """``{module: names it imports}`` for every module under ``package`` (a folder)."""
    out: dict[str, set[str]] = {}
    top = ROOT / package  # an absolute ``package`` (a test's folder) stays as it is
    base = ROOT if top.is_relative_to(ROOT) else top.parent
    for path in sorted(top.rglob("*.py")):
        module = ".".join(path.relative_to(base).with_suffix("").parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        out[module] = names
    return out


def _offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in _imports(package).items()
        for name in names
        if name in forbidden or name.startswith(tuple(f"{f}." for f in forbidden))
    )


def test_the_product_never_imports_examples() -> None:
    """worker, policies and connectors import no module of examples (a back office plugs
    in as a world named in settings, worker.world)."""
    found = [
        offence
        for package in ("worker", "policies", "connectors")
        for offence in _offending(package, ("examples",))
    ]
    assert found == []


def test_the_rule_sees_lazy_imports(tmp_path: Path) -> None:
    """An import inside a function body counts as much as one at the top of a module."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("def f():\n    from examples.acme import world\n")
    names = {name for found in _imports(package).values() for name in found}
    assert "examples.acme" in names and "examples.acme.world" in names


def test_the_protocol_package_imports_nothing_of_ours() -> None:
    """umiq_protocol (the α-UMi prompts and parsers) is pure, like policies."""
    assert _offending("umiq_protocol", ("worker", "connectors", "policies", "examples")) == []


def test_the_acme_world_never_imports_worker() -> None:
    """Acme's world, defaults and task families (what the product loads as a world)
    implement the world protocol structurally and take the α-UMi protocol from
    umiq_protocol: they import nothing of worker. (Acme's drivers, such as its shadow
    run, are clients of the product and may.)"""
    loaded = ("examples.acme.world", "examples.acme.defaults", "examples.acme.tasks")
    found = [
        f"{module} imports {name}"
        for module, names in _imports("examples").items()
        if module.startswith(loaded)
        for name in names
        if name == "worker" or name.startswith("worker.")
    ]
    assert found == []


def test_connectors_never_import_worker_or_examples() -> None:
    """connectors depends on no umiq package above it."""
    assert _offending("connectors", ("worker", "examples")) == []


def test_policies_import_nothing_of_ours() -> None:
    """policies is pure: it imports no other umiq package."""
    assert _offending("policies", ("worker", "connectors", "examples")) == []


def test_serving_does_not_import_training() -> None:
    """worker.models (serving) never imports worker.training."""
    assert _offending("worker/models", ("worker.training",)) == []


def test_worker_uses_the_public_policies_names() -> None:
    """worker (the audit's sealing included) and examples import policies' public
    surface, not its private modules."""
    private = [
        f"{module} imports {name}"
        for package in ("worker", "examples")
        for module, names in _imports(package).items()
        for name in names
        if name.startswith("policies._")
    ]
    assert private == []


def test_the_role_lists_are_defined_once() -> None:
    """Only worker.agent.roles spells out the role names as a tuple (alone, with the
    backbone or with training's global stage); no module assigns a name ``ROLES``
    (AGENT_ROLES are the three α-UMi roles, ALL_ROLES add the backbone)."""
    roles = {"planner", "caller", "summarizer"}
    found = []
    for path in sorted((ROOT / "worker").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        if where == "worker/agent/roles.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set) and all(
                isinstance(e, ast.Constant) for e in node.elts
            ):
                values = {e.value for e in node.elts}  # type: ignore[attr-defined]
                if roles <= values <= roles | {"backbone", "global"}:
                    found.append(f"{where}:{node.lineno}")
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "ROLES" for t in targets):
                    found.append(f"{where}:{node.lineno} assigns ROLES")
    assert found == []


@pytest.mark.parametrize(
    "module",
    [
        "policies",
        "umiq_protocol",
        "connectors",
        "connectors.testing",
        "worker.audit",
        "worker.gates",
        "worker.review.app",
    ],
)
def test_light_packages_import_without_the_models_extra(module: str) -> None:
    """With torch, transformers and peft not installed (no umiq[models]), these import."""
    code = (
        "import importlib.abc, sys\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'peft', 'xgrammar'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        f"import {module}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)

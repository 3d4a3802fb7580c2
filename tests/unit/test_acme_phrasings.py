"""The expert's phrasings tables (examples/acme/tasks/phrasings_*.py) and their scripts."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from examples.acme.tasks import phrasings_erp, phrasings_hr

TASKS = Path(__file__).parents[2] / "examples" / "acme" / "tasks"


def _tables(module: ModuleType) -> dict[str, tuple[str, ...]]:
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper() and not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("module", "script"), [(phrasings_erp, "expert_erp.py"), (phrasings_hr, "expert_hr.py")]
)
def test_every_phrasing_is_used_by_its_scripts_and_every_use_exists(
    module: ModuleType, script: str
) -> None:
    """The scripts name exactly the phrasings of their table, no more, no fewer."""
    used = set(re.findall(r"\bP\.([A-Z][A-Z0-9_]*)", (TASKS / script).read_text()))
    assert used == set(_tables(module))


@pytest.mark.parametrize("module", [phrasings_erp, phrasings_hr])
def test_each_phrasing_offers_distinct_non_empty_options(module: ModuleType) -> None:
    """Every table entry is a tuple of distinct, non-empty strings to choose from."""
    for name, options in _tables(module).items():
        assert isinstance(options, tuple) and options, name
        assert all(isinstance(o, str) and o.strip() for o in options), name
        assert len(set(options)) == len(options), name

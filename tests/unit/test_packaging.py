"""The role models' stack is the ``models`` extra; the commands users run install it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
HEAVY = ("torch", "transformers", "peft", "xgrammar")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_a_plain_install_does_not_carry_torch_transformers_or_peft() -> None:
    """umiq's own dependencies leave the model stack out."""
    assert _names(_project()["dependencies"]) & set(HEAVY) == set()


def test_the_models_extra_carries_the_model_stack() -> None:
    """``umiq[models]`` names torch, transformers, peft and xgrammar."""
    assert set(HEAVY) <= _names(_project()["optional-dependencies"]["models"])


def test_make_install_and_the_image_install_the_models_extra() -> None:
    """The Makefile (make demo, make test) and the Docker image install umiq[models]."""
    assert "-e '.[dev,models]'" in (ROOT / "Makefile").read_text()
    assert '-e ".[models]"' in (ROOT / "docker" / "Dockerfile").read_text()

"""The Acme task catalogue, its scripted expert and its checkers."""

from examples.acme.tasks.catalogue import (
    FAMILIES,
    Facts,
    Family,
    TaskInstance,
    available_families,
    department_for,
    generate,
    split_sizes,
)
from examples.acme.tasks.checkers import CheckResult, check
from examples.acme.tasks.expert import ExpertError, Solution, solve
from examples.acme.tasks.world import World, WorldError, running_world

__all__ = [
    "FAMILIES",
    "CheckResult",
    "ExpertError",
    "Facts",
    "Family",
    "Solution",
    "TaskInstance",
    "World",
    "WorldError",
    "available_families",
    "check",
    "department_for",
    "generate",
    "running_world",
    "solve",
    "split_sizes",
]

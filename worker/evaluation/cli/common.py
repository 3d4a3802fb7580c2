"""What the ``eval`` commands share: the console and model loader they run with, the
split option, and the command line each result file records."""

from __future__ import annotations

import enum
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from worker.agent.roles import RoleModel
    from worker.settings import Settings

ModelLoader = Callable[["Settings"], "RoleModel"]


class Split(enum.StrEnum):
    """The catalogue splits held out from training."""

    dev = "dev"
    test = "test"


@dataclass(frozen=True)
class CliEnv:
    """What ``register`` gives each command: where it prints and how it loads models."""

    console: Console
    loader: ModelLoader

    def fail(self, exc: Exception) -> typer.Exit:
        """Print ``exc`` as the command's error; the exit (status 2) to raise."""
        self.console.print(f"[red]error:[/red] {exc}")
        return typer.Exit(2)


def real_loader(settings: Settings) -> RoleModel:
    """The role model the settings describe (``worker.models``, imported on first use)."""
    from worker.models import load_role_model

    return load_role_model(settings)


def command_line(words: Sequence[str], options: Sequence[tuple[str, Any]]) -> str:
    """``umiq <words> --opt value …`` for the options that are set (lists repeat the option)."""
    parts = ["umiq", *words]
    for name, value in options:
        if value is None or value is False or value == []:
            continue
        if value is True:
            parts.append(name)
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            parts += [name, str(item)]
    return shlex.join(parts)


def parse_families(text: str | None) -> list[str] | None:
    """The ``--families`` option's comma-separated names; None when it is empty."""
    if not text:
        return None
    return [f.strip() for f in text.split(",") if f.strip()]

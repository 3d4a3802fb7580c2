"""Paths as shared or committed files may name them (no machine's own layout)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["portable_path"]


def portable_path(path: str | Path) -> str:
    """``path`` as it may be written into a file that is shared or committed: relative to
    the working directory when inside it, else with the home directory as ``~``, else
    its last component (a model card, adapter config or report names no machine's layout)."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        pass
    try:
        return str(Path("~") / resolved.relative_to(Path.home().resolve()))
    except (ValueError, RuntimeError):
        return resolved.name

"""Files that appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["create_once", "fsync_dir"]


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a new or renamed file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_once(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Write ``data`` to ``path`` with ``mode`` unless the file exists; whether this call
    wrote it. Processes racing to create one file (keys made on first use) make one: it
    appears whole (a hard link of a written, fsynced temp file) or not at all, and the
    loser reads the winner's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(name, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    fsync_dir(path.parent)
    return True

"""What a test needs that a machine may lack: skipped where it is missing, failed under
``UMIQ_REQUIRE_SERVICES=1`` (CI), where it must be there.

The services (RabbitMQ, Postgres: ``tests/integration/conftest.py``) and the llama.cpp
engine (``make test`` builds it: ``make engine``) are checked through :func:`unavailable`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest


def required() -> bool:
    """Whether what the tests need must be there (``UMIQ_REQUIRE_SERVICES=1``, as in CI)."""
    return os.environ.get("UMIQ_REQUIRE_SERVICES") == "1"


def unavailable(message: str, *, how: str = "") -> NoReturn:
    """Skip the test saying what is missing, or fail it when :func:`required`; ``how``
    says how to provide it."""
    message += f"; {how}" if how else ""
    if required():
        pytest.fail(message + " (CI requires it)")
    pytest.skip(message)


def require_engine(data_dir: Path, home: Path) -> dict[str, Path]:
    """The GGUF files of the base and the three role adapters under ``data_dir``, once
    llama.cpp's ``home`` holds ``llama-server``; else :func:`unavailable`."""
    from worker.agent.roles import AGENT_ROLES
    from worker.models.llamacpp import find_binary, gguf_files

    how = "run `make engine` (or `umiq models build-engine` and `umiq models export-gguf`)"
    if find_binary("llama-server", home) is None:
        unavailable(f"llama-server is not built in {home} (UMIQ_ENGINE_HOME)", how=how)
    files = gguf_files(data_dir)
    missing = [name for name in ("base", *AGENT_ROLES) if name not in files]
    if missing:
        unavailable(f"no GGUF for {missing} under {data_dir}", how=how)
    return files

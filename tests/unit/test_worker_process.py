"""WorkerProcess gives each worker it starts a node name of its own (unit, no broker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from worker import process
from worker.process import WorkerProcess, names_node, unique_node_name, worker_args


def test_a_unique_node_name_names_this_process_and_differs_each_time() -> None:
    names = {unique_node_name() for _ in range(50)}
    assert len(names) == 50
    for name in names:
        node, host = name.split("@")
        assert host == "%h"
        assert node.startswith(f"umiq-{process.os.getpid()}-")


@pytest.mark.parametrize(
    "args",
    [
        ("--hostname", "mine@%h"),
        ("--loglevel", "INFO", "--hostname=mine@%h"),
        ("-n", "mine@%h"),
        ("-nmine@%h",),
        ("-n=mine@%h",),
    ],
)
def test_a_given_node_name_is_kept_as_given(args: tuple[str, ...]) -> None:
    assert names_node(args)
    assert worker_args(args) == list(args)


@pytest.mark.parametrize(
    "args", [(), ("--loglevel", "INFO"), ("--departments", "finance", "--concurrency", "2")]
)
def test_args_without_a_node_name_get_a_unique_one(args: tuple[str, ...]) -> None:
    assert not names_node(args)
    built = worker_args(args)
    assert built[: len(args)] == list(args)
    assert built[len(args)] == "--hostname"
    assert built[len(args) + 1].startswith("umiq-")
    assert worker_args(args)[-1] != built[-1]  # another worker, another name


def test_two_worker_processes_get_different_names_and_keep_them(tmp_path: Path) -> None:
    first = WorkerProcess({}, tmp_path / "a.log")
    second = WorkerProcess({}, tmp_path / "b.log")
    assert first.args[:2] == ["--loglevel", "INFO"]
    assert first.args[-2] == second.args[-2] == "--hostname"
    assert first.args[-1] != second.args[-1]
    assert WorkerProcess({}, tmp_path / "c.log", ("-n", "x@%h")).args == ["-n", "x@%h"]


class _Exited:
    returncode = 3

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        _Exited.argv = argv

    def poll(self) -> int:
        return self.returncode


def test_start_passes_the_node_name_to_umiq_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "Popen", _Exited)
    worker = WorkerProcess({}, tmp_path / "w.log", ("--loglevel", "DEBUG"))
    with pytest.raises(Exception, match="exited with 3"):
        worker.start(ready_timeout=5)
    argv = _Exited.argv
    assert argv[:4] == [sys.executable, "-m", "worker.cli", "worker"]
    assert argv[4:] == ["--loglevel", "DEBUG", "--hostname", worker.args[-1]]


def test_umiq_worker_hands_the_node_name_to_celery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``umiq worker --hostname NAME`` (what WorkerProcess passes) reaches Celery's argv."""
    from celery.bin.celery import celery as celery_command

    from worker.cli import app
    from worker.settings import get_settings

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("UMIQ_METRICS_PORT", raising=False)
    monkeypatch.delenv("UMIQ_DEPARTMENT_QUEUES", raising=False)
    get_settings.cache_clear()
    seen: list[list[str]] = []
    option = celery_command.params[0]  # umiq worker sets its default app; restored after
    monkeypatch.setattr(option, "default", option.default)
    monkeypatch.setattr(celery_command, "main", lambda args, **kw: seen.append(args) or 0)
    name = unique_node_name()
    try:
        done = CliRunner().invoke(app, ["worker", "--queues", "q", "--hostname", name])
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    assert seen and f"--hostname={name}" in seen[0]

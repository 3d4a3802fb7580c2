"""A ``umiq worker`` subprocess: started, waited for until Celery says it is ready, stopped.

The demo, ``umiq eval live`` and the integration tests run the real worker this way, with
the environment they choose and the worker's output in a log file of their own. Each gets a
node name of its own unless the caller names one: two workers with Celery's default name on
one host (two test runs at once, say) clash on their control queue, and the second one is
never ready (``RESOURCE_LOCKED``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from worker.errors import ConfigError

_NODE_OPTIONS = ("--hostname",)  # and -n, -nNAME, -n=NAME, --hostname=NAME


def unique_node_name() -> str:
    """A node name no other worker on this host has: ``umiq-<pid>-<random>@%h``."""
    return f"umiq-{os.getpid()}-{secrets.token_hex(4)}@%h"


def names_node(args: Sequence[str]) -> bool:
    """Whether ``args`` (``umiq worker``'s options) already give a node name."""
    return any(arg in _NODE_OPTIONS or arg.startswith(("--hostname=", "-n")) for arg in args)


def worker_args(args: Sequence[str]) -> list[str]:
    """``args`` with a unique ``--hostname`` added when they name no node."""
    out = list(args)
    return out if names_node(out) else [*out, "--hostname", unique_node_name()]


class WorkerProcess:
    """``python -m worker.cli worker ARGS`` with ``env``, its output appended to ``log_path``.

    ``args`` without ``--hostname``/``-n`` get a unique node name (:func:`unique_node_name`),
    kept for every start of this object, so a restarted worker comes back as the same node.

    Use :meth:`start` and :meth:`stop`, or ``with WorkerProcess(...) as worker:``, which
    starts it (waiting ``ready_timeout`` seconds) and always stops it.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        args: Sequence[str] = ("--loglevel", "INFO"),
        *,
        cwd: Path | None = None,
        ready_timeout: float = 300.0,
    ) -> None:
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.args = worker_args(args)
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, ready_timeout: float | None = None) -> None:
        """Start the worker and wait until Celery logs ``ready``.

        ConfigError, with the log's path, when it exits first or is not ready in time.
        """
        timeout = self.ready_timeout if ready_timeout is None else ready_timeout
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "worker", *self.args],
                env=self.env,
                cwd=self.cwd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"the worker exited with {self.process.returncode}; see {self.log_path}"
                    f"\n{self.log_text()[-4000:]}"
                )
            if "ready" in self.log_text():
                return
            time.sleep(0.5)
        self.stop()
        raise ConfigError(f"the worker was not ready in {timeout:.0f}s; see {self.log_path}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """What this start of the worker has written to its log so far."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            return fh.read().decode("utf-8", errors="replace")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the worker (SIGTERM, then SIGKILL after 30 s; at once with ``kill``)."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""What the benchmarks share: a throwaway Postgres database, llama-server, process memory.

``load.py``, ``throughput.py``, ``equivalence.py``, ``episodes.py`` and the role-adapter
benchmarks import it (the ``bench`` folder is on their ``sys.path``); nothing here is
timed or asserted.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

POSTGRES = os.environ.get("UMIQ_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fresh_database(keep: bool = False, server: str = POSTGRES) -> Iterator[str]:
    """A new, empty Postgres database on ``server`` (its URL), dropped afterwards unless
    ``keep``."""
    database = f"umiq_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    try:
        yield f"{server}/{database}"
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def start_llama_server(
    data_dir: Path,
    *,
    parallel: int,
    threads: int | None,
    ctx_per_slot: int = 4096,
    log: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``llama-server`` with the exported base and role adapters (``umiq models serve``'s
    command) on a free loopback port, ready; the process and its URL."""
    from worker.models.llamacpp import serve_command, start_server

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = serve_command(
        data_dir, port=port, parallel=parallel, threads=threads, ctx_per_slot=ctx_per_slot
    )
    log = log or Path(tempfile.gettempdir()) / f"bench-llama-server-{port}.log"
    return start_server(cmd, url, timeout=600, log=log), url


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process this benchmark started (SIGTERM, then SIGKILL after 30 s)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def adapter_bench_parser(doc: str, role: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark of one role's adapter on a data split: ``--data``,
    ``--adapter``, ``--base``, ``--threads`` (the caller's and the summarizer's)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="trajectories (a data build's split)")
    parser.add_argument("--adapter", required=True, help=f"the {role}'s LoRA adapter dir")
    parser.add_argument("--base", default="smollm2-135m-instruct", help="model-store name")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def memory_mib(pid: int) -> dict[str, float] | None:
    """Resident memory of process ``pid`` now (``rss``) and at its peak (``peak``), in
    MiB, from ``/proc/<pid>/status`` (Linux); None where that cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) / 1024
    return found if len(found) == 2 else None


def file_mib(*paths: Path) -> float:
    """The size of ``paths`` on disk, in MiB (a folder counts every file under it)."""
    total = 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total / 2**20

"""Run the ``umiq`` command line in a subprocess, and read a task's steps from the audit DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

ALLOW_PRIVILEGED_LOGIN = {"UMIQ_ALLOW_PRIVILEGED_LOGIN": "1"}
"""What lets a test's worker log in to Postgres as the test server's superuser
(``postgres``, trust auth on loopback): the login gate (``worker.login_gate``) refuses
that login otherwise. tests/conftest.py puts it in the test process's environment,
:func:`bare_env` and :func:`worker_env` in every worker's; the gate's own tests drop it."""


def bare_env() -> dict[str, str]:
    """This process's environment without its ``UMIQ_`` settings but for
    :data:`ALLOW_PRIVILEGED_LOGIN`: what a test's worker environment starts from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
    return {**env, **ALLOW_PRIVILEGED_LOGIN}


def umiq(
    env: dict[str, str], *args: str | Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m worker.cli ARGS`` with ``env`` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *map(str, args)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def audit_verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``umiq db upgrade`` then ``umiq audit verify`` with ``env``.

    In a checkout where a migration can land while a test runs, a ``umiq`` started late
    knows a newer schema head than the test's first ``db upgrade`` made, and verify
    refuses the database (exit 2, its reason on stderr alone) though the chain is intact:
    upgrading first, as an operator does after deploying new code, keeps the check about
    the chain (a migration never rewrites chain rows).
    """
    upgraded = umiq(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    return umiq(env, "audit", "verify")


def worker_env(
    data_dir: Path,
    amqp_url: str,
    postgres_url: str,
    queue_names: tuple[str, str],
    erp_url: str | None = None,
    *,
    connectors: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The environment of a real worker on RabbitMQ and Postgres with the scripted model
    and the ERP at ``erp_url`` (or the ``connectors`` config, e.g. every Acme service),
    its audit schema upgraded (the poison, dead-letter, leak and task-repr tests share
    it). It logs in as the test server's superuser (:data:`ALLOW_PRIVILEGED_LOGIN`)."""
    queue, dead = queue_names
    if connectors is None:
        assert erp_url is not None, "worker_env needs erp_url or connectors"
        connectors = {"erp": {"kind": "http", "base_url": erp_url}}
    environment = dict(os.environ)
    environment.update({
        "UMIQ_DATA_DIR": str(data_dir),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_QUEUE": queue,
        "UMIQ_DEAD_LETTER_QUEUE": dead,
        "UMIQ_CONNECTORS": json.dumps(connectors),
        "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
        "UMIQ_LOG_FORMAT": "json",
        **ALLOW_PRIVILEGED_LOGIN,
    })  # fmt: skip
    done = umiq(environment, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    return environment


def raw_dead_letters(env: Mapping[str, str]) -> list[tuple[dict[str, Any], bytes]]:
    """Headers and body (bytes) of every message in ``env``'s dead-letter queue, read
    raw from RabbitMQ and left in place (unacked)."""
    from kombu import Connection

    from worker.celery_app import dead_letter_queue
    from worker.settings import Settings

    queue = dead_letter_queue(Settings(dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"]))
    found = []
    with Connection(env["UMIQ_BROKER_URL"]) as conn:
        channel = conn.channel()
        bound = queue(channel)
        bound.declare()
        while (message := bound.get(no_ack=False)) is not None:
            body = message.body.encode() if isinstance(message.body, str) else message.body
            found.append((dict(message.headers), body))
        channel.close()  # unacked: they stay
    return found


def steps_of(url: str, task_id: str) -> list[dict[str, Any]]:
    """The ``step`` rows of ``task_id`` in the audit database at ``url``, in chain order."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT seq, kind, output, details FROM step WHERE task_id = :t ORDER BY seq"
                ),
                {"t": task_id},
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def celery_client(env: Mapping[str, str], tmp_path: Path) -> Any:
    """A Celery client of ``env``'s broker, result backend and queues (a worker's env)."""
    from worker.celery_app import create_app
    from worker.settings import Settings

    return create_app(
        Settings(
            data_dir=tmp_path / "client",
            broker_url=env["UMIQ_BROKER_URL"],
            database_url=env["UMIQ_DATABASE_URL"],
            queue=env["UMIQ_QUEUE"],
            dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"],
        )
    )

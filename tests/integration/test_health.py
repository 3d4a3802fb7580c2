"""`umiq health` against the real RabbitMQ and Postgres: green, then red naming what is down.

The shared services are never stopped (other tests use them): a dead broker or database
is the same settings pointed at a loopback port where nothing listens.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.support.cli import umiq

pytestmark = [pytest.mark.integration]


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env(
    tmp_path: Path, amqp_url: str, postgres_url: str, model_dir: Path
) -> Iterator[dict[str, str]]:
    """A deployment's settings: RabbitMQ, a migrated Postgres the worker logs in to as its
    own role (`umiq db login-role`), a key ring file, the model."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
    environment.update({
        "UMIQ_DATA_DIR": str(tmp_path / "data"),
        "UMIQ_MODEL_DIR": str(model_dir),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_KEYRING_FILE": str(tmp_path / "secrets" / "keyring.json"),
    })  # fmt: skip
    (tmp_path / "secrets").mkdir()
    login = f"umiq_login_{uuid.uuid4().hex[:8]}"
    for args in (("db", "upgrade"), ("keys", "init"), ("db", "login-role", login)):
        done = umiq(environment, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    url = make_url(postgres_url).set(username=login, password=None).render_as_string(False)
    try:
        yield {**environment, "UMIQ_DATABASE_URL": url}
    finally:
        libpq = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{login}"')


def statuses(stdout: str) -> dict[str, str]:
    """``{check: status}`` from `umiq health`'s lines."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) >= 2 and parts[0] in ("ok", "fail", "skip"):
            out[parts[1]] = parts[0]
    return out


def test_a_deployment_on_the_real_services_is_healthy(env: dict[str, str]) -> None:
    """Broker, database, migrations, model and key ring all pass; exit 0."""
    done = umiq(env, "health")
    assert done.returncode == 0, done.stdout + done.stderr
    assert statuses(done.stdout) == {
        "broker": "ok",
        "database": "ok",
        "migrations": "ok",
        "login": "ok",
        "model": "ok",
        "engine": "skip",  # the role models run in process here
        "keyring": "ok",
        "decisions": "ok",
    }
    assert "127.0.0.1:5672" in done.stdout and "guest:***@" in done.stdout
    assert "healthy" in done.stdout
    # what the worker's connections must fit in: the server's limit, read off the server
    assert re.search(r"server max_connections \d+", done.stdout), done.stdout


def test_the_database_check_names_the_audit_pool(env: dict[str, str]) -> None:
    """UMIQ_DATABASE_POOL_SIZE shows in the database check beside the server's limit."""
    done = umiq({**env, "UMIQ_DATABASE_POOL_SIZE": "24"}, "health")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit pool 24 (+24 when busy)" in done.stdout, done.stdout


def test_a_dead_broker_is_named(env: dict[str, str]) -> None:
    """The broker on a closed port fails the broker check alone; exit 1 naming it."""
    port = closed_port()
    dead = {**env, "UMIQ_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{port}//"}
    done = umiq(dead, "health", "--timeout", "2")
    assert done.returncode == 1
    assert statuses(done.stdout) == {
        "broker": "fail",
        "database": "ok",
        "migrations": "ok",
        "login": "ok",
        "model": "ok",
        "engine": "skip",  # the role models run in process here
        "keyring": "ok",
        "decisions": "ok",
    }
    assert f"127.0.0.1:{port}" in done.stdout
    assert "unhealthy: broker" in done.stderr


def test_a_dead_engine_is_named(env: dict[str, str]) -> None:
    """With the engine backend and nothing on the engine's port, the engine check alone
    fails; exit 1 naming it and its URL."""
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    dead = {k: v for k, v in env.items() if k != "UMIQ_ROLE_MODEL"}
    dead.update({"UMIQ_MODEL_BACKEND": "openai", "UMIQ_ENGINE_URL": url})
    done = umiq(dead, "health", "--timeout", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    got = statuses(done.stdout)
    assert got["engine"] == "fail", done.stdout
    assert [name for name, status in got.items() if status == "fail"] == ["engine"]
    assert f"{url}/health" in done.stdout
    assert "unhealthy: engine" in done.stderr


def test_a_dead_database_is_named(env: dict[str, str]) -> None:
    """The database on a closed port fails, its migrations are skipped; exit 1 naming it."""
    port = closed_port()
    url = env["UMIQ_DATABASE_URL"].replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    done = umiq({**env, "UMIQ_DATABASE_URL": url}, "health", "--timeout", "2")
    assert done.returncode == 1
    got = statuses(done.stdout)
    assert got["database"] == "fail" and got["migrations"] == got["login"] == "skip", done.stdout
    assert got["broker"] == "ok" and got["model"] == "ok", done.stdout
    assert "unhealthy: database" in done.stderr


def test_both_dead_are_both_named(env: dict[str, str]) -> None:
    """With broker and database down, the exit names both."""
    port = closed_port()
    url = env["UMIQ_DATABASE_URL"].replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    broker = f"amqp://guest:guest@127.0.0.1:{port}//"
    done = umiq({**env, "UMIQ_DATABASE_URL": url, "UMIQ_BROKER_URL": broker}, "health")
    assert done.returncode == 1
    assert "unhealthy: broker, database" in done.stderr


def test_a_database_behind_the_migrations_is_named(
    env: dict[str, str], postgres_url: str, tmp_path: Path
) -> None:
    """An empty database (no `umiq db upgrade`) fails the migrations check, saying what to run."""
    from sqlalchemy import create_engine, text

    server, database = postgres_url.rsplit("/", 1)
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    name = f"{database}_empty"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        empty = f"{server}/{name}"
        done = umiq({**env, "UMIQ_DATABASE_URL": empty}, "health", "--check", "migrations")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    assert done.returncode == 1
    assert statuses(done.stdout) == {"migrations": "fail"}
    assert "umiq db upgrade" in done.stdout


@pytest.mark.parametrize("set_role", [None, "umiq_worker"])
def test_a_superuser_login_fails_the_login_check(
    env: dict[str, str], postgres_url: str, set_role: str | None
) -> None:
    """The admin's (superuser) login fails the login check alone, also with SET ROLE, and
    the message names the way out (`umiq db login-role`)."""
    admin = {**env, "UMIQ_DATABASE_URL": postgres_url}
    if set_role:
        admin["UMIQ_DATABASE_ROLE"] = set_role
    done = umiq(admin, "health")
    assert done.returncode == 1, done.stdout + done.stderr
    got = statuses(done.stdout)
    assert [name for name, status in got.items() if status == "fail"] == ["login"], done.stdout
    assert "a superuser" in done.stdout and "umiq db login-role NAME" in done.stdout
    assert ("RESET ROLE" in done.stdout) == bool(set_role)
    assert "unhealthy: login" in done.stderr


def test_a_login_that_can_become_a_superuser_fails(env: dict[str, str], postgres_url: str) -> None:
    """A NOINHERIT login that is a member of a superuser role fails: it can SET ROLE to it."""
    name = f"umiq_noinherit_{uuid.uuid4().hex[:8]}"
    libpq = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    admin_user = make_url(postgres_url).username or "postgres"
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN NOINHERIT')
        admin.execute(f'GRANT umiq_worker, "{admin_user}" TO "{name}"')
    try:
        url = make_url(postgres_url).set(username=name, password=None).render_as_string(False)
        done = umiq({**env, "UMIQ_DATABASE_URL": url}, "health", "--check", "login")
    finally:
        with psycopg.connect(libpq, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"able to become {admin_user}" in done.stdout, done.stdout


def test_a_worker_image_without_its_key_ring_is_named(env: dict[str, str], tmp_path: Path) -> None:
    """A Postgres deployment whose key ring file is not mounted fails the key ring check."""
    missing = {**env, "UMIQ_KEYRING_FILE": str(tmp_path / "not-mounted" / "keyring.json")}
    done = umiq(missing, "health", "--check", "keyring")
    assert done.returncode == 1
    assert "not-mounted" in done.stdout and "umiq keys init" in done.stdout

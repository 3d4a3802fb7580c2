"""``umiq keys``: the key ring that seals sensitive audit fields.

    umiq keys init                 create the key ring file if there is none
    umiq keys list                 key ids, which is primary, when made (never key material)
    umiq keys rotate [--retire-old]  new primary key; re-wrap every data key under it
    umiq keys decrypt TASK_ID      a task's tool calls and steps, sealed fields opened (JSON)

``rotate`` is an admin's job: it updates ``sealed_key`` with the login user's rights
(never ``UMIQ_DATABASE_ROLE``'s) and rewrites the key ring file. ``decrypt`` is for
authorised auditors: its output holds the personal data the audit log keeps sealed.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer

from policies import SealError
from worker.errors import UmiqError


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Any:
    from worker.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return settings


def keys_init() -> None:
    """Create the key ring file (UMIQ_KEYRING_FILE, else <data_dir>/keyring.json) if none."""
    from worker.audit.keyring import DEFAULT_FILE, create_keyring_file, keyring_source

    try:
        source = keyring_source(_settings())
        if source.path is None:
            typer.echo("the key ring is set by UMIQ_KEYRING: there is no file to create")
            return
        keyring, created = create_keyring_file(source.path)
    except UmiqError as exc:
        _fail(str(exc))
    if not created:
        typer.echo(f"key ring {source.path} already exists (primary {keyring.primary})")
        return
    typer.echo(f"created key ring {source.path} (mode 0600, primary {keyring.primary})")
    if source.path.name == DEFAULT_FILE and source.kind == "default":
        typer.echo(
            "it lies in the data dir beside the audit database: in production keep keys "
            "elsewhere (UMIQ_KEYRING_FILE or UMIQ_KEYRING)"
        )


def keys_list() -> None:
    """List the key ring's key ids, which one is primary and when each was made."""
    from worker.audit.keyring import keyring_source, load_keyring

    try:
        settings = _settings()
        source = keyring_source(settings)
        if source.kind == "default" and source.path is not None and not source.path.exists():
            _fail(f"no key ring yet at {source.path}: create it with `umiq keys init`", 1)
        keyring = load_keyring(settings)
    except UmiqError as exc:
        _fail(str(exc))
    typer.echo(f"key ring: {source}")
    for entry in keyring.describe():
        state = "primary" if entry["primary"] else "retired"
        typer.echo(f"{entry['kid']}  {state:<7}  created {entry['created'] or 'unknown'}")


def keys_rotate(
    retire_old: bool = typer.Option(
        False,
        "--retire-old",
        help="Remove the old keys from the ring once no data key needs them.",
    ),
) -> None:
    """Add a new primary key and re-wrap every sealed record's data key under it."""
    from worker.audit.db import ensure_schema, make_engine
    from worker.audit.keyring import keyring_source, load_keyring, rotated, save_keyring
    from worker.audit.sealing import rotate_keys

    try:
        settings = _settings()
        source = keyring_source(settings)
        if source.path is None:
            _fail(
                "the key ring comes from UMIQ_KEYRING (the environment), where umiq cannot "
                "save a new key: point UMIQ_KEYRING_FILE at a copy of it, rotate, then "
                "update the secret from that file"
            )
        path = source.path
        keyring = load_keyring(settings)
        url = settings.resolved_database_url
        ensure_schema(url)
        engine = make_engine(url, role=None)  # an admin's rights: the worker role cannot UPDATE
        try:
            rotation = rotate_keys(
                engine,
                keyring,
                rotated(keyring),
                lambda ring: save_keyring(ring, path),
                retire_old=retire_old,
            )
        finally:
            engine.dispose()
    except UmiqError as exc:
        _fail(str(exc))
    typer.echo(f"new primary key {rotation.new_kid} saved to {path}")
    typer.echo(f"re-wrapped {rotation.rewrapped} data key(s) under {rotation.new_kid}")
    if rotation.removed:
        typer.echo(f"removed old key(s) {', '.join(rotation.removed)} from the ring")
    elif rotation.retired:
        typer.echo(f"old key(s) {', '.join(rotation.retired)} kept in the ring as retired")
    if rotation.failed:
        for ref, reason in rotation.failed:
            typer.echo(f"not re-wrapped: {ref}: {reason}", err=True)
        raise typer.Exit(1)


def keys_decrypt(task_id: str = typer.Argument(..., help="The task to show.")) -> None:
    """Print a task's tool calls and steps with their sealed fields opened, as JSON."""
    from worker.audit.chain import normalize_json
    from worker.audit.db import ensure_schema
    from worker.audit.keyring import load_keyring
    from worker.audit.log import AuditLog
    from worker.audit.sealing import Sealer

    try:
        settings = _settings()
        url = settings.resolved_database_url
        ensure_schema(url)
        log = AuditLog.from_url(url, sealer=Sealer(load_keyring(settings)))
        try:
            task = log.task(task_id)
            steps = log.steps(task_id)
            tool_calls = log.tool_calls(task_id)
            if task is None and not steps and not tool_calls:
                _fail(f"task {task_id!r} is not in the audit log", 1)
            report = {
                "task": task.as_dict() if task else None,
                "steps": [s.as_dict() for s in log.unseal(steps)],
                "tool_calls": [c.as_dict() for c in log.unseal(tool_calls)],
            }
        finally:
            log.close()
    except SealError as exc:
        _fail(str(exc), 1)
    except UmiqError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(normalize_json(report), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add the ``keys`` command group to ``app``."""
    keys_app = typer.Typer(
        no_args_is_help=True, help="The key ring that seals sensitive audit fields."
    )
    keys_app.command("init")(keys_init)
    keys_app.command("list")(keys_list)
    keys_app.command("rotate")(keys_rotate)
    keys_app.command("decrypt")(keys_decrypt)
    app.add_typer(keys_app, name="keys")

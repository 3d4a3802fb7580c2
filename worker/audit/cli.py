"""``umiq audit``: verify, checkpoint, review and export the audit log (wired in by ``worker.cli``).

    umiq audit verify [--checkpoint FILE --public-key PUB.pem]
    umiq audit keygen --out DIR
    umiq audit checkpoint --key PRIVATE.pem --out FILE
    umiq audit show TASK_ID [--open] [--json]
    umiq audit tasks [--department D] [--limit N] [--json]
    umiq audit export [--format jsonl|csv] [--department D] [--since ISO] [--until ISO] [--out FILE]

The database is ``UMIQ_DATABASE_URL`` (or the embedded SQLite file), reached as
``UMIQ_DATABASE_ROLE`` when that is set. Exit status: 0 when all is well, 1 when the
chain or a checkpoint does not verify (or there is nothing to show), 2 when the command
cannot run (bad option, unreadable key, schema not at head).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from worker.errors import UmiqError

if TYPE_CHECKING:
    from worker.audit.log import AuditLog
    from worker.settings import Settings

console = Console()
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to ``app``."""
    audit_app = typer.Typer(
        no_args_is_help=True, help="Verify, checkpoint, review and export the audit log."
    )
    audit_app.command("verify")(verify_command)
    audit_app.command("keygen")(keygen_command)
    audit_app.command("checkpoint")(checkpoint_command)
    audit_app.command("show")(show_command)
    audit_app.command("tasks")(tasks_command)
    audit_app.command("export")(export_command)
    app.add_typer(audit_app, name="audit")


# -- helpers ----------------------------------------------------------------------------


def _say(message: str, style: str = "") -> None:
    # Text, not markup: messages carry data (task ids, reasons) that may contain brackets;
    # soft_wrap: a line such as "… seq=12 …" is never split for the terminal's width.
    console.print(Text(message, style=style), soft_wrap=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(Text.assemble(("error: ", "red"), message), soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn umiq's errors into a message and exit status 2 instead of a traceback."""
    try:
        yield
    except UmiqError as exc:
        _fail(str(exc))


def _settings() -> Settings:
    from worker.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return settings


def _sealer() -> Any:
    """The sealer of the configured key ring, to open sealed values; None without sealing.

    Reading never creates a key ring: a new one could open nothing.
    """
    try:
        from worker.audit.keyring import keyring_source, load_keyring
        from worker.audit.sealing import Sealer
    except ImportError:  # a umiq without sealing: `show --open` says so
        return None
    source = keyring_source()
    if source.kind == "default" and source.path is not None and not source.path.exists():
        _fail(
            f"no audit key ring to open sealed values with ({source.path} does not exist): "
            "set UMIQ_KEYRING_FILE or UMIQ_KEYRING to the ring the values were sealed with"
        )
    return Sealer(load_keyring())


def _open_log(*, sealed: bool = False) -> AuditLog:
    """The audit log of the settings; with ``sealed``, one that can open sealed values."""
    from worker.audit import AuditLog, ensure_schema

    url = _settings().resolved_database_url
    ensure_schema(url)
    sealer = _sealer() if sealed else None
    # only a sealer is passed, so that a umiq whose AuditLog takes none still works
    return AuditLog.from_url(url, sealer=sealer) if sealer is not None else AuditLog.from_url(url)


def _time(option: str, text: str | None) -> datetime | None:
    from worker.audit.review import parse_time

    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


# -- verify and checkpoints -------------------------------------------------------------


def verify_command(
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="A file from `umiq audit checkpoint`: also prove the log still extends it.",
    ),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="The checkpoint signer's public key (PEM), with --checkpoint."
    ),
) -> None:
    """Walk the hash chain; name the first broken row, exit 1 if there is one."""
    from worker.audit.checkpoint import (
        Checkpoint,
        check_checkpoint,
        database_identity,
        describe_database,
        load_public_key,
        signature_problem,
    )

    if (checkpoint is None) != (public_key is None):
        _fail("--checkpoint and --public-key go together: a checkpoint is only as good as its key")
    with _errors():
        saved = None
        if checkpoint is not None and public_key is not None:
            saved = Checkpoint.read(checkpoint)
            problem = signature_problem(saved, load_public_key(public_key))
            if problem is not None:
                _say(f"checkpoint {checkpoint} REFUSED: {problem}")
                raise typer.Exit(1)
        log = _open_log()
        checked = None if saved is None else check_checkpoint(log.engine, saved)
        report = log.verify() if checked is None else checked.chain
    failed = not report.ok
    if report.ok:
        _say(f"audit chain OK: {report.rows} rows verified")
    else:
        _say(f"audit chain BROKEN after {report.rows} good rows: {report.first_broken}")
    failed = _verify_decisions(log) or failed
    if saved is not None and checked is not None:
        if checked.problem is not None:
            failed = True
            _say(f"checkpoint seq={saved.seq} BROKEN: {checked.problem}")
        else:
            _say(
                f"checkpoint seq={saved.seq} OK: row seq={saved.seq} still has the signed hash "
                f"{saved.hash[:16]}…, the log extends it to seq={checked.head_seq}"
            )
        here = database_identity(_settings().resolved_database_url)
        if here != saved.database:
            _say(
                f"note: the checkpoint was taken on {describe_database(saved.database)}, "
                f"this is {describe_database(here)}",
                style="yellow",
            )
    if failed:
        raise typer.Exit(1)


def _verify_decisions(log: AuditLog) -> bool:
    """Say whether the human decisions are signed by the decision key; True when one is not.

    The key is ``UMIQ_DECISION_PUBLIC_KEY_FILE``, else the data dir's (created on first
    use, ``worker.audit.decisions.verifier``): an unsigned decision never passes."""
    from worker.audit.decisions import check_log, verifier

    with _errors():
        public_key = verifier(_settings())
        found = check_log(log.engine, public_key)
    for seq, task_id, why in found.bad:
        _say(f"decision seq={seq} (task {task_id}) does NOT VERIFY: {why}")
    if not found.bad:
        _say(f"decisions OK: {found.checked} human decisions signed by the decision key")
    return bool(found.bad)


def keygen_command(
    out: Path = typer.Option(..., "--out", help="Directory for the key pair (created 0700)."),
) -> None:
    """Write a new Ed25519 key pair for signing checkpoints (private key 0600)."""
    from worker.audit.checkpoint import write_keypair

    with _errors():
        private, public = write_keypair(out)
    _say(f"private key {private} (mode 0600): keep it away from the database and its admins")
    _say(f"public key  {public}: give it to whoever verifies checkpoints")


def checkpoint_command(
    key: Path = typer.Option(..., "--key", help="The Ed25519 private key (from keygen)."),
    out: Path = typer.Option(..., "--out", help="The checkpoint file to write (must be new)."),
) -> None:
    """Verify the chain and sign its head into a checkpoint file kept outside the database."""
    from worker.audit.checkpoint import (
        database_identity,
        describe_database,
        load_private_key,
        take_checkpoint,
    )
    from worker.errors import ChainBroken

    with _errors():
        private = load_private_key(key)
        if out.exists():
            _fail(f"{out} already exists: each checkpoint goes to a new file")
        log = _open_log()
        database = database_identity(_settings().resolved_database_url)
        try:
            saved = take_checkpoint(log.engine, private, database=database, chain=log.chain)
        except ChainBroken as exc:
            _say(f"audit chain BROKEN: {exc}; no checkpoint of a broken chain is signed")
            raise typer.Exit(1) from exc
        saved.write(out)
    _say(
        f"checkpoint of {describe_database(database)} chain {saved.chain!r} at "
        f"seq={saved.seq} hash={saved.hash}, signed by key {saved.key_id}: {out}"
    )


# -- review -----------------------------------------------------------------------------


def show_command(
    task_id: str = typer.Argument(..., help="The task to show."),
    open_sealed: bool = typer.Option(
        False, "--open", help="Open sealed values (needs the audit key ring configured)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """A task's whole decision trace: steps, policy decisions with reasons, tool calls."""
    from worker.audit.review import load_trace, open_trace, render_trace, trace_as_dict

    with _errors():
        log = _open_log(sealed=open_sealed)
        try:
            trace = load_trace(log, task_id)
        except UmiqError as exc:
            _say(str(exc))
            raise typer.Exit(1) from exc
        if open_sealed:
            unseal = getattr(log, "unseal", None)
            if unseal is None:
                _fail(
                    "--open needs sealed-value support (AuditLog.unseal), which this umiq "
                    "does not have; run without --open to see sealed values as «sealed»"
                )
            try:
                trace = open_trace(trace, unseal)
            except UmiqError as exc:
                _fail(f"cannot open the sealed values of task {task_id!r}: {exc}")
        data = trace_as_dict(trace)
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        console.print(render_trace(data))


def tasks_command(
    department: str | None = typer.Option(None, help="Only this department's tasks."),
    limit: int = typer.Option(20, min=1, help="How many tasks, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Recent tasks with their outcome."""
    from worker.audit.review import list_tasks, tasks_table

    with _errors():
        summaries = list_tasks(_open_log().engine, department=department, limit=limit)
    if as_json:
        for summary in summaries:
            typer.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    elif summaries:
        console.print(tasks_table(summaries))
    else:
        _say("no tasks" + (f" in department {department!r}" if department else ""))


def export_command(
    format_: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
    department: str | None = typer.Option(None, help="Only records of this department's tasks."),
    since: str | None = typer.Option(
        None, help="Records at or after this ISO time (UTC if no zone)."
    ),
    until: str | None = typer.Option(None, help="Records before this ISO time (UTC if no zone)."),
    out: Path | None = typer.Option(None, "--out", help="File to write (default: stdout)."),
) -> None:
    """Export chain records (tasks, steps, tool calls) in seq order; sealed fields stay sealed."""
    from worker.audit.review import EXPORT_FORMATS, export_records, write_csv, write_jsonl

    if format_ not in EXPORT_FORMATS:
        raise typer.BadParameter(f"one of {', '.join(EXPORT_FORMATS)}", param_hint="--format")
    start, end = _time("--since", since), _time("--until", until)
    write = write_csv if format_ == "csv" else write_jsonl
    with _errors():
        records = export_records(_open_log().engine, department=department, since=start, until=end)
        if out is None:
            write(records, sys.stdout)
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="") as fh:
            count = write(records, fh)
    err_console.print(Text(f"{count} records written to {out}"), soft_wrap=True)

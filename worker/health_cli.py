"""``umiq health``: the readiness checks of :mod:`worker.health` on the command line."""

from __future__ import annotations

import json

import typer

from worker.health import CHECKS


def health(
    check: list[str] = typer.Option(
        [], "--check", "-c", help=f"Run only this check (repeatable): {', '.join(CHECKS)}."
    ),
    load_model: bool = typer.Option(
        False, "--load-model", help="Load the role model (slow) instead of reading its files."
    ),
    timeout: float = typer.Option(5.0, help="Seconds to wait for the broker and the database."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check broker, database, migrations, model and key ring; exit 1 naming what failed."""
    from worker.health import healthy, run_checks
    from worker.settings import get_settings

    try:
        checks = run_checks(get_settings(), check or None, load_model=load_model, timeout=timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--check") from exc
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in checks], indent=2, default=str))
    else:
        for c in checks:
            typer.echo(f"{c.status:<4}  {c.name:<10}  {c.detail}")
    if not healthy(checks):
        failed = [c.name for c in checks if not c.ok]
        typer.echo(f"unhealthy: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    if not as_json:
        typer.echo("healthy")


def register(app: typer.Typer) -> None:
    """Add ``umiq health`` to the ``umiq`` command line."""
    app.command("health")(health)

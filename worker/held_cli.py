"""``umiq held``: list the answers the claims policy held, release or reject them."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from worker.errors import UmiqError


def register(app: typer.Typer, *, console: Console | None = None) -> typer.Typer:
    """Add the ``held`` group to ``app``."""
    out = console or Console()
    group = typer.Typer(no_args_is_help=True, help="Answers held for review.")
    app.add_typer(group, name="held")

    def audit() -> object:
        from worker import runtime

        return runtime.audit_log()

    @group.command("list")
    def list_command(
        department: str | None = typer.Option(None, help="Only this department's."),
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
    ) -> None:
        """Answers waiting for a human, oldest first (as the model wrote them)."""
        from worker.held import held

        items = held(audit(), department=department)
        if as_json:
            for item in items:
                typer.echo(json.dumps(item.as_dict(), sort_keys=True))
            return
        table = Table("task", "department", "answer", "why it is held", "since", title="held")
        for item in items:
            table.add_row(
                item.task_id,
                item.department,
                item.answer,
                "; ".join(item.reasons),
                item.held_at.isoformat(timespec="seconds"),
            )
        out.print(table if items else "no answers are held for review")

    def _decide(task_id: str, verdict: str, by: str, reason: str) -> None:
        from worker.held import decide_answer

        try:
            decision = decide_answer(audit(), task_id, verdict=verdict, by=by, reason=reason)  # type: ignore[arg-type]
        except UmiqError as exc:
            out.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        ends = "answered" if verdict == "released" else "rejected"
        out.print(
            f"{task_id}: answer {verdict} by {decision.by} (audit seq {decision.seq}); "
            f"the task ends {ends}"
        )

    @group.command("release")
    def release(
        task_id: str,
        by: str = typer.Option(..., help="Who releases (recorded in the audit log)."),
        reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    ) -> None:
        """Release the held answer of TASK_ID: the task ends answered with it."""
        _decide(task_id, "released", by, reason)

    @group.command("reject")
    def reject(
        task_id: str,
        by: str = typer.Option(..., help="Who rejects (recorded in the audit log)."),
        reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    ) -> None:
        """Reject the held answer of TASK_ID: the task ends rejected."""
        _decide(task_id, "rejected", by, reason)

    return group

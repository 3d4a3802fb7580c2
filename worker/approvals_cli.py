"""``umiq approvals`` and ``umiq held``: what waits for a human, and the human's decision.

``approvals``: calls a policy holds before they are made; ``held``: answers the claims
policy holds before anyone is told them.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from worker.errors import UmiqError
from worker.settings import Settings


def register(app: typer.Typer, *, console: Console | None = None) -> typer.Typer:
    """Add the ``approvals`` and ``held`` groups to ``app``."""
    out = console or Console()
    group = typer.Typer(no_args_is_help=True, help="Calls waiting for a human.")
    app.add_typer(group, name="approvals")

    def audit() -> object:
        from worker import runtime

        return runtime.audit_log()

    def runtime_settings() -> Settings:
        from worker import runtime

        return runtime.settings()

    def signer() -> object:
        from worker import runtime
        from worker.audit.decisions import signing_key

        return signing_key(runtime.settings().decision_key_file)

    @group.command("list")
    def list_command(
        department: str | None = typer.Option(None, help="Only this department's."),
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
    ) -> None:
        """Calls waiting for approval, oldest first (arguments as the model saw them)."""
        from worker.approvals import pending

        items = pending(audit(), department=department)
        if as_json:
            for item in items:
                typer.echo(json.dumps(item.as_dict(), sort_keys=True))
            return
        table = Table("task", "department", "call", "why it waits", "since", title="pending")
        for item in items:
            call = f"{item.tool} {json.dumps(item.arguments, sort_keys=True)}"
            table.add_row(
                item.task_id,
                item.department,
                call,
                "; ".join(item.reasons),
                item.requested_at.isoformat(timespec="seconds"),
            )
        out.print(table if items else "no calls are waiting for approval")

    def _decide(task_id: str, verdict: str, by: str, reason: str) -> None:
        from worker.approvals import decide

        try:
            decision = decide(
                audit(),  # type: ignore[arg-type]
                task_id,
                verdict=verdict,  # type: ignore[arg-type]
                by=by,
                reason=reason,
                signer=signer(),  # type: ignore[arg-type]
                pseudonym_key=runtime_settings().pseudonym_key,
            )
        except UmiqError as exc:
            out.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        follow = "the task resumes on the worker" if verdict == "approved" else "the task ends"
        out.print(f"{decision.key} {verdict} by {decision.by} (audit seq {decision.seq}); {follow}")

    @group.command("approve")
    def approve(
        task_id: str,
        by: str = typer.Option(..., help="Who approves (recorded in the audit log)."),
        reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    ) -> None:
        """Approve the waiting call of TASK_ID; the task resumes."""
        _decide(task_id, "approved", by, reason)

    @group.command("reject")
    def reject(
        task_id: str,
        by: str = typer.Option(..., help="Who rejects (recorded in the audit log)."),
        reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    ) -> None:
        """Reject the waiting call of TASK_ID; the task ends as rejected."""
        _decide(task_id, "rejected", by, reason)

    @group.command("resume")
    def resume(task_id: str) -> None:
        """Send the resume of TASK_ID's approved call again (a lost or dead-lettered resume)."""
        from worker.approvals import resend

        try:
            key = resend(audit(), task_id)
        except UmiqError as exc:
            out.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        out.print(f"{key}: resume sent; the task resumes on the worker")

    held_group = typer.Typer(no_args_is_help=True, help="Answers held for review.")
    app.add_typer(held_group, name="held")

    @held_group.command("list")
    def held_list(
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

    def _decide_answer(task_id: str, verdict: str, by: str, reason: str) -> None:
        from worker.held import decide_answer

        try:
            decision = decide_answer(
                audit(),  # type: ignore[arg-type]
                task_id,
                verdict=verdict,  # type: ignore[arg-type]
                by=by,
                reason=reason,
                signer=signer(),  # type: ignore[arg-type]
            )
        except UmiqError as exc:
            out.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        ends = "answered" if verdict == "released" else "rejected"
        out.print(
            f"{task_id}: answer {verdict} by {decision.by} (audit seq {decision.seq}); "
            f"the task ends {ends}"
        )

    @held_group.command("release")
    def release_answer(
        task_id: str,
        by: str = typer.Option(..., help="Who releases (recorded in the audit log)."),
        reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    ) -> None:
        """Release the held answer of TASK_ID: the task ends answered with it."""
        _decide_answer(task_id, "released", by, reason)

    @held_group.command("reject")
    def reject_answer(
        task_id: str,
        by: str = typer.Option(..., help="Who rejects (recorded in the audit log)."),
        reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    ) -> None:
        """Reject the held answer of TASK_ID: the task ends rejected."""
        _decide_answer(task_id, "rejected", by, reason)

    return group

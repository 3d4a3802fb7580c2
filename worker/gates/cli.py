"""``umiq gates``: what waits for a human, and the human's decision; ``umiq approvals``
and ``umiq held`` are the same commands for one kind of wait each.

``gates``: both kinds in one queue; ``approvals``: calls a policy holds before they are
made; ``held``: answers the claims policy holds before anyone is told them.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from worker.errors import UmiqError
from worker.settings import Settings


def register(app: typer.Typer, *, console: Console | None = None) -> typer.Typer:
    """Add the ``gates`` group, and ``approvals`` and ``held``, to ``app``."""
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
        from worker.audit.decisions import signer as decision_signer

        return decision_signer(runtime.settings())

    def pseudonym_secret() -> str:
        from worker.audit.requester import pseudonym_key

        return pseudonym_key(runtime_settings())

    @group.command("list")
    def list_command(
        department: str | None = typer.Option(None, help="Only this department's."),
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
    ) -> None:
        """Calls waiting for approval, oldest first (arguments as the model saw them)."""
        from worker.gates.calls import pending

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
        from worker.gates.calls import decide

        try:
            decision = decide(
                audit(),  # type: ignore[arg-type]
                task_id,
                verdict=verdict,  # type: ignore[arg-type]
                by=by,
                reason=reason,
                signer=signer(),  # type: ignore[arg-type]
                pseudonym_key=pseudonym_secret(),
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
        from worker.gates.calls import resend

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
        from worker.gates.answers import held

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
        from worker.gates.answers import decide_answer

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

    gates = typer.Typer(
        no_args_is_help=True, help="What waits for a human: held calls and held answers."
    )
    app.add_typer(gates, name="gates")

    @gates.command("list")
    def gates_list(
        department: str | None = typer.Option(None, help="Only this department's."),
        kind: str | None = typer.Option(None, help="Only 'call' or 'answer'."),
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
    ) -> None:
        """Everything waiting for a human, oldest first: held calls and held answers."""
        from worker.gates.queue import waiting

        items = waiting(audit(), department=department, kind=kind)  # type: ignore[arg-type]
        if as_json:
            for item in items:
                typer.echo(json.dumps({"kind": item.kind, **item.as_dict()}, sort_keys=True))
            return
        table = Table("task", "department", "waits", "what", "why", "since", title="waiting")
        for item in items:
            what = (
                f"{item.tool} {json.dumps(item.arguments, sort_keys=True)}"
                if item.kind == "call"
                else item.answer  # type: ignore[union-attr]
            )
            table.add_row(
                item.task_id,
                item.department,
                item.kind,
                what,
                "; ".join(item.reasons),
                item.since.isoformat(timespec="seconds"),
            )
        out.print(table if items else "nothing waits for a human")

    def _kind(task_id: str) -> str:
        from worker.gates.queue import wait_for

        try:
            return wait_for(audit(), task_id).kind  # type: ignore[arg-type]
        except UmiqError as exc:
            out.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc

    @gates.command("approve")
    def gates_approve(
        task_id: str,
        by: str = typer.Option(..., help="Who lets it through (recorded in the audit log)."),
        reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    ) -> None:
        """Let TASK_ID's wait through: approve its held call (it resumes) or release its
        held answer (it ends answered)."""
        if _kind(task_id) == "call":
            _decide(task_id, "approved", by, reason)
        else:
            _decide_answer(task_id, "released", by, reason)

    @gates.command("reject")
    def gates_reject(
        task_id: str,
        by: str = typer.Option(..., help="Who rejects (recorded in the audit log)."),
        reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    ) -> None:
        """Reject TASK_ID's held call or held answer: the task ends rejected."""
        if _kind(task_id) == "call":
            _decide(task_id, "rejected", by, reason)
        else:
            _decide_answer(task_id, "rejected", by, reason)

    gates.command("resume")(resume)

    return group

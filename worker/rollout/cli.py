"""``umiq rollout``: the departments' live rollout settings, their history, the human
outcomes of tasks routed to people, and the promotion report."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from worker.errors import UmiqError


def register(app: typer.Typer, *, console: Console | None = None) -> typer.Typer:
    """Add the ``rollout`` group to ``app``."""
    out = console or Console()
    group = typer.Typer(no_args_is_help=True, help="Rollout per department (DESIGN §8).")
    app.add_typer(group, name="rollout")

    def store() -> Any:
        from worker import runtime
        from worker.rollout.store import store_for

        return store_for(runtime.audit_log(), runtime.settings())

    def fail(exc: Exception) -> None:
        out.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc

    @group.command("show")
    def show(
        department: str | None = typer.Argument(None, help="One department (default: all)."),
        as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    ) -> None:
        """The live settings workers read now, with their version and last change."""
        try:
            lives = store().all()
        except UmiqError as exc:
            fail(exc)
        if department is not None:
            lives = {k: v for k, v in lives.items() if k == department}
            if not lives:
                lives = {department: store().live(department)}
        if as_json:
            typer.echo(json.dumps([v.as_dict() for v in lives.values()], indent=2))
            return
        table = Table(
            "department",
            "mode",
            "auto %",
            "kill switch",
            "paused",
            "version",
            "changed",
            title="rollout (live)",
        )
        for name, live in lives.items():
            s = live.settings
            changed = (
                f"{live.changed_by} {live.changed_at:%Y-%m-%d %H:%M}" if live.changed_by else "-"
            )
            if name == "*":
                table.add_row(
                    "* (global)",
                    "",
                    "",
                    "ON" if s and s.kill_switch else "off",
                    "",
                    str(live.version),
                    changed,
                )
            elif s is None:
                table.add_row(name, "off (unconfigured)", "", "", "", "0", "-")
            else:
                table.add_row(
                    name,
                    s.mode,
                    f"{s.percent:g}" if s.mode == "auto" else "",
                    "ON" if s.kill_switch else "off",
                    "yes" if s.paused else "",
                    str(live.version),
                    changed,
                )
        out.print(table)

    @group.command("set")
    def set_command(
        department: str = typer.Argument(..., help="The department, or '*' for global."),
        assignments: list[str] = typer.Argument(..., help="key=value, e.g. mode=shadow."),
        by: str = typer.Option(..., help="Who makes the change (recorded)."),
        reason: str = typer.Option("", help="Why (recorded)."),
    ) -> None:
        """Change a department's live settings; the next task reads them."""
        from worker.rollout.config import parse_assignment

        try:
            changes = dict(parse_assignment(a) for a in assignments)
            live = store().set(department, changes, by=by, reason=reason)
        except UmiqError as exc:
            fail(exc)
        if live is None:
            out.print(f"{department}: nothing changed")
        else:
            out.print(f"{department}: version {live.version} ({', '.join(assignments)})")

    @group.command("kill")
    def kill(
        department: str = typer.Argument(..., help="The department, or 'all' for every one."),
        by: str = typer.Option(..., help="Who pulls it (recorded)."),
        reason: str = typer.Option(..., help="Why (recorded)."),
        off: bool = typer.Option(False, "--off", help="Release the kill switch instead."),
    ) -> None:
        """Stop every write of a department (or all) now, before its next write."""
        name = "*" if department == "all" else department
        try:
            live = store().set(name, {"kill_switch": not off}, by=by, reason=reason)
        except UmiqError as exc:
            fail(exc)
        state = "off" if off else "ON"
        out.print(f"kill switch {state} for {department}" + ("" if live else " (already)"))

    def pause_or_resume(department: str, by: str, reason: str, paused: bool) -> None:
        from worker import runtime
        from worker.celery_app import create_app
        from worker.rollout.queues import department_queue, pause

        settings = runtime.settings()
        try:
            live, replies = pause(
                store(), create_app(settings), settings, department, by=by, reason=reason,
                paused=paused,
            )  # fmt: skip
        except UmiqError as exc:
            fail(exc)
        except Exception as exc:  # the broker: the change is recorded, workers not told
            out.print(
                f"[yellow]recorded, but the workers could not be told ({exc}); they read it "
                "when they start[/yellow]"
            )
            raise typer.Exit(1) from exc
        queue = department_queue(settings, department)
        state = "paused" if paused else "resumed"
        out.print(f"{department} {state} (queue {queue})" + ("" if live else " (already)"))
        for reply in replies:
            for node, answer in reply.items():
                out.print(f"  {node}: {answer.get('ok') or answer.get('error')}")

    @group.command("pause")
    def pause_command(
        department: str = typer.Argument(..., help="The department."),
        by: str = typer.Option(..., help="Who pauses it (recorded)."),
        reason: str = typer.Option(..., help="Why (recorded)."),
    ) -> None:
        """Stop the workers taking the department's tasks; they wait on its queue."""
        pause_or_resume(department, by, reason, True)

    @group.command("resume")
    def resume_command(
        department: str = typer.Argument(..., help="The department."),
        by: str = typer.Option(..., help="Who resumes it (recorded)."),
        reason: str = typer.Option("", help="Why (recorded)."),
    ) -> None:
        """Let the department's workers take its tasks again."""
        pause_or_resume(department, by, reason, False)

    @group.command("history")
    def history(
        department: str | None = typer.Argument(None, help="One department (default: all)."),
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
    ) -> None:
        """Every change: who, when, why, before → after."""
        try:
            changes = store().history(department)
        except UmiqError as exc:
            fail(exc)
        if as_json:
            for c in changes:
                typer.echo(json.dumps(c.as_dict(), default=str, sort_keys=True))
            return
        table = Table(
            "seq", "department", "v", "by", "when", "why", "before → after", title="rollout changes"
        )
        for c in changes:
            before = c.before or {}
            diff = {k: (before.get(k), v) for k, v in c.after.items() if before.get(k) != v}
            text = "; ".join(
                f"{k}: {json.dumps(b)} → {json.dumps(a)}" for k, (b, a) in diff.items()
            )
            table.add_row(
                str(c.seq),
                c.department,
                str(c.version),
                c.changed_by,
                c.created_at.isoformat(timespec="seconds"),
                c.reason,
                text[:400],
            )
        out.print(table)

    @group.command("check")
    def check(path: Path = typer.Argument(..., help="A rollout settings file (TOML).")) -> None:
        """Validate a rollout settings file; exit 1 naming every bad key."""
        from worker.rollout.config import load_file

        try:
            parsed = load_file(path)
        except UmiqError as exc:
            fail(exc)
        out.print(f"{path}: valid ({len(parsed.departments)} departments)")

    @group.command("apply")
    def apply(
        path: Path = typer.Argument(..., help="A rollout settings file (TOML)."),
        by: str = typer.Option(..., help="Who applies it (recorded)."),
        reason: str = typer.Option("", help="Why (recorded, e.g. the file's commit)."),
    ) -> None:
        """Make a validated file the live copy: one audited change per department that differs."""
        from worker.rollout.config import load_file

        try:
            done = store().apply(load_file(path), by=by, reason=reason)
        except UmiqError as exc:
            fail(exc)
        for live in done:
            out.print(f"{live.department}: version {live.version}")
        if not done:
            out.print("nothing changed")

    @group.command("export")
    def export(
        out_path: Path | None = typer.Option(None, "--out", help="Write here (default stdout)."),
    ) -> None:
        """The live settings as a rollout file (to review and commit)."""
        from worker.rollout.config import as_data, dump

        lives = store().all()
        text = dump({k: as_data(v.settings, k) for k, v in lives.items() if v.settings})
        if out_path is None:
            typer.echo(text, nl=False)
        else:
            out_path.write_text(text, encoding="utf-8")
            out.print(f"wrote {out_path}")

    @group.command("record-human")
    def record_human_command(
        task_id: str = typer.Argument(..., help="A task routed to people (off or shadow)."),
        by: str = typer.Option(..., help="Who did the task."),
        outcome: str = typer.Option("answered", help="answered | gave_up"),
        answer: str = typer.Option("", help="The answer the person gave."),
        write: list[str] = typer.Option(
            [], help='A write the person made: TOOL {"json": "arguments"} (repeatable).'
        ),
    ) -> None:
        """Store what a person did with a task, and its agreement with the shadow run."""
        from worker import runtime
        from worker.rollout.human import parse_write, record_human

        try:
            writes = [parse_write(w) for w in write]
            details = record_human(
                runtime.audit_log(), task_id, by=by, outcome=outcome, answer=answer, writes=writes
            )
        except UmiqError as exc:
            fail(exc)
        out.print_json(json.dumps(details.agreement))

    @group.command("record-verdict")
    def record_verdict_command(
        task_id: str = typer.Argument(..., help="A task that has ended."),
        verdict: str = typer.Argument(..., help="pass | fail"),
        by: str = typer.Option(..., help="Who (or which checker) judged it."),
        source: str = typer.Option("human", help="human | checker"),
        reason: list[str] = typer.Option([], help="Why (repeatable)."),
    ) -> None:
        """Store whether a task's result was right; the report's pass rate counts it."""
        from worker import runtime
        from worker.rollout.verdict import VERDICTS, record_verdict

        if verdict not in VERDICTS:
            fail(ValueError(f"the verdict must be one of {', '.join(VERDICTS)}"))
        try:
            details = record_verdict(
                runtime.audit_log(), task_id, passed=verdict == "pass", by=by, source=source,
                reasons=reason,
            )  # fmt: skip
        except UmiqError as exc:
            fail(exc)
        out.print(f"{task_id}: {details['verdict']} ({details['source']}: {details['by']})")

    @group.command("report")
    def report_command(
        department: str = typer.Argument(..., help="The department."),
        since: datetime | None = typer.Option(None, help="Only tasks received since (ISO)."),
        plot_path: Path | None = typer.Option(None, "--plot", help="Also write a PNG here."),
        as_json: bool = typer.Option(False, "--json", help="JSON instead of tables."),
    ) -> None:
        """The promotion figures: tasks by mode and outcome, pass rate, approvals, held
        answers, refusals, writes, latency percentiles, shadow agreement."""
        from datetime import UTC

        from worker import runtime
        from worker.rollout.report import plot, report

        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        try:
            figures = report(runtime.audit_log(), department, since)
        except UmiqError as exc:
            fail(exc)
        if plot_path is not None:
            plot(figures, plot_path)
        if as_json:
            typer.echo(json.dumps(figures, indent=2, sort_keys=True))
            return
        print_report(out, figures)
        if plot_path is not None:
            out.print(f"plot: {plot_path}")

    return group


def print_report(out: Console, f: dict[str, Any]) -> None:
    """The promotion figures ``report`` returns, as tables."""
    out.print(
        f"[bold]{f['department']}[/bold]: {f['tasks']} tasks"
        + (f" since {f['since']}" if f["since"] else "")
    )
    table = Table("mode", "tasks", "outcomes", "latency p50 / p90 / p99 (s)", title="by mode")
    for mode, n in sorted(f["by_mode"].items()):
        lat = f["latency_s"].get(mode, {})
        shown = " / ".join(
            "-" if lat.get(q) is None else f"{lat[q]:.1f}" for q in ("p50", "p90", "p99")
        )
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(f["outcomes"].get(mode, {}).items()))
        table.add_row(mode, str(n), outcomes, shown)
    out.print(table)
    a, h, w, s = f["approvals"], f["held_answers"], f["writes"], f["shadow_agreement"]
    rows = Table("figure", "value", title="gates and writes")
    rows.add_row(
        "approvals requested / granted / rejected",
        f"{a['requested']} / {a['granted']} / {a['rejected']}",
    )
    rows.add_row(
        "held answers / released / rejected", f"{h['held']} / {h['released']} / {h['rejected']}"
    )
    rows.add_row(
        "policy refusals", ", ".join(f"{k} {v}" for k, v in f["policy_refusals"].items()) or "0"
    )
    rows.add_row(
        "writes made / dry-run / stopped / failed",
        f"{w['made']} / {w['dry_run']} / {w['stopped']} / {w['failed']}",
    )
    rows.add_row(
        "shadow outcomes", ", ".join(f"{k} {v}" for k, v in f["shadow_outcomes"].items()) or "-"
    )
    p = f["pass_rate"]
    by_mode = "; ".join(
        f"{m} {_percent(r)} ({r['passed']}/{r['judged']})" for m, r in p["by_mode"].items()
    )
    by_source = ", ".join(f"{k} {r['judged']}" for k, r in p["by_source"].items())
    rows.add_row(
        "pass rate (tasks with a verdict)",
        f"{p['passed']} of {p['judged']} ({_percent(p)})"
        + (f"; {by_mode}; verdicts: {by_source}" if p["judged"] else ""),
    )
    rate = _percent(s)
    rows.add_row(
        "shadow agreement with people",
        f"{s['agree']} of {s['compared']} ({rate}); same outcome {s['same_outcome']}, "
        f"same writes {s['same_writes']}, same answer {s['same_answer']} of "
        f"{s['answers_compared']}",
    )
    out.print(rows)


def _percent(figure: dict[str, Any]) -> str:
    return "-" if figure["rate"] is None else f"{100 * figure['rate']:.0f}%"

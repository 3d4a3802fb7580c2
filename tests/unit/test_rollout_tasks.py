"""The Celery task under each rollout mode, on the embedded broker and audit log, with
the scripted role model and a recording connector."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from connectors import ToolCall, ToolResult, ToolSpec
from worker import runtime
from worker.rollout import GLOBAL, record_human, store_for
from worker.rollout.human import human_queue
from worker.settings import get_settings

INVOICE = {"type": "object", "properties": {"invoice_id": {"type": "string"}}}
DISPUTE = {
    "type": "object",
    "properties": {"invoice_id": {"type": "string"}, "reason": {"type": "string"}},
    "required": ["invoice_id"],
}
READ = ToolSpec("get_invoice", "Get an invoice.", INVOICE, effect="read", connector="erp")
WRITE = ToolSpec("dispute_invoice", "Dispute an invoice.", DISPUTE, effect="write", connector="erp")
SCRIPT = [
    {"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}},
    {"tool": "dispute_invoice", "arguments": {"invoice_id": "INV-1001", "reason": "wrong amount"}},
]


class Erp:
    """A recording ERP: reads answer, writes are counted; ``on_read`` runs on each read."""

    name = "erp"

    def __init__(self) -> None:
        self.writes: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.reads = 0
        self.on_read: Any = None

    def tools(self) -> list[ToolSpec]:
        return [READ, WRITE]

    def invoke(self, call: ToolCall, key: str) -> ToolResult:
        if call.tool == "get_invoice":
            self.reads += 1
            if self.on_read is not None:
                self.on_read()
            return ToolResult(ok=True, data={"id": "INV-1001", "status": "open"})
        self.writes.append(dict(call.arguments))
        self.keys.append(key)
        return ToolResult(ok=True, data={"id": "INV-1001", "status": "disputed"})

    def dry_run(self, call: ToolCall, key: str) -> ToolResult:
        would = {"method": "POST", "url": f"/invoices/{call.arguments['invoice_id']}/dispute",
                 "json": dict(call.arguments), "headers": {"Idempotency-Key": key}}  # fmt: skip
        return ToolResult(ok=True, data={"dry_run": True, "sent": False, "would_send": would})


@pytest.fixture
def erp() -> Erp:
    return Erp()


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, erp: Erp) -> Iterator[Any]:
    import worker.tasks as tasks
    from worker.celery_app import create_app
    from worker.toolbox import Toolbox

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UMIQ_ROLE_MODEL", "tests.support.scripted:factory")
    runtime.reset()
    monkeypatch.setattr(tasks, "app", create_app(get_settings()))
    box = Toolbox([erp])
    monkeypatch.setattr(runtime, "toolbox", lambda: box)
    yield tasks
    runtime.reset()


def run(tasks: Any, task_id: str, script: list[dict[str, Any]] = SCRIPT) -> dict[str, Any]:
    envelope = {
        "task_id": task_id,
        "department": "finance",
        "query": "Dispute invoice INV-1001: the amount is wrong.",
        "requested_by": "alice",
        "context": {"script": script},
    }
    return tasks.run_task.apply(args=[envelope]).get()  # type: ignore[no-any-return]


def set_mode(**changes: Any) -> None:
    store_for(runtime.audit_log(), get_settings()).set("finance", changes, by="ops", reason="t")


def human_messages(name: str = "umiq.human.finance") -> list[dict[str, Any]]:
    got = []
    with Connection(get_settings().resolved_broker_url) as conn:
        queue = conn.SimpleQueue(human_queue(name))
        try:
            while True:
                message = queue.get(timeout=1)
                got.append(message.payload)
                message.ack()
        except queue.Empty:
            pass
        queue.close()
    return got


def test_off_runs_no_model_and_routes_to_people(tasks: Any, erp: Erp) -> None:
    """In off the task is recorded with its mode, goes to the human queue, and nothing runs."""
    set_mode(mode="off")
    result = run(tasks, "t-off")
    assert result["outcome"] == "not_automated" and "not automated" in result["reason"]
    audit = runtime.audit_log()
    assert audit.task("t-off").context["rollout"]["mode"] == "off"
    assert [s.kind for s in audit.steps("t-off")] == ["outcome"]
    assert erp.reads == 0 and erp.writes == []
    (message,) = human_messages()
    assert message["task_id"] == "t-off" and message["rollout"]["mode"] == "off"


def test_shadow_records_the_exact_write_and_sends_nothing(tasks: Any, erp: Erp) -> None:
    """In shadow reads are real, the write is dry-run and recorded exactly, then people."""
    set_mode(mode="shadow")
    result = run(tasks, "t-shadow")
    assert result["outcome"] == "not_automated"
    assert erp.reads == 1 and erp.writes == []
    audit = runtime.audit_log()
    (write,) = [c for c in audit.tool_calls("t-shadow") if c.effect == "write"]
    opened = audit.unseal(write)
    assert opened.response["would_send"]["json"] == SCRIPT[1]["arguments"]
    assert opened.response["would_send"]["headers"] == {"Idempotency-Key": write.idempotency_key}
    outcome = audit.outcome("t-shadow")
    assert outcome["outcome"] == "not_automated"
    assert [m["task_id"] for m in human_messages()] == ["t-shadow"]

    done = record_human(audit, "t-shadow", by="bob", outcome="answered", answer="INV-1001",
                        writes=[("dispute_invoice", SCRIPT[1]["arguments"])])  # fmt: skip
    assert done.agreement == {"outcome": True, "writes": True, "answer": True, "agree": True,
                              "missing_facts": []}  # fmt: skip
    # the row holds the keys it held before the typed event, and the person's work sealed
    stored = dict(audit.steps("t-shadow")[-1].details)
    assert "$sealed" in stored.pop("human") and stored == done.to_details()
    assert set(stored) == {
        "outcome", "reason", "by", "mode", "human_outcome", "human_writes", "agreement"
    }  # fmt: skip
    assert audit.outcome("t-shadow")["outcome"] == "handled_by_human"
    assert audit.verify().ok


def test_review_holds_the_write(tasks: Any, erp: Erp) -> None:
    """In review the write waits for approval; nothing is written."""
    set_mode(mode="review")
    result = run(tasks, "t-review")
    assert result["outcome"] == "awaiting_approval" and "review mode" in result["reason"]
    assert erp.writes == []


def test_auto_writes(tasks: Any, erp: Erp) -> None:
    """In auto the write is made."""
    result = run(tasks, "t-auto")
    assert result["outcome"] == "answered", result["reason"]
    assert erp.writes == [SCRIPT[1]["arguments"]]
    assert runtime.audit_log().task("t-auto").context["rollout"]["mode"] == "auto"


def test_kill_switch_flipped_during_the_episode_stops_the_next_write(tasks: Any, erp: Erp) -> None:
    """The global kill switch set while the task reads stops its write, which is audited."""
    erp.on_read = lambda: store_for(runtime.audit_log(), get_settings()).set(
        GLOBAL, {"kill_switch": True}, by="carol", reason="incident"
    )
    run(tasks, "t-kill")
    assert erp.reads == 1 and erp.writes == []
    audit = runtime.audit_log()
    (write,) = [c for c in audit.tool_calls("t-kill") if c.effect == "write"]
    assert not write.ok and write.error.startswith("stopped: the global kill switch is on")
    assert "carol" in write.error


def test_a_settings_change_applies_to_the_next_task(tasks: Any, erp: Erp) -> None:
    """A mode changed between two tasks applies to the second, in the same process."""
    assert run(tasks, "t-1")["outcome"] == "answered"
    set_mode(mode="off")
    assert run(tasks, "t-2")["outcome"] == "not_automated"
    assert len(erp.writes) == 1


def test_report_counts_modes_writes_approvals_and_agreement(tasks: Any, tmp_path: Path) -> None:
    """The promotion report counts each mode's tasks, writes, approvals and agreement."""
    from worker.rollout.report import plot, report

    run(tasks, "r-auto")
    set_mode(mode="review")
    run(tasks, "r-review")
    set_mode(mode="shadow")
    run(tasks, "r-shadow")
    audit = runtime.audit_log()
    record_human(audit, "r-shadow", by="bob", outcome="answered", answer="INV-1002")
    figures = report(audit, "finance")
    assert figures["by_mode"] == {"auto": 1, "review": 1, "shadow": 1}
    assert figures["writes"] == {"made": 1, "dry_run": 1, "stopped": 0, "failed": 0}
    assert figures["approvals"]["requested"] == 1
    assert figures["outcomes"]["shadow"] == {"handled_by_human": 1}
    agreement = figures["shadow_agreement"]
    assert agreement["compared"] == 1 and agreement["agree"] == 0
    assert agreement["same_outcome"] == 1 and agreement["same_answer"] == 0
    assert figures["latency_s"]["auto"]["n"] == 1
    assert plot(figures, tmp_path / "report.png").stat().st_size > 0


def test_pass_rate_counts_verdicts_and_shadow_agreement(tasks: Any) -> None:
    """The pass rate counts each judged task once: its last verdict, else its agreement."""
    from worker.rollout import record_verdict
    from worker.rollout.report import report

    run(tasks, "p-auto-1")
    run(tasks, "p-auto-2")
    run(tasks, "p-auto-3")  # never judged: not in the pass rate
    set_mode(mode="shadow")
    run(tasks, "p-shadow-1")
    run(tasks, "p-shadow-2")
    audit = runtime.audit_log()
    record_verdict(audit, "p-auto-1", passed=True, by="acme-checker", source="checker")
    record_verdict(audit, "p-auto-2", passed=True, by="acme-checker", source="checker")
    record_verdict(audit, "p-auto-2", passed=False, by="bob", reasons=["wrong vendor"])
    same = [("dispute_invoice", SCRIPT[1]["arguments"])]
    record_human(audit, "p-shadow-1", by="bob", outcome="answered", writes=same)
    record_human(audit, "p-shadow-2", by="bob", outcome="gave_up")
    figures = report(audit, "finance")
    rates = figures["pass_rate"]
    assert (rates["judged"], rates["passed"]) == (4, 2)
    assert rates["by_mode"]["auto"] == {"judged": 2, "passed": 1, "rate": 0.5}
    assert rates["by_mode"]["shadow"] == {"judged": 2, "passed": 1, "rate": 0.5}
    # by source each source's own last verdict: the checker passed both auto tasks
    assert rates["by_source"]["checker"] == {"judged": 2, "passed": 2, "rate": 1.0}
    assert rates["by_source"]["human"] == {"judged": 1, "passed": 0, "rate": 0.0}
    assert rates["by_source"]["shadow agreement"]["judged"] == 2
    assert figures["policy_refusals"] == {} and figures["approvals"]["rejected"] == 0
    assert audit.verify().ok


def test_a_verdict_needs_an_ended_task_and_a_known_source(tasks: Any) -> None:
    """A verdict on an unknown task or from an unknown source is refused with the reason."""
    from worker.errors import HumanOutcomeError
    from worker.rollout import record_verdict

    run(tasks, "v-1")
    audit = runtime.audit_log()
    with pytest.raises(HumanOutcomeError, match="no task 'nope'"):
        record_verdict(audit, "nope", passed=True, by="bob")
    with pytest.raises(HumanOutcomeError, match="source must be one of checker, human"):
        record_verdict(audit, "v-1", passed=True, by="bob", source="oracle")


def test_report_command_prints_every_figure_and_writes_the_plot(tasks: Any, tmp_path: Path) -> None:
    """`umiq rollout report --plot` prints the pass rate, gates and agreement, and a PNG."""
    import typer
    from typer.testing import CliRunner

    from worker.rollout.cli import register

    run(tasks, "c-auto")
    set_mode(mode="shadow")
    run(tasks, "c-shadow")
    audit = runtime.audit_log()
    record_human(audit, "c-shadow", by="bob", outcome="answered",
                 writes=[("dispute_invoice", SCRIPT[1]["arguments"])])  # fmt: skip
    app = typer.Typer()
    register(app)
    verdict = CliRunner().invoke(app, ["rollout", "record-verdict", "c-auto", "fail", "--by", "x"])
    assert verdict.exit_code == 0, verdict.output
    png = tmp_path / "finance.png"
    done = CliRunner().invoke(
        app, ["rollout", "report", "finance", "--plot", str(png)], env={"COLUMNS": "200"}
    )
    assert done.exit_code == 0, done.output
    assert "1 of 2 (50%)" in done.output  # pass rate: the shadow task passed, auto failed
    assert "approvals requested / granted / rejected" in done.output
    assert "shadow agreement with people" in done.output and "1 of 1 (100%)" in done.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_checker_verdict_is_recorded_with_its_reasons_sealed(tasks: Any) -> None:
    """record_checked appends a checker verdict whose reasons are sealed, not plain text."""
    from worker.rollout import record_checked
    from worker.rollout.report import report

    run(tasks, "k-1")
    audit = runtime.audit_log()
    reasons = ["the answer discloses 'NL91ABNA0417164300'"]
    given = record_checked(audit, "k-1", passed=False, reasons=reasons, checker="acme checker")
    assert given is not None and given["source"] == "checker" and given["reasons"] == reasons
    step = audit.steps("k-1")[-1]
    assert step.details["verdict"] == "fail" and step.details["by"] == "acme checker"
    assert "NL91ABNA0417164300" not in json.dumps(step.details)
    assert audit.unseal(step).details["verdict_reasons"] == reasons
    rates = report(audit, "finance")["pass_rate"]
    assert rates["by_source"]["checker"] == {"judged": 1, "passed": 0, "rate": 0.0}
    assert audit.verify().ok


def test_a_checker_verdict_needs_a_task_that_ended(tasks: Any) -> None:
    """record_checked records nothing on a task unknown to the audit log or still running."""
    from worker.rollout import record_checked

    audit = runtime.audit_log()
    assert record_checked(audit, "nope", passed=True, reasons=[], checker="acme checker") is None
    audit.append_task(task_id="k-running", department="finance", query="q", requested_by="a")
    assert record_checked(audit, "k-running", passed=True, reasons=[], checker="c") is None
    assert [s.kind for s in audit.steps("k-running")] == []


def test_shadow_writes_are_made_exactly_as_dry_run(tasks: Any, erp: Erp) -> None:
    """make_shadow_writes sends the shadow run's dry-run write with its arguments and key;
    shadow_result is the agent's own outcome and answer, not the people's."""
    from worker.rollout import make_shadow_writes, shadow_result
    from worker.toolbox import Toolbox

    set_mode(mode="shadow")
    run(tasks, "k-shadow")
    audit = runtime.audit_log()
    record_human(audit, "k-shadow", by="bob", outcome="gave_up")
    assert erp.writes == []
    (dry,) = [c for c in audit.tool_calls("k-shadow") if c.effect == "write"]
    made = make_shadow_writes(audit, "k-shadow", Toolbox([erp]))
    assert [r.ok for r in made] == [True]
    assert erp.writes == [SCRIPT[1]["arguments"]] and erp.keys == [dry.idempotency_key]
    result = shadow_result(audit, "k-shadow")
    assert result["task_id"] == "k-shadow" and result["outcome"] == "answered"


def test_shadow_writes_of_a_task_not_in_shadow_are_refused(tasks: Any, erp: Erp) -> None:
    """A task that ran in auto has no dry-run writes to make: refused with the reason."""
    from worker.errors import HumanOutcomeError
    from worker.rollout import make_shadow_writes
    from worker.toolbox import Toolbox

    run(tasks, "k-auto")
    with pytest.raises(HumanOutcomeError, match="did not run in shadow"):
        make_shadow_writes(runtime.audit_log(), "k-auto", Toolbox([erp]))
    assert len(erp.writes) == 1


def test_rollout_steps_are_typed_payloads_written_as_read(tasks: Any) -> None:
    """The people's outcomes and the verdicts are named fields of their step types (only
    the sealed ``human`` entry rides along unnamed), and each reads back to the same
    details, so its canonical JSON and hash are unchanged."""
    from worker.audit import canonical_json
    from worker.audit.events import OutcomeDetails, PolicyDetails, details_of
    from worker.rollout import record_verdict

    set_mode(mode="shadow")
    run(tasks, "e-shadow")
    audit = runtime.audit_log()
    record_human(audit, "e-shadow", by="bob", outcome="gave_up")
    record_verdict(audit, "e-shadow", passed=False, by="carol", reasons=["wrong vendor"])
    steps = audit.steps("e-shadow")
    people = [e for s in steps if isinstance(e := details_of(s), OutcomeDetails)][-2:]
    assert [e.outcome for e in people] == ["not_automated", "handled_by_human"]
    assert people[0].mode == "shadow" and people[0].queue and people[0].extra == {}
    assert people[1].by == "bob" and people[1].human_outcome == "gave_up"
    assert people[1].agreement is not None and set(people[1].extra) == {"human"}
    verdict = details_of(steps[-1])
    assert isinstance(verdict, PolicyDetails) and verdict.extra == {}
    assert (verdict.verdict, verdict.source, verdict.by) == ("fail", "human", "carol")
    assert verdict.verdict_reasons is not None  # sealed: an envelope until opened
    for step in steps:
        read = details_of(step).to_details()
        assert canonical_json(read) == canonical_json(step.details), step.index
    assert audit.verify().ok

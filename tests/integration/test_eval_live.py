"""``umiq eval live`` on the real Acme services, and its scoring driven by the expert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.acme.tasks import TaskInstance, World, solve
from examples.acme.world import world as acme_world
from worker.agent import protocol
from worker.audit import AuditLog, ensure_schema
from worker.evaluation.causes import CAUSES
from worker.evaluation.live import score_task, select_tasks

pytestmark = [pytest.mark.integration]

TASK_KEYS = {
    "role_ms",
    "uid",
    "family",
    "department",
    "instruction",
    "task_id",
    "passed",
    "checker_passed",
    "reasons",
    "outcome",
    "reason",
    "answer",
    "steps",
    "audit_steps",
    "calls",
    "tokens",
    "wall_s",
    "cause",
    "cause_detail",
    "expert_outcome",
    "expert_calls",
    "reset_verified",
    "models",
}


@pytest.mark.real_model
@pytest.mark.slow
def test_eval_live_runs_a_task_through_the_worker(tmp_path: Path, model_dir: Path) -> None:
    """One held-out task through a real worker: reset, checked, cut at one step, classified."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
    env.update({"UMIQ_DATA_DIR": str(tmp_path / "data"), "UMIQ_MODEL_DIR": str(model_dir)})
    env["COLUMNS"] = "200"
    out = tmp_path / "live"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "eval",
            "live",
            "--limit",
            "1",
            "--max-steps",
            "1",
            "--max-new-tokens",
            "16",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)  # the tables, for the record (pytest -s)
    assert "live summary (shipped)" in done.stdout

    record = json.loads((out / "live.json").read_text())
    assert (record["format"], record["version"]) == ("umiq.eval.live", 1)
    run, summary, tasks = record["run"], record["summary"], record["tasks"]
    assert run["command"].startswith("umiq eval live --split test --limit 1")
    assert run["model_set"]["name"] == "shipped"
    assert run["settings"]["max_steps"] == 1 and run["settings"]["max_new_tokens"] == 16
    assert run["settings"]["broker"].startswith("sqla+sqlite:///")
    assert any(m.startswith("planner@") for m in run["models_seen"]), run["models_seen"]
    assert summary["tasks"] == len(tasks) == 1
    assert set(summary["causes"]) == set(CAUSES)
    assert summary["mean_tokens"] > 0

    task = tasks[0]
    assert set(task) == TASK_KEYS
    assert set(task["role_ms"]) <= {"planner", "caller", "summarizer"} and task["role_ms"]
    assert task["uid"] == "invoice_status.test.000" and task["department"] == "finance"
    assert task["reset_verified"] is True  # the systems were back at the seed before it ran
    assert task["checker_passed"] is False and task["reasons"]  # the checker read the world
    assert task["expert_outcome"] == "answered" and task["expert_calls"] == 1
    # one step allows no conclusion once the planner calls (greedy decoding: it does)
    assert task["outcome"] == "step_limit", task
    assert (task["passed"], task["cause"], task["steps"]) == (False, "step limit", 1)

    audit = AuditLog.from_url(f"sqlite:///{out / 'work' / 'audit.sqlite'}")
    kinds = [s.kind for s in audit.steps(task["task_id"])]
    # The run's outcome, then the checker's verdict that `umiq eval live` records on it.
    assert kinds[0] == "planner" and kinds[-2:] == ["outcome", "policy"], kinds
    verdict = audit.steps(task["task_id"])[-1].details
    assert (verdict["verdict"], verdict["source"]) == ("fail", "checker"), verdict
    assert audit.verify().ok


@pytest.mark.real_model
@pytest.mark.slow
def test_a_task_past_its_timeout_is_an_error(tmp_path: Path, model_dir: Path) -> None:
    """A task with no result in time is recorded as an error and the run still ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
    env.update({"UMIQ_DATA_DIR": str(tmp_path / "data"), "UMIQ_MODEL_DIR": str(model_dir)})
    out = tmp_path / "live"
    args = ["--limit", "1", "--max-steps", "1", "--timeout", "2", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "eval", "live", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    task = json.loads((out / "live.json").read_text())["tasks"][0]
    assert (task["outcome"], task["passed"], task["cause"]) == (None, False, "error")
    assert task["cause_detail"] == "no result within 2s"


# -- scoring, driven by the expert ------------------------------------------------------------

FAMILIES = [
    "invoice_status",
    "schedule_payment",
    "dispute_invoice",
    "unknown_invoice",
    "approve_leave",
    "pay_and_notify_vendor",
]


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, list[TaskInstance]]]:
    """The real Acme services and one held-out task of each family above."""
    with acme_world.start(tmp_path_factory.mktemp("acme"), seed=0) as office:
        world = office.systems
        instances = select_tasks(
            world, split="test", seed=0, per_family=1, families=FAMILIES, world=acme_world
        )
        yield world, instances


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    """A real (SQLite) audit log."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    log = AuditLog.from_url(url)
    yield log
    log.close()


def record_episode(
    audit: AuditLog, task_id: str, turns: list[dict[str, str]], outcome: str
) -> dict[str, Any]:
    """Write ``turns`` to the audit log as the episode records them; return the result dict."""
    audit.append_task(
        task_id=task_id, department="finance", query=turns[0]["value"], requested_by="t"
    )
    steps: list[dict[str, Any]] = []

    def add(kind: str, output: str, details: dict[str, Any]) -> None:
        index = len(steps) + 1
        audit.append_step(task_id=task_id, index=index, kind=kind, output=output, details=details)
        steps.append({"index": index, "kind": kind, "text": output, "details": details})

    answer = ""
    call = None
    for turn in turns[1:]:
        who, text = turn["from"], turn["value"]
        if who == "assistant":
            add("planner", text, {"next": protocol.parse_planner(text).next})
        elif who == "caller":
            call = protocol.parse_caller(text)
            add("caller", text, {"tool": call.tool, "arguments": call.arguments})
            add(
                "policy",
                "allowed",
                {"policy": "access", "allowed": True, "reasons": [], "tool": call.tool},
            )
        elif who == "observation":
            seen = json.loads(text)
            assert call is not None
            audit.append_tool_call(  # as the episode records the connector's result
                task_id=task_id,
                step=len(steps),
                idempotency_key=f"{task_id}:{len(steps)}",
                tool=call.tool,
                effect="read",
                request=dict(call.arguments),
                response=seen.get("response"),
                ok=not seen.get("error"),
                error=seen.get("error") or None,
            )
            add("tool", text, {"ok": not seen.get("error")})
        elif who == "conclusion":
            answer = text
            add("summarizer", text, {})
    add("outcome", answer, {"outcome": outcome, "reason": "recorded"})
    return {
        "task_id": task_id,
        "outcome": outcome,
        "answer": answer,
        "reason": "recorded",
        "tokens": 7,
        "steps": steps,
    }


def test_expert_solutions_pass_the_scoring(acme, audit: AuditLog) -> None:
    """Every expert solution, replayed into the audit log, is scored as passed."""
    world, instances = acme
    assert {i.family for i in instances} == set(FAMILIES)
    for number, instance in enumerate(instances):
        world.reset()
        solution = solve(world, instance)
        turns = solution.trajectory["conversations"]
        result = record_episode(audit, f"expert-{number}", turns, solution.outcome)
        scored = score_task(instance, world, result, audit, expert=solution)
        assert scored.passed, (instance.uid, scored.reasons)
        assert (scored.cause, scored.reasons, scored.tokens) == (None, [], 7)
        assert scored.calls == scored.expert_calls == sum(t["from"] == "caller" for t in turns)


def test_a_missing_write_fails_with_the_checkers_reason(acme, audit: AuditLog) -> None:
    """Concluding with the expert's answer but without its payment fails, and says why."""
    world, instances = acme
    instance = next(i for i in instances if i.family == "schedule_payment")
    world.reset()
    solution = solve(world, instance)  # the expert's calls and answer, for comparison
    world.reset()  # and its payment undone: the agent below never makes it
    turns = solution.trajectory["conversations"]
    write_at = next(
        i for i, t in enumerate(turns) if t["from"] == "caller" and "schedule_payment" in t["value"]
    )
    reads = turns[: write_at - 1]  # up to the thought that would call schedule_payment
    ending = [
        {"from": "assistant", "value": "I can answer now.\n Next: conclusion."},
        {"from": "conclusion", "value": solution.answer},
    ]
    result = record_episode(audit, "no-write", reads + ending, "answered")
    scored = score_task(instance, world, result, audit, expert=solution)
    assert not scored.passed and not scored.checker_passed
    assert any(r.startswith("payments: expected a new record") for r in scored.reasons), (
        scored.reasons
    )
    assert scored.cause == "wrong plan"
    assert scored.cause_detail.startswith("concluded before calling schedule_payment")


def test_a_give_up_on_an_answerable_task_fails(acme, audit: AuditLog) -> None:
    """Giving up where the expert answers fails the checker; with no calls, a wrong plan."""
    world, instances = acme
    instance = next(i for i in instances if i.family == "invoice_status")
    world.reset()
    solution = solve(world, instance)
    turns = [
        {"from": "user", "value": instance.instruction},
        {"from": "assistant", "value": "I cannot do this.\n Next: give up."},
    ]
    result = record_episode(audit, "gave-up", turns, "gave_up")
    scored = score_task(instance, world, result, audit, expert=solution)
    assert not scored.passed
    assert "expected an answer, got none" in scored.reasons
    assert scored.cause == "wrong plan"


def test_a_missing_record_answer_after_finding_a_record_fails(acme, audit: AuditLog) -> None:
    """ "It does not exist" passes only when a lookup came back empty: the expert's does; the
    same answer after a lookup of something that exists (a vendor fetched instead of the
    invoice) is the right words for the wrong reason."""
    world, instances = acme
    instance = next(i for i in instances if i.family == "unknown_invoice")
    world.reset()
    solution = solve(world, instance)
    assert solution.outcome == "answered"
    expert = score_task(
        instance,
        world,
        record_episode(audit, "nf", solution.trajectory["conversations"], "answered"),
        audit,
        expert=solution,
    )
    assert expert.passed, expert.reasons
    vendor = world.read("list_vendors")[0]["id"]
    found = json.dumps({"error": "", "response": world.read("get_vendor", vendor_id=vendor)})
    iid = instance.slots["invoice_id"]
    turns = [
        {"from": "user", "value": instance.instruction},
        {"from": "assistant", "value": "Let me look it up.\n Next: caller."},
        {"from": "caller", "value": protocol.format_caller("get_vendor", {"vendor_id": vendor})},
        {"from": "observation", "value": found},
        {"from": "assistant", "value": "Nothing there.\n Next: conclusion."},
        {"from": "conclusion", "value": f"There is no invoice {iid} in the ERP."},
    ]
    scored = score_task(instance, world, record_episode(audit, "found", turns, "answered"), audit)
    assert not scored.passed and not scored.checker_passed
    assert any(
        "said it does not exist without a get_invoice that found nothing" in r
        for r in scored.reasons
    ), scored.reasons

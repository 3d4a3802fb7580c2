"""Worker metrics: counted from committed audit rows and from the role model's generations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from worker.agent.roles import Generation, GenerationRequest
from worker.audit import AuditLog, upgrade
from worker.metrics import (
    MeteredAuditLog,
    MeteredRoleModel,
    OpsCollector,
    meter_audit,
    meter_model,
    work_queues,
)
from worker.settings import DepartmentSettings, Settings


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def audit(settings: Settings) -> Any:
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)
    log = AuditLog.from_url(settings.resolved_database_url)
    yield log
    log.close()


@pytest.fixture
def finance() -> Any:
    with structlog.contextvars.bound_contextvars(department="finance"):
        yield


def step(audit: Any, task_id: str, index: int, kind: str, **details: Any) -> None:
    audit.append_step(task_id=task_id, index=index, kind=kind, details=details)


def test_an_ended_task_counts_by_department_mode_and_outcome(
    audit: Any, settings: Settings, finance: None
) -> None:
    """An outcome step moves umiq_tasks_total for its department, mode and outcome."""
    metered = MeteredAuditLog(audit, settings)
    labels = {"department": "finance", "mode": "auto", "outcome": "answered"}
    before = value("umiq_tasks_total", **labels)
    received = value("umiq_tasks_received_total", department="finance")
    metered.append_task(task_id="m-1", department="finance", query="q", requested_by="t")
    step(metered, "m-1", 1, "outcome", outcome="answered")
    assert value("umiq_tasks_total", **labels) == before + 1
    assert value("umiq_tasks_received_total", department="finance") == received + 1


def test_refusals_and_approval_requests_are_told_apart(
    audit: Any, settings: Settings, finance: None
) -> None:
    """A denied policy step is a refusal by policy; a call sent to a human is not."""
    metered = MeteredAuditLog(audit, settings)
    refused = value("umiq_policy_refusals_total", department="finance", policy="access")
    asked = value("umiq_approvals_requested_total", department="finance")
    step(metered, "m-2", 1, "policy", policy="access", allowed=False)
    step(metered, "m-2", 2, "policy", policy="approval", allowed=False, status="requested")
    step(metered, "m-2", 3, "policy", policy="schema", allowed=True)
    assert value("umiq_policy_refusals_total", department="finance", policy="access") == refused + 1
    assert value("umiq_policy_refusals_total", department="finance", policy="approval") == 0
    assert value("umiq_approvals_requested_total", department="finance") == asked + 1


def test_failed_connector_calls_are_errors_by_tool(audit: Any, settings: Settings) -> None:
    """A tool call recorded with ok=False moves the errors of that tool."""
    metered = MeteredAuditLog(audit, settings)
    errors = value("umiq_connector_errors_total", tool="get_invoice")
    ok = value("umiq_connector_calls_total", tool="get_invoice", outcome="ok")
    for n, good in enumerate((True, False), start=1):
        metered.append_tool_call(
            task_id="m-3", step=n, idempotency_key=f"m-3:{n}", tool="get_invoice",
            effect="read", request={}, response=None, ok=good, error=None if good else "404",
        )  # fmt: skip
    assert value("umiq_connector_errors_total", tool="get_invoice") == errors + 1
    assert value("umiq_connector_calls_total", tool="get_invoice", outcome="ok") == ok + 1


def test_a_system_down_is_a_connector_error_not_a_refusal(
    audit: Any, settings: Settings, finance: None
) -> None:
    """An outage step (policy 'connector') moves the tool's connector errors."""
    metered = MeteredAuditLog(audit, settings)
    errors = value("umiq_connector_errors_total", tool="get_invoice")
    step(metered, "m-5", 1, "policy", policy="connector", allowed=False, tool="get_invoice")
    assert value("umiq_connector_errors_total", tool="get_invoice") == errors + 1
    assert value("umiq_policy_refusals_total", department="finance", policy="connector") == 0


def test_a_step_the_database_refuses_counts_nothing(audit: Any, settings: Settings) -> None:
    """Counters move only for rows that were committed."""
    metered = MeteredAuditLog(audit, settings)
    labels = {"department": "unknown", "mode": "unknown", "outcome": "answered"}
    before = value("umiq_tasks_total", **labels)
    with pytest.raises(Exception, match="step kind"):
        metered.append_step(task_id="m-4", index=1, kind="bogus", details={})
    assert value("umiq_tasks_total", **labels) == before


class _Model:
    def generate(self, requests: Any) -> list[Generation]:
        return [Generation("ok", prompt_tokens=10, completion_tokens=3) for _ in requests]

    def describe(self) -> dict[str, Any]:
        return {"base": "fake", "version": "v-test"}


def test_generations_count_tokens_latency_and_batch_size_by_role() -> None:
    """Each request of a batch adds its tokens and one latency sample to its role."""
    model = MeteredRoleModel(_Model())
    prompt = value("umiq_tokens_total", role="caller", kind="prompt")
    done = value("umiq_tokens_total", role="caller", kind="completion")
    samples = value("umiq_step_duration_seconds_count", role="caller")
    batches = value("umiq_generation_batch_size_count")
    model.generate([GenerationRequest("caller", "p"), GenerationRequest("caller", "q")])
    assert value("umiq_tokens_total", role="caller", kind="prompt") == prompt + 20
    assert value("umiq_tokens_total", role="caller", kind="completion") == done + 6
    assert value("umiq_step_duration_seconds_count", role="caller") == samples + 2
    assert value("umiq_generation_batch_size_count") == batches + 1
    assert value("umiq_model_info", version="v-test", base="fake") == 1
    assert model.describe()["version"] == "v-test"


def test_nothing_is_wrapped_while_metrics_are_off(audit: Any, settings: Settings) -> None:
    """Without the endpoint the audit log and the model are the objects themselves."""
    model = _Model()
    assert meter_audit(audit, settings) is audit
    assert meter_model(model) is model


def test_waiting_gauges_read_the_log_and_the_broker(audit: Any, settings: Settings) -> None:
    """The scrape-time gauges list every department, waiting approvals and queue depths."""
    audit.append_task(task_id="w-1", department="finance", query="q", requested_by="t")
    step(audit, "w-1", 1, "policy", policy="approval", allowed=False, status="requested", key="k")
    step(audit, "w-1", 2, "outcome", outcome="awaiting_approval", key="k")
    audit.append_task(task_id="w-2", department="hr", query="q", requested_by="t")
    step(audit, "w-2", 1, "outcome", outcome="held", reason="unbacked")
    registry = CollectorRegistry()
    registry.register(OpsCollector(settings, lambda: audit, interval=0))
    text = generate_latest(registry).decode()
    assert 'umiq_approvals_waiting{department="finance"} 1.0' in text
    assert 'umiq_approvals_waiting{department="hr"} 0.0' in text
    assert 'umiq_held_answers_waiting{department="hr"} 1.0' in text


def test_the_queues_include_the_departments_and_the_dead_letters() -> None:
    """Queue depth is read for the worker's queue, each department's queue and the DLQ."""
    departments = {"finance": DepartmentSettings(queue="umiq.finance"), "hr": DepartmentSettings()}
    settings = Settings(departments=departments)
    assert work_queues(settings) == ["umiq.tasks", "umiq.finance", "umiq.dead"]


def test_the_sample_dashboard_charts_only_metrics_the_worker_exports() -> None:
    """Every metric a panel of docker/grafana/umiq-dashboard.json queries is one of ours."""
    import json
    import re

    from worker import metrics

    repo = Path(__file__).resolve().parents[2]
    dashboard = json.loads((repo / "docker/grafana/umiq-dashboard.json").read_text())
    exported = set(re.findall(r"``(umiq_\w+)``", metrics.__doc__ or ""))
    assert len(exported) >= 14
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"\bumiq_\w+", target["expr"]))
    base = {re.sub(r"_(bucket|sum|count)$", "", name) for name in queried}
    assert base <= exported, base - exported
    assert {"umiq_tasks_total", "umiq_approvals_waiting", "umiq_connector_errors_total"} <= base

"""The Celery task on the embedded default: nothing it cannot run is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from worker import runtime
from worker.audit import AuditLog
from worker.celery_app import create_app, dead_letter_queue
from worker.settings import get_settings

ENVELOPE = {
    "task_id": "t-crash",
    "department": "finance",
    "query": "Is INV-1001 open?",
    "requested_by": "alice",
}


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The task module wired to a fresh embedded broker and audit log under tmp_path."""
    import worker.tasks as tasks

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    runtime.reset()
    app = create_app(get_settings())
    monkeypatch.setattr(tasks, "app", app)
    yield tasks
    runtime.reset()


def _dead_letters(settings: Any) -> list[Any]:
    with Connection(settings.resolved_broker_url) as conn:
        queue = conn.SimpleQueue(dead_letter_queue(settings))
        got = []
        try:
            while True:
                message = queue.get(timeout=1)
                got.append(message)
                message.ack()
        except queue.Empty:
            pass
        queue.close()
    return got


def test_crash_in_the_episode_is_dead_lettered_and_audited(embedded: Any, monkeypatch) -> None:
    """An unexpected exception ends the task refused, kept in the DLQ with the reason."""

    def broken() -> None:
        raise RuntimeError("toolbox exploded")

    monkeypatch.setattr(runtime, "toolbox", broken)
    result = embedded.run_task.apply(args=[ENVELOPE]).get()
    assert result["outcome"] == "rejected"
    assert "unexpected RuntimeError: toolbox exploded" in result["reason"]
    settings = get_settings()
    steps = AuditLog.from_url(settings.resolved_database_url).steps("t-crash")
    assert steps[-1].kind == "rejected"
    letters = _dead_letters(settings)
    assert len(letters) == 1
    assert "toolbox exploded" in letters[0].headers["x-umiq-reason"]


def test_malformed_envelope_is_refused_without_retry(embedded: Any) -> None:
    """A bad envelope is answered with the field and reason and dead-lettered once."""
    result = embedded.run_task.apply(args=[{"task_id": "t-bad", "query": "x"}]).get()
    assert result["outcome"] == "rejected"
    assert result["reason"] == "invalid envelope: department: missing"
    assert len(_dead_letters(get_settings())) == 1


def test_finished_task_is_not_run_again(embedded: Any, monkeypatch) -> None:
    """A redelivered task that already ended returns its recorded outcome."""
    audit = runtime.audit_log()
    audit.append_task(task_id="t-done", department="finance", query="q", requested_by="a")
    audit.append_step(
        task_id="t-done",
        index=1,
        kind="outcome",
        output="paid",
        details={"outcome": "answered", "reason": "the summarizer answered"},
    )

    def never() -> None:
        raise AssertionError("the episode must not run again")

    monkeypatch.setattr(runtime, "toolbox", never)
    result = embedded.run_task.apply(args=[{**ENVELOPE, "task_id": "t-done"}]).get()
    assert result["outcome"] == "answered"
    assert result["answer"] == "paid"


class _Described:
    """A role model that only describes itself: the pin is checked before any generation."""

    def __init__(self, version: str | None) -> None:
        self.version = version

    def describe(self) -> dict[str, Any]:
        return {
            "base": "smollm2-135m-instruct@b8011a129b49",
            "adapters": {"planner": "planner@6ffc1a22d846", "caller": None, "summarizer": None},
            "version": self.version,
        }


def _pin_finance(monkeypatch: pytest.MonkeyPatch, pin: str) -> None:
    import json

    monkeypatch.setenv("UMIQ_MAX_REDELIVERIES", "0")
    monkeypatch.setenv(
        "UMIQ_DEPARTMENTS",
        json.dumps({"finance": {"tools": ["erp:*"], "adapter_version": pin}}),
    )
    runtime.reset()


def test_a_pinned_department_never_runs_on_another_model_version(
    embedded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A department pinned to model version X sent to a worker serving Y: refused with both
    versions named, audited, kept in the dead-letter queue; nothing was generated."""
    _pin_finance(monkeypatch, "0123456789ab")
    monkeypatch.setattr(runtime, "role_model", lambda: _Described("ba9876543210"))
    result = embedded.run_task.apply(args=[{**ENVELOPE, "task_id": "t-pinned"}]).get()
    assert result["outcome"] == "rejected"
    reason = result["reason"]
    assert "pinned to model version 0123456789ab" in reason
    assert "this worker serves ba9876543210" in reason and "planner@6ffc1a22d846" in reason
    settings = get_settings()
    steps = AuditLog.from_url(settings.resolved_database_url).steps("t-pinned")
    assert [s.kind for s in steps] == ["rejected"]
    letters = _dead_letters(settings)
    assert len(letters) == 1 and "0123456789ab" in letters[0].headers["x-umiq-reason"]


def test_a_model_without_a_version_does_not_satisfy_a_pin() -> None:
    """A plug-in role model that reports no version cannot serve a pinned department; the
    served version passes."""
    from worker.errors import ConfigError
    from worker.tasks import _check_pin

    with pytest.raises(ConfigError, match="reports no version"):
        _check_pin("finance", "0123456789ab", _Described(None).describe())
    _check_pin("finance", "0123456789ab", _Described("0123456789ab").describe())

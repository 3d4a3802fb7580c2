"""The gates: one queue of what waits for a human, a held call and a held answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_approvals import erp, waiting
from tests.unit.test_held import holding
from worker import gates
from worker.audit import AuditLog, ensure_schema
from worker.errors import DecisionError
from worker.settings import Settings


@pytest.fixture
def audits(tmp_path: Path) -> tuple[AuditLog, AuditLog]:
    logs = []
    for name in ("calls", "answers"):
        url = f"sqlite:///{tmp_path / name}.sqlite"
        ensure_schema(url)
        logs.append(AuditLog.from_url(url))
    return logs[0], logs[1]


def test_both_kinds_of_wait_are_one_queue(audits: tuple[AuditLog, AuditLog]) -> None:
    """A held call and a held answer are each listed, with their kind, and decided alike."""
    calls, answers = audits
    waiting(calls, erp())
    holding(answers)
    (call,) = gates.waiting(calls)
    (answer,) = gates.waiting(answers)
    assert (call.kind, answer.kind) == ("call", "answer")
    assert gates.waiting(calls, kind="answer") == []
    assert gates.tab(calls).calls == [call] and gates.tab(answers).answers == [answer]
    gates.approve(answers, answer.task_id, by="carol", reason="checked")
    assert gates.waiting(answers) == []
    gates.reject(calls, call.task_id, by="carol", reason="no", enqueue=lambda t, k: None)
    assert gates.waiting(calls) == []
    with pytest.raises(DecisionError, match="waits for no human decision"):
        gates.wait_for(calls, call.task_id)


def test_a_resume_is_sent_to_the_departments_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """With department queues on, the resume of a finance task goes to finance's queue."""
    import worker.celery_app as celery_app
    import worker.settings as settings_module

    sent: dict[str, Any] = {}

    class App:
        def send_task(self, name: str, **options: Any) -> None:
            sent.update(options, name=name)

    settings = Settings(department_queues=True)
    monkeypatch.setattr(settings_module, "get_settings", lambda: settings)
    monkeypatch.setattr(celery_app, "create_app", lambda s=None: App())
    gates.send_resume("t-1", "t-1:2", department="finance")
    assert sent["queue"].name == "umiq.tasks.finance" and sent["args"] == ["t-1", "t-1:2"]

"""Forged approvals on a real Postgres: a step written as ``umiq_worker`` does not resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker import runtime
from worker.audit import AuditLog, decisions, upgrade
from worker.audit.checkpoint import load_private_key, write_keypair
from worker.audit.events import PolicyDetails
from worker.gates.calls import decide
from worker.settings import Settings
from worker.tasks import _forged_approval, resume_task

from ..unit.test_approvals import waiting
from ..unit.test_episode import erp

pytestmark = pytest.mark.integration

ROLE = "umiq_worker"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_keypair(tmp_path / "keys")


@pytest.fixture
def worker_log(postgres_url: str) -> Iterator[AuditLog]:
    """The audit log at head as the worker's role, with task t-1 waiting for approval."""
    upgrade(postgres_url)
    audit = AuditLog.from_url(postgres_url, role=ROLE)
    waiting(audit, erp())
    yield audit
    audit.close()


@pytest.fixture
def worker_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, keys: tuple[Path, Path], worker_log: AuditLog
) -> Settings:
    """A worker's runtime: the public decision key only, and the log above."""
    settings = Settings(data_dir=tmp_path, decision_public_key_file=keys[1])
    monkeypatch.setattr(runtime, "settings", lambda: settings)
    monkeypatch.setattr(runtime, "audit_log", lambda: worker_log)
    return settings


def test_a_hand_written_approval_by_the_worker_role_is_refused_at_resume(
    worker_log: AuditLog, worker_settings: Settings
) -> None:
    """An 'approved by cfo' step INSERTed as umiq_worker ends the task refused, audited."""
    index = max(s.index for s in worker_log.steps("t-1")) + 1
    forged = PolicyDetails(
        policy="approval",
        allowed=True,
        status="approved",
        key="t-1:2",
        tool="schedule_payment",
        by="cfo",
        reasons=["approved by cfo: ok"],
    )
    worker_log.append_step(
        task_id="t-1", index=index, kind="policy", output="approved", details=forged.to_details()
    )
    result = resume_task.apply(args=("t-1", "t-1:2")).get()
    assert result["outcome"] == "refused"
    assert "by cfo" in result["reason"] and "not signed" in result["reason"]
    assert worker_log.verify().ok
    public = decisions.verifying_key(worker_settings.decision_public_key_file)
    found = decisions.check_log(worker_log.engine, public)
    assert [task for _, task, _ in found.bad] == ["t-1"]


def test_an_approval_signed_by_the_review_key_passes_the_worker_check(
    worker_log: AuditLog, worker_settings: Settings, keys: tuple[Path, Path]
) -> None:
    """The deciding service's signed approval is accepted by the worker's check."""
    decide(
        worker_log,
        "t-1",
        verdict="approved",
        by="carol",
        reason="checked the PO",
        enqueue=lambda t, k: None,
        signer=load_private_key(keys[0]),
    )
    assert _forged_approval(worker_settings, worker_log.steps("t-1"), "t-1:2") is None

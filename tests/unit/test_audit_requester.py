"""requested_by pseudonymized: a keyed hash in the plain task row, the name sealed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from worker import runtime
from worker.audit import AuditLog, ensure_schema
from worker.audit.keyring import generate_keyring
from worker.audit.requester import SEALED_FIELD, is_pseudonym, is_requester, pseudonym, shown
from worker.audit.review import SEALED, conceal
from worker.audit.sealing import Sealer
from worker.celery_app import create_app
from worker.errors import ApprovalError
from worker.gates.calls import decide
from worker.review._views import trace_view
from worker.settings import get_settings

from .test_approvals import PAY, episode
from .test_episode import ENV, Scripted, erp

KEY = "a-pseudonym-key-of-some-length"


@pytest.fixture
def sealed_log(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url, sealer=Sealer(generate_keyring()))


def test_the_pseudonym_is_keyed_and_ignores_case_and_spaces() -> None:
    """The same name gives the same pseudonym whatever its case; another key another."""
    assert pseudonym("Alice ", KEY) == pseudonym("alice", KEY)
    assert pseudonym("alice", KEY) != pseudonym("alice", KEY + "x")
    assert is_pseudonym(pseudonym("alice", KEY)) and "alice" not in pseudonym("alice", KEY)


def test_is_requester_compares_pseudonyms_and_raw_names() -> None:
    """A pseudonym is compared with the key; without one it cannot be told (None)."""
    stored = pseudonym("alice", KEY)
    assert is_requester(stored, "ALICE", KEY) is True
    assert is_requester(stored, "bob", KEY) is False
    assert is_requester(stored, "alice", None) is None
    assert is_requester("alice", " Alice", None) is True  # rows written before


def test_the_task_row_holds_the_pseudonym_and_the_name_sealed(sealed_log: AuditLog) -> None:
    """append_task seals the context entry; only the key ring opens the name."""
    sealed_log.append_task(
        task_id="t-9",
        department="finance",
        query="q",
        requested_by=pseudonym("alice", KEY),
        sealed_context={SEALED_FIELD: "alice"},
    )
    task = sealed_log.task("t-9")
    assert task is not None and "alice" not in repr(task.requested_by)
    assert conceal(task.context) == {SEALED_FIELD: SEALED}
    assert sealed_log.unseal(task.context) == {SEALED_FIELD: "alice"}
    assert sealed_log.verify().ok


def test_an_auditor_sees_the_name_and_others_the_pseudonym() -> None:
    """The review page's trace head shows the opened name beside the pseudonym."""
    alias = pseudonym("alice", KEY)

    def head(context: dict[str, Any]) -> dict[str, Any]:
        task = {
            "department": "finance",
            "requested_by": alias,
            "received_at": "2024-01-01T00:00:00Z",
            "seq": 1,
            "query": "q",
            "context": context,
        }
        data = {"task_id": "t-1", "task": task, "entries": [], "outcome": None}
        return trace_view(data)["task"]

    opened, concealed = head({SEALED_FIELD: "alice"}), head({SEALED_FIELD: SEALED})
    assert opened["requested_by"] == f"alice ({alias})"
    assert concealed["requested_by"] == alias
    assert shown("alice", None) == "alice"


def _pseudonymous_waiting(audit: AuditLog) -> None:
    """Task t-1 of alice, as the worker records it with a pseudonym key, waiting."""
    audit.append_task(
        task_id=ENV.task_id,
        department=ENV.department,
        query=ENV.query,
        requested_by=pseudonym("alice", KEY),
    )
    model = Scripted(planner=["Pay it.\n Next: caller."], caller=[PAY])
    assert episode(model, erp(), audit).run().outcome == "awaiting_approval"


def test_four_eyes_refuses_the_pseudonymized_requester(tmp_path: Path) -> None:
    """The requester is recognised through the keyed hash and cannot approve."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    audit = AuditLog.from_url(url)
    _pseudonymous_waiting(audit)
    common: dict[str, Any] = {"verdict": "approved", "reason": "ok", "enqueue": lambda t, k: None}
    with pytest.raises(ApprovalError, match="cannot approve its own call"):
        decide(audit, "t-1", by="Alice", pseudonym_key=KEY, **common)
    with pytest.raises(ApprovalError, match="UMIQ_PSEUDONYM_KEY"):
        decide(audit, "t-1", by="carol", **common)
    assert decide(audit, "t-1", by="carol", pseudonym_key=KEY, **common).verdict == "approved"


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import worker.tasks as tasks

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UMIQ_PSEUDONYM_KEY", KEY)
    runtime.reset()
    monkeypatch.setattr(tasks, "app", create_app(get_settings()))
    yield tasks
    runtime.reset()


def test_the_worker_stores_the_pseudonym_and_seals_the_name(embedded: Any, monkeypatch) -> None:
    """With UMIQ_PSEUDONYM_KEY, run_task's task row names no requester in plain text."""
    result = SimpleNamespace(outcome="gave_up", steps=[], as_dict=lambda: {"outcome": "gave_up"})
    episode = SimpleNamespace(start=lambda recorded: result)
    monkeypatch.setattr(embedded, "_episode", lambda *a, **k: episode)
    envelope = {"task_id": "t-p", "department": "finance", "query": "q", "requested_by": "alice"}
    embedded.run_task.apply(args=(envelope,)).get()
    audit = runtime.audit_log()
    task = audit.task("t-p")
    assert task.requested_by == pseudonym("alice", KEY)
    assert "alice" not in str(task.context)
    assert audit.unseal(task.context)[SEALED_FIELD] == "alice"

"""With nothing configured, decisions are signed and the requester pseudonymized.

The decision key pair (``<data_dir>/decision.key`` and ``decision.pub``) and the
pseudonym secret (``<data_dir>/pseudonym.key``) are made on first use, as the key ring
is: a fresh install refuses a forged approval and stores no raw requester.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs
from typer.testing import CliRunner

from worker import runtime
from worker.audit import AuditLog, decisions
from worker.audit.checkpoint import key_id, load_public_key, write_keypair
from worker.audit.events import PolicyDetails
from worker.audit.requester import KEY_FILE, SEALED_FIELD, pseudonym, pseudonym_key
from worker.celery_app import create_app
from worker.errors import ConfigError
from worker.gates import calls
from worker.gates.cli import register
from worker.settings import Settings, get_settings
from worker.tasks import _forged_approval, resume_task

from .test_approvals import PAY, audit, episode, waiting  # noqa: F401  (the fixture)
from .test_episode import ENV, Scripted, erp

FORGED = PolicyDetails(
    policy="approval",
    allowed=True,
    status="approved",
    key="t-1:2",
    tool="schedule_payment",
    by="cfo",
    reasons=["approved by cfo: ok"],
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _said(result: Any) -> str:
    return " ".join(result.output.split())  # the console wraps long lines


# -- the decision key pair -----------------------------------------------------------


def test_the_deciding_side_makes_the_default_pair_0600_once(tmp_path: Path) -> None:
    """signer() with nothing set makes decision.key (0600) and decision.pub, warns once."""
    settings = Settings(data_dir=tmp_path / "data")
    with capture_logs() as logs:
        key = decisions.signer(settings)
    private, public = decisions.default_paths(settings.data_dir)
    assert (_mode(private), _mode(public)) == (0o600, 0o644)
    assert [e["event"] for e in logs] == ["decision_keys.created"]
    assert "review service only" in logs[0]["message"]
    assert "UMIQ_DECISION_PUBLIC_KEY_FILE" in logs[0]["message"]
    assert key_id(decisions.verifier(settings)) == key_id(key.public_key())
    with capture_logs() as again:
        assert key_id(decisions.signer(settings).public_key()) == key_id(key.public_key())
    assert again == []


def test_the_worker_side_makes_the_pair_when_there_is_none(tmp_path: Path) -> None:
    """verifier() on a fresh data dir makes the pair: the CLI then signs with its half."""
    settings = Settings(data_dir=tmp_path)
    public = decisions.verifier(settings)
    private_path, public_path = decisions.default_paths(tmp_path)
    assert _mode(private_path) == 0o600 and public_path.is_file()
    assert key_id(decisions.signer(settings).public_key()) == key_id(public)


def test_explicit_key_files_are_used_and_nothing_is_made(tmp_path: Path) -> None:
    """Set files work as before; the private key alone also gives the worker its half."""
    private, public = write_keypair(tmp_path / "keys")
    both = Settings(data_dir=tmp_path, decision_key_file=private, decision_public_key_file=public)
    assert key_id(decisions.verifier(both)) == key_id(decisions.signer(both).public_key())
    only_private = Settings(data_dir=tmp_path, decision_key_file=private)
    assert key_id(decisions.verifier(only_private)) == key_id(load_public_key(public))
    assert not any((tmp_path / name).exists() for name in ("decision.key", "decision.pub"))


def test_the_deciding_side_refuses_a_data_dir_holding_only_the_public_key(
    tmp_path: Path,
) -> None:
    """The private key moved away (production advice): the CLI does not make a new pair."""
    settings = Settings(data_dir=tmp_path)
    public = decisions.verifier(settings)
    (tmp_path / decisions.PRIVATE_FILE).unlink()
    with pytest.raises(ConfigError, match="UMIQ_DECISION_KEY_FILE"):
        decisions.signer(settings)
    assert key_id(decisions.verifier(settings)) == key_id(public)  # the worker goes on


# -- resume and verify with nothing set ----------------------------------------------


@pytest.fixture
def worker(audit: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:  # noqa: F811
    """A runtime with no decision or pseudonym setting, and task t-1 waiting for approval."""
    settings = Settings(data_dir=tmp_path / "data")
    monkeypatch.setattr(runtime, "settings", lambda: settings)
    monkeypatch.setattr(runtime, "audit_log", lambda: audit)
    waiting(audit, erp())
    return settings


def _forge(audit: AuditLog, details: PolicyDetails) -> None:  # noqa: F811
    index = max(s.index for s in audit.steps("t-1")) + 1
    audit.append_step(
        task_id="t-1", index=index, kind="policy", output="approved", details=details.to_details()
    )


def _wait_seq(audit: AuditLog) -> int:  # noqa: F811
    steps = audit.steps("t-1")
    return next(s.seq for s in steps if s.details.get("outcome") == "awaiting_approval")


@pytest.mark.parametrize("by_key", ["none", "another"])
def test_with_nothing_set_a_forged_approval_is_refused_at_resume(
    audit: AuditLog,  # noqa: F811
    worker: Settings,
    by_key: str,
) -> None:
    """An unsigned approval, or one signed by a key that is not the data dir's, ends the
    task refused at resume; the held call is never made."""
    details = FORGED
    if by_key == "another":
        other = Ed25519PrivateKey.generate()
        details = decisions.sign(other, "t-1", replace(FORGED, on_seq=_wait_seq(audit)))
    _forge(audit, details)
    result = resume_task.apply(args=("t-1", "t-1:2")).get()
    assert result["outcome"] == "refused"
    assert ("not signed" if by_key == "none" else "another key") in result["reason"]
    assert (worker.data_dir / decisions.PUBLIC_FILE).is_file()  # made by the worker
    assert audit.verify().ok


def test_audit_verify_refuses_an_unsigned_decision_with_nothing_set(
    audit: AuditLog,  # noqa: F811
    worker: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`umiq audit verify` checks decisions against the data dir's key by default."""
    from worker.audit import cli as audit_cli

    monkeypatch.setattr(audit_cli, "_settings", lambda: worker)
    assert audit_cli._verify_decisions(audit) is False  # nothing decided yet
    _forge(audit, FORGED)
    assert audit_cli._verify_decisions(audit) is True


def test_a_cli_approval_with_default_keys_passes_resume_and_verify(
    audit: AuditLog,  # noqa: F811
    worker: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`umiq approvals approve` signs with the default key; the worker and verify accept."""
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(calls, "send_resume", lambda t, k: sent.append((t, k)))
    app = typer.Typer()
    register(app)
    done = CliRunner().invoke(
        app, ["approvals", "approve", "t-1", "--by", "carol", "--reason", "checked the PO"]
    )
    assert done.exit_code == 0, done.output
    assert sent == [("t-1", "t-1:2")]
    assert _forged_approval(worker, audit.steps("t-1"), "t-1:2") is None
    found = decisions.check_log(audit.engine, decisions.verifier(worker))
    assert (found.checked, found.unsigned, found.bad) == (1, 0, [])


# -- the pseudonym key ---------------------------------------------------------------


def test_the_pseudonym_key_is_made_on_first_use_0600(tmp_path: Path) -> None:
    """Unset, the secret is a random urlsafe string of 32+ characters in pseudonym.key."""
    settings = Settings(data_dir=tmp_path)
    with capture_logs() as logs:
        key = pseudonym_key(settings)
    assert _mode(tmp_path / KEY_FILE) == 0o600
    assert len(key) >= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", key)
    assert [e["event"] for e in logs] == ["pseudonym_key.created"]
    assert pseudonym_key(settings) == key
    assert pseudonym_key(Settings(data_dir=tmp_path / "other")) != key
    assert pseudonym_key(settings.model_copy(update={"pseudonym_key": "k" * 20})) == "k" * 20


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import worker.tasks as tasks

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("UMIQ_PSEUDONYM_KEY", raising=False)
    runtime.reset()
    monkeypatch.setattr(tasks, "app", create_app(get_settings()))
    yield tasks
    runtime.reset()


def test_by_default_the_task_row_holds_no_raw_requester(
    embedded: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without UMIQ_PSEUDONYM_KEY the worker's row holds the keyed hash, the name sealed."""
    result = SimpleNamespace(outcome="gave_up", steps=[], as_dict=lambda: {"outcome": "gave_up"})
    stub = SimpleNamespace(start=lambda recorded: result)
    monkeypatch.setattr(embedded, "_episode", lambda *a, **k: stub)
    envelope = {"task_id": "t-p", "department": "finance", "query": "q", "requested_by": "alice"}
    embedded.run_task.apply(args=(envelope,)).get()
    log = runtime.audit_log()
    task = log.task("t-p")
    key = (tmp_path / KEY_FILE).read_text(encoding="utf-8").strip()
    assert task.requested_by == pseudonym("alice", key)
    assert "alice" not in str(task.context)
    assert log.unseal(task.context)[SEALED_FIELD] == "alice"


def test_four_eyes_on_the_cli_uses_the_default_pseudonym_key(
    audit: AuditLog,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task recorded with the data dir's pseudonym: its requester may not approve it on
    the CLI, another person may."""
    settings = Settings(data_dir=tmp_path / "data")
    audit.append_task(
        task_id=ENV.task_id,
        department=ENV.department,
        query=ENV.query,
        requested_by=pseudonym("alice", pseudonym_key(settings)),
    )
    model = Scripted(planner=["Pay it.\n Next: caller."], caller=[PAY])
    assert episode(model, erp(), audit).run().outcome == "awaiting_approval"
    monkeypatch.setattr(runtime, "settings", lambda: settings)
    monkeypatch.setattr(runtime, "audit_log", lambda: audit)
    monkeypatch.setattr(calls, "send_resume", lambda t, k: None)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    approve = ["approvals", "approve", "t-1", "--reason", "ok", "--by"]
    refused = runner.invoke(app, [*approve, "Alice"])
    assert refused.exit_code == 1 and "cannot approve its own call" in _said(refused)
    done = runner.invoke(app, [*approve, "carol"])
    assert done.exit_code == 0, done.output

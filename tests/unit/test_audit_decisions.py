"""Signed human decisions: the deciding service signs, the worker and verify check."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from worker.audit import AuditLog, decisions
from worker.audit.checkpoint import key_id, write_keypair
from worker.audit.events import PolicyDetails
from worker.gates.answers import decide_answer
from worker.gates.calls import decide, forged_approval
from worker.health import check_decisions
from worker.settings import Settings

from .test_approvals import audit, waiting  # noqa: F401  (the fixture)
from .test_episode import erp

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
DECISION = PolicyDetails(
    policy="approval", allowed=True, status="approved", key="t-1:2", by="cfo", on_seq=4
)


def test_a_signed_decision_verifies_with_its_public_key() -> None:
    """A decision signed with the private key verifies against its public key."""
    signed = decisions.sign(KEY, "t-1", DECISION)
    assert signed.key_id == key_id(KEY.public_key())
    assert decisions.problem("t-1", signed, KEY.public_key()) is None


def test_a_changed_approver_breaks_the_signature() -> None:
    """Changing who approved after signing is caught."""
    signed = replace(decisions.sign(KEY, "t-1", DECISION), by="mallory")
    assert "altered or forged" in str(decisions.problem("t-1", signed, KEY.public_key()))


def test_a_decision_moved_to_another_task_does_not_verify() -> None:
    """The task id is part of the signed body."""
    signed = decisions.sign(KEY, "t-1", DECISION)
    assert decisions.problem("t-2", signed, KEY.public_key()) is not None


def test_another_key_is_named() -> None:
    """A decision signed with another key names both key ids."""
    signed = decisions.sign(OTHER, "t-1", DECISION)
    why = str(decisions.problem("t-1", signed, KEY.public_key()))
    assert key_id(OTHER.public_key()) in why and key_id(KEY.public_key()) in why


def test_an_unsigned_decision_is_named_unsigned() -> None:
    """A decision without a signature says so."""
    assert "not signed" in str(decisions.problem("t-1", DECISION, KEY.public_key()))


def test_health_says_default_decision_keys_are_made_on_first_use(tmp_path: Path) -> None:
    """With no decision key configured and none made yet, the check passes, says the data
    dir's pair is made on first use, and creates nothing itself."""
    check = check_decisions(Settings(data_dir=tmp_path))
    assert check.ok and "created on first use" in check.detail and check.facts == {"signed": True}
    assert not (tmp_path / decisions.PRIVATE_FILE).exists()


def test_health_warns_when_the_data_dir_holds_the_private_key(tmp_path: Path) -> None:
    """The default pair, once made, is checked and the private key beside the worker named."""
    settings = Settings(data_dir=tmp_path)
    made = decisions.signer(settings)
    check = check_decisions(settings)
    assert check.ok and check.facts == {"signed": True, "private_key_in_data_dir": True}
    assert "WARNING" in check.detail and "not for production" in check.detail
    assert f"resumes only approvals signed by key {key_id(made.public_key())}" in check.detail


def test_health_fails_on_a_default_pair_that_is_not_a_pair(tmp_path: Path) -> None:
    """A data dir whose decision.pub is not the half of its decision.key fails the check."""
    decisions.signer(Settings(data_dir=tmp_path))
    _, public = write_keypair(tmp_path / "b")
    (tmp_path / decisions.PUBLIC_FILE).write_bytes(public.read_bytes())
    check = check_decisions(Settings(data_dir=tmp_path))
    assert check.status == "fail" and "not the pair" in check.detail


def test_health_fails_on_keys_that_are_not_a_pair(tmp_path: Path) -> None:
    """A private and a public decision key of two different pairs fail the check."""
    private, _ = write_keypair(tmp_path / "a")
    _, public = write_keypair(tmp_path / "b")
    settings = Settings(
        data_dir=tmp_path, decision_key_file=private, decision_public_key_file=public
    )
    assert check_decisions(settings).status == "fail"


@pytest.mark.parametrize("signed", [True, False])
def test_health_names_the_public_key(tmp_path: Path, signed: bool) -> None:
    """With the public key configured the check names its key id."""
    private, public = write_keypair(tmp_path / "k")
    settings = Settings(data_dir=tmp_path, decision_public_key_file=public)
    if signed:
        settings = settings.model_copy(update={"decision_key_file": private})
    check = check_decisions(settings)
    assert check.ok and check.facts == {"signed": True} and "resumes only" in check.detail


def _step(seq: int, details: PolicyDetails) -> SimpleNamespace:
    return SimpleNamespace(seq=seq, task_id="t-1", kind="policy", details=details.to_details())


def test_check_steps_names_forged_decisions_and_counts_unsigned() -> None:
    """Among policy steps, a signed decision passes, an unsigned one is named with its seq."""
    signed = _step(9, decisions.sign(KEY, "t-1", DECISION))
    forged = _step(10, replace(DECISION, on_seq=None))
    request = _step(3, PolicyDetails(policy="approval", status="requested", key="t-1:2"))
    found = decisions.check_steps([request, signed, forged], KEY.public_key())
    assert (found.checked, found.unsigned) == (2, 1)
    assert [(seq, "not signed" in why) for seq, _, why in found.bad] == [(10, True)]
    assert decisions.check_steps([signed, forged], None).bad == []


def _approve(audit: AuditLog, signer: Ed25519PrivateKey | None = KEY) -> None:  # noqa: F811
    decide(
        audit,
        "t-1",
        verdict="approved",
        by="carol",
        reason="checked the PO",
        enqueue=lambda t, k: None,
        signer=signer,
    )


def _forge(audit: AuditLog, details: PolicyDetails) -> None:  # noqa: F811
    index = max(s.index for s in audit.steps("t-1")) + 1
    audit.append_step(
        task_id="t-1", index=index, kind="policy", output="approved", details=details.to_details()
    )


def test_decide_with_a_signer_stores_a_signature_the_worker_accepts(audit: AuditLog) -> None:  # noqa: F811
    """The CLI/review path signs; the resume check finds nothing wrong."""
    waiting(audit, erp())
    _approve(audit)
    step = next(s for s in audit.steps("t-1") if s.details.get("status") == "approved")
    assert step.details["key_id"] == key_id(KEY.public_key())
    assert step.details["on_seq"] < step.seq
    assert forged_approval(audit.steps("t-1"), "t-1:2", KEY.public_key()) is None
    assert audit.verify().ok


def test_a_hand_written_approval_is_refused_at_resume(audit: AuditLog) -> None:  # noqa: F811
    """An 'approved by cfo' step inserted without the decision key does not count."""
    waiting(audit, erp())
    _forge(audit, replace(DECISION, on_seq=None))
    why = forged_approval(audit.steps("t-1"), "t-1:2", KEY.public_key())
    assert why is not None and "by cfo" in why and "not signed" in why


def test_an_approval_signed_by_another_key_is_refused(audit: AuditLog) -> None:  # noqa: F811
    """A decision signed by a key that is not the decision key does not count."""
    waiting(audit, erp())
    _approve(audit, signer=OTHER)
    assert "another key" in str(forged_approval(audit.steps("t-1"), "t-1:2", KEY.public_key()))


def test_a_signed_approval_copied_to_another_wait_is_refused(audit: AuditLog) -> None:  # noqa: F811
    """A signature over an earlier wait of the same call does not approve this one."""
    waiting(audit, erp())
    waits = next(s for s in audit.steps("t-1") if s.details.get("outcome") == "awaiting_approval")
    signed = decisions.sign(KEY, "t-1", replace(DECISION, on_seq=waits.seq - 1))
    _forge(audit, signed)
    assert "copied" in str(forged_approval(audit.steps("t-1"), "t-1:2", KEY.public_key()))


def test_without_a_public_key_every_approval_counts(audit: AuditLog) -> None:  # noqa: F811
    """No decision key configured: behaviour stays as before (unsigned approvals resume)."""
    waiting(audit, erp())
    _forge(audit, DECISION)
    assert forged_approval(audit.steps("t-1"), "t-1:2", None) is None


def test_check_steps_reports_forged_and_counts_unsigned(audit: AuditLog) -> None:  # noqa: F811
    """check_log finds a forged decision among the log's steps and counts unsigned ones."""
    waiting(audit, erp())
    _forge(audit, DECISION)
    found = decisions.check_log(audit.engine, KEY.public_key())
    assert (found.checked, found.unsigned) == (1, 1)
    assert [(task, "not signed" in why) for _, task, why in found.bad] == [("t-1", True)]
    assert decisions.check_log(audit.engine, None).bad == []


def test_a_signed_held_answer_release_verifies(audit: AuditLog) -> None:  # noqa: F811
    """Releasing a held answer with a signer stores a signature verify accepts."""
    audit.append_task(task_id="h-1", department="finance", query="q", requested_by="ana")
    audit.append_step(
        task_id="h-1", index=1, kind="outcome", output="paid", details={"outcome": "held"}
    )
    decide_answer(audit, "h-1", verdict="released", by="carol", reason="ok", signer=KEY)
    found = decisions.check_log(audit.engine, KEY.public_key())
    assert (found.checked, found.unsigned, found.bad) == (1, 0, [])

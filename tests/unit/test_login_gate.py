"""The login gate (``worker.login_gate``): which logins a worker starts on, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery.worker.worker import WorkController
from structlog.testing import capture_logs

from worker import login_gate
from worker.audit.login import LoginRights
from worker.celery_app import create_app
from worker.errors import ConfigError
from worker.login_gate import EX_CONFIG, OVERRIDE, Decision, LoginGate, check, decide, enforce
from worker.settings import Settings

SUPERUSER = LoginRights("postgres", True, True, ("UPDATE", "DELETE", "TRUNCATE"), ("postgres",))
OWN_LOGIN = LoginRights("umiq_app", False, True, ())


def test_a_least_privilege_login_starts() -> None:
    """A member of umiq_worker with no other rights starts, logged at info."""
    decision = decide(OWN_LOGIN, allowed=False)
    assert (decision.start, decision.level, decision.event) == (
        True,
        "info",
        "worker.login_checked",
    )
    assert "least privilege" in decision.message


def test_a_superuser_login_is_refused_naming_the_login_the_fault_and_the_fix() -> None:
    """Without the override a superuser login is refused with the login, why and the fix."""
    decision = decide(SUPERUSER, allowed=False, set_role="umiq_worker")
    assert (decision.start, decision.level, decision.event) == (
        False,
        "error",
        "worker.login_refused",
    )
    assert decision.message.startswith("refusing to start: the worker logs in as postgres")
    assert "a superuser" in decision.message and "RESET ROLE" in decision.message
    assert "`umiq db login-role NAME` as an admin" in decision.message
    assert f"{OVERRIDE}=1" in decision.message
    assert decision.facts == {"login": "postgres", "superuser": True, "via": ["postgres"]}


@pytest.mark.parametrize(
    "rights",
    [
        LoginRights("app", True, True, ("UPDATE",), ("postgres",)),  # can become postgres
        LoginRights("app", False, True, ("UPDATE", "DELETE")),  # may change steps
        LoginRights("app", False, False, ()),  # no member of umiq_worker
    ],
    ids=["can-become-superuser", "may-change-steps", "not-a-worker"],
)
def test_every_login_the_health_check_fails_is_refused(rights: LoginRights) -> None:
    """The gate refuses exactly what `umiq health`'s login check fails."""
    assert not rights.verdict()[0]
    assert not decide(rights, allowed=False).start


def test_the_override_starts_a_superuser_login_with_a_warning() -> None:
    """UMIQ_ALLOW_PRIVILEGED_LOGIN=1 starts it, the warning saying what is wrong and why."""
    decision = decide(SUPERUSER, allowed=True)
    assert (decision.start, decision.level, decision.event) == (
        True,
        "warning",
        "worker.login_privileged",
    )
    assert "postgres, a superuser" in decision.message
    assert f"Starting anyway: {OVERRIDE}=1" in decision.message


def test_rights_that_cannot_be_read_are_refused_unless_overridden() -> None:
    """A login whose rights cannot be read fails closed; the override starts it, warning."""
    refused = decide(None, allowed=False, unreadable="OperationalError: refused")
    assert not refused.start and "OperationalError: refused" in refused.message
    assert "umiq db upgrade" in refused.message
    assert decide(None, allowed=True, unreadable="OperationalError: refused").level == "warning"


def test_sqlite_has_no_gate(tmp_path: Path) -> None:
    """The embedded SQLite database has no logins: nothing is checked."""
    assert check(Settings(data_dir=tmp_path)) is None


def test_an_unreachable_database_is_refused_without_its_password(tmp_path: Path) -> None:
    """Postgres that does not answer: refused, the driver's reason named, no password."""
    url = "postgresql+psycopg://app:s3cret-pw@127.0.0.1:1/umiq"
    settings = Settings(data_dir=tmp_path, database_url=url, allow_privileged_login=False)
    decision = check(settings, timeout=2)
    assert decision is not None and not decision.start
    assert "cannot read the rights" in decision.message
    assert "s3cret-pw" not in decision.message


def test_the_override_is_a_setting_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """UMIQ_ALLOW_PRIVILEGED_LOGIN=1 turns Settings.allow_privileged_login on; unset, off."""
    monkeypatch.delenv(OVERRIDE, raising=False)
    assert Settings().allow_privileged_login is False
    monkeypatch.setenv(OVERRIDE, "1")
    assert Settings().allow_privileged_login is True


def test_enforce_logs_a_refusal_and_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A refusal is logged as worker.login_refused with the login, then raised."""
    monkeypatch.setattr(login_gate, "check", lambda settings: decide(SUPERUSER, allowed=False))
    with capture_logs() as logs, pytest.raises(ConfigError, match="refusing to start"):
        enforce(Settings(data_dir=tmp_path))
    [entry] = logs
    assert (entry["event"], entry["log_level"], entry["login"]) == (
        "worker.login_refused",
        "error",
        "postgres",
    )


def test_the_step_exits_with_ex_config_on_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker step turns a refusal into SystemExit(78), which stops Celery's worker."""
    refusal = Decision(False, "error", "worker.login_refused", "refusing to start: no")
    monkeypatch.setattr(login_gate, "check", lambda settings: refusal)
    step = LoginGate.__new__(LoginGate)
    with capture_logs(), pytest.raises(SystemExit) as stopped:
        step.start(None)
    assert stopped.value.code == EX_CONFIG == 78


def test_the_gate_starts_before_the_consumer(tmp_path: Path) -> None:
    """In the worker blueprint the gate comes before the consumer takes any task."""
    app = create_app(Settings(data_dir=tmp_path))
    blueprint = WorkController.Blueprint(steps=app.steps["worker"])
    blueprint.steps = blueprint.claim_steps()  # as Blueprint.apply orders them
    order = [step.name for step in blueprint._finalize_steps(blueprint.steps)]
    assert order.index("worker.login_gate.LoginGate") < order.index(
        "celery.worker.components.Consumer"
    )

"""How a worker's database login is judged (``LoginRights.verdict``), without a server."""

from __future__ import annotations

from worker.audit.login import LoginRights


def test_a_least_privilege_login_is_fine() -> None:
    """A member of umiq_worker with nothing else passes, saying so."""
    fine, detail = LoginRights("umiq_app", False, True, ()).verdict()
    assert fine and "least privilege" in detail


def test_a_superuser_with_set_role_is_named_with_the_fix() -> None:
    """A superuser behind UMIQ_DATABASE_ROLE fails: RESET ROLE undoes it; the fix is named."""
    rights = LoginRights("postgres", True, True, ("UPDATE", "DELETE", "TRUNCATE"), ("postgres",))
    fine, detail = rights.verdict("umiq_worker")
    assert not fine
    assert "postgres, a superuser:" in detail and "RESET ROLE" in detail
    assert "umiq db login-role NAME" in detail


def test_a_login_that_can_become_a_superuser_fails() -> None:
    """Membership of a superuser role counts, though the login itself is none."""
    rights = LoginRights("app", True, True, ("UPDATE",), ("postgres",))
    fine, detail = rights.verdict()
    assert not fine and "able to become postgres" in detail


def test_a_login_that_may_change_steps_fails() -> None:
    """A plain login granted UPDATE on the chain fails, naming what it may do."""
    fine, detail = LoginRights("app", False, True, ("UPDATE", "DELETE")).verdict()
    assert not fine and "UPDATE/DELETE audit steps" in detail


def test_a_login_outside_the_worker_role_fails() -> None:
    """A login that is no member of umiq_worker cannot append: it fails too."""
    fine, detail = LoginRights("app", False, False, ()).verdict()
    assert not fine and "no member of umiq_worker" in detail and "cannot append" in detail

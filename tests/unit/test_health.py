"""`umiq health` without servers: the embedded settings, the model pin and the key ring."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from worker.audit import upgrade
from worker.audit.keyring import dump_keyring, generate_keyring
from worker.health import CHECKS, healthy, run_checks
from worker.settings import DepartmentSettings, Settings


class _Described:
    """A role model that only describes itself (what the model check reads)."""

    def generate(self, requests: Any) -> list[Any]:
        raise AssertionError("the health check never generates")

    def describe(self) -> dict[str, Any]:
        return {"base": "fake@000000000000", "adapters": {"planner": "p@1"}, "version": "v-fake"}


def described_factory(settings: Any) -> _Described:
    """``UMIQ_ROLE_MODEL`` target for these tests."""
    return _Described()


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "model_dir": tmp_path / "models",
        "role_model": "tests.unit.test_health:described_factory",
    }
    values.update(overrides)
    return Settings(**values)


def _by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


def test_fresh_embedded_settings_are_healthy(tmp_path: Path) -> None:
    """With nothing set and nothing created yet, every check passes and nothing is made."""
    checks = run_checks(_settings(tmp_path))
    assert [c.name for c in checks] == list(CHECKS)
    assert healthy(checks), [c.detail for c in checks]
    assert not (tmp_path / "data" / "audit.sqlite").exists()
    assert not (tmp_path / "data" / "keyring.json").exists()


def test_a_missing_base_model_names_models_fetch(tmp_path: Path) -> None:
    """Without a role-model plug-in, a base missing from the store fails the model check."""
    checks = _by_name(run_checks(_settings(tmp_path, role_model=None), ["model"]))
    assert checks["model"].status == "fail"
    assert "umiq models fetch" in checks["model"].detail


def test_a_department_pinned_to_another_version_fails_the_model_check(tmp_path: Path) -> None:
    """A pin the worker's model does not serve is named with its department."""
    departments = {
        "finance": DepartmentSettings(adapter_version="v-other"),
        "hr": DepartmentSettings(adapter_version="v-fake"),
    }
    check = _by_name(run_checks(_settings(tmp_path, departments=departments), ["model"]))["model"]
    assert check.status == "fail"
    assert "finance is pinned to v-other" in check.detail
    assert "hr" not in check.detail
    assert "v-fake" in check.detail


def test_the_served_version_matching_every_pin_passes(tmp_path: Path) -> None:
    """The model check passes and says which pins it serves."""
    departments = {"finance": DepartmentSettings(adapter_version="v-fake")}
    check = _by_name(run_checks(_settings(tmp_path, departments=departments), ["model"]))["model"]
    assert check.status == "ok"
    assert "finance" in check.detail


def test_a_key_ring_file_that_does_not_exist_fails(tmp_path: Path) -> None:
    """UMIQ_KEYRING_FILE naming a missing file fails the key ring check."""
    missing = tmp_path / "secrets" / "keyring.json"
    check = _by_name(run_checks(_settings(tmp_path, keyring_file=missing), ["keyring"]))["keyring"]
    assert check.status == "fail"
    assert str(missing) in check.detail


def test_a_key_ring_without_a_key_the_database_uses_fails(tmp_path: Path) -> None:
    """Data keys wrapped by a key the ring lacks are named: they could not be opened."""
    settings = _settings(tmp_path)
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)
    engine = sa.create_engine(settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sealed_key (ref, kid, wrapped, created_at) "
                "VALUES ('step/1/raw', 'k20200101-deadbeef', 'x', :t)"
            ),
            {"t": datetime.now(UTC).isoformat()},
        )
    engine.dispose()
    ring = dump_keyring(generate_keyring())
    check = _by_name(run_checks(settings.model_copy(update={"keyring": ring})))["keyring"]
    assert check.status == "fail"
    assert "k20200101-deadbeef" in check.detail


def test_unknown_check_names_are_refused(tmp_path: Path) -> None:
    """Asking for a check that does not exist is an error naming the known ones."""
    with pytest.raises(ValueError, match="broker"):
        run_checks(_settings(tmp_path), ["brokers"])


def test_the_command_exits_1_and_names_the_failed_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`umiq health` prints each check, and exit 1 with the failed ones named."""
    from worker.cli import app
    from worker.settings import get_settings

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("UMIQ_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("UMIQ_SHIPPED_ADAPTERS", "1")
    monkeypatch.delenv("UMIQ_ROLE_MODEL", raising=False)
    get_settings.cache_clear()
    try:
        bad = CliRunner().invoke(app, ["health"])
        monkeypatch.setenv("UMIQ_ROLE_MODEL", "tests.unit.test_health:described_factory")
        get_settings.cache_clear()
        good = CliRunner().invoke(app, ["health", "--json"])
    finally:
        get_settings.cache_clear()
    assert bad.exit_code == 1, bad.output
    assert "fail  model" in bad.output
    assert "unhealthy: model" in bad.output
    assert good.exit_code == 0, good.output
    # a plug-in serves the role models: no engine to ask
    expected = {**dict.fromkeys(CHECKS, "ok"), "engine": "skip", "login": "skip"}  # SQLite
    assert {c["name"]: c["status"] for c in json.loads(good.stdout)} == expected

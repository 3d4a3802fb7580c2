"""Rollout per department: the decision, the settings file, the live copy, the gate."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import Any

import pytest

from connectors import ToolCall, ToolResult, ToolSpec
from worker.audit import AuditLog, ensure_schema
from worker.rollout import (
    GLOBAL,
    GatedToolbox,
    RolloutFileError,
    RolloutStore,
    agreement,
    bucket,
    decide,
    load_file,
    parse,
)
from worker.rollout.config import as_data, dump, parse_assignment
from worker.rollout.human import facts
from worker.settings import DepartmentSettings, Settings


def keys(n: int) -> list[str]:
    rng = random.Random(7)
    return [f"task-{rng.getrandbits(64):016x}" for _ in range(n)]


# -- the decision ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "shadow", "review"])
def test_a_set_mode_is_the_tasks_mode(mode: str) -> None:
    """A department in off, shadow or review runs every task in that mode."""
    decision = decide("finance", DepartmentSettings(mode=mode), key="t-1")
    assert decision.mode == mode


def test_unconfigured_department_is_off() -> None:
    """A department without settings runs no model: its tasks go to people."""
    assert decide("legal", None, key="t-1").mode == "off"


@pytest.mark.parametrize("percent", [10, 30, 50, 90])
def test_auto_share_is_within_two_points_over_10000_keys(percent: int) -> None:
    """Over 10,000 task keys the share in auto is within 2 points of the percentage."""
    settings = DepartmentSettings(mode="auto", percent=percent)
    modes = [decide("finance", settings, key=k).mode for k in keys(10_000)]
    share = 100 * modes.count("auto") / len(modes)
    assert abs(share - percent) <= 2, share
    assert set(modes) == {"auto", "review"}


def test_raising_the_percentage_keeps_every_key_already_in() -> None:
    """Raising 10% to 50% keeps every key that was in auto at 10%."""
    all_keys = keys(10_000)
    at = {}
    for percent in (10, 50):
        settings = DepartmentSettings(percent=percent)
        at[percent] = {k for k in all_keys if decide("finance", settings, key=k).mode == "auto"}
    assert at[10] and at[10] <= at[50]
    assert len(at[50]) > 4 * len(at[10]) * 0.9


def test_bucket_is_sticky_and_per_department() -> None:
    """A key's bucket is the same every time, and drawn apart per department."""
    assert bucket("finance", "k") == bucket("finance", "k")
    assert 0 <= bucket("finance", "k") < 100
    assert bucket("finance", "k") != bucket("hr", "k")


def test_outside_the_share_holds_every_write() -> None:
    """A task outside the auto share runs in review and says why writes wait."""
    settings = DepartmentSettings(mode="auto", percent=0.0)
    decision = decide("finance", settings, key="t-1")
    assert decision.mode == "review" and "auto share" in decision.hold_writes


# -- the file -------------------------------------------------------------------------


def test_file_error_names_the_bad_key(tmp_path: Path) -> None:
    """A bad value and an unknown key are both named with their path in the file."""
    path = tmp_path / "departments.toml"
    path.write_text('version = 1\n[departments.finance]\nmode = "shdow"\npercnt = 5\n')
    with pytest.raises(RolloutFileError) as caught:
        load_file(path)
    text = str(caught.value)
    assert "departments.finance.mode" in text and "'shdow'" in text
    assert "departments.finance.percnt: unknown key" in text


def test_file_of_another_format_version_is_refused() -> None:
    """A file of a format version this umiq does not read is refused with the version."""
    with pytest.raises(RolloutFileError, match="version"):
        parse({"version": 2})


def test_export_reads_back_as_the_same_settings() -> None:
    """The live settings exported as a file parse back to the same departments."""
    departments = {k: as_data(v, k) for k, v in Settings().departments.items()}
    parsed = parse(tomllib.loads(dump(departments)))
    assert {k: v.model_dump(mode="json") for k, v in parsed.departments.items()} == departments


def test_command_line_values_are_read_as_toml() -> None:
    """`percent=30` is a number, `kill_switch=true` a bool, `mode=shadow` text."""
    assert parse_assignment("percent=30") == ("percent", 30)
    assert parse_assignment("kill_switch=true") == ("kill_switch", True)
    assert parse_assignment("mode=shadow") == ("mode", "shadow")


# -- the live copy --------------------------------------------------------------------


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url)


@pytest.fixture
def store(audit: AuditLog) -> RolloutStore:
    return RolloutStore(audit, Settings().departments)


def test_a_change_is_an_audit_record_with_before_and_after(store: RolloutStore, audit) -> None:
    """A change records who, why, before and after, and the chain still verifies."""
    assert store.live("finance").version == 0
    live = store.set("finance", {"mode": "shadow"}, by="alice", reason="pilot")
    assert live is not None and live.version == 1 and live.settings.mode == "shadow"
    (change,) = store.history("finance")
    assert change.changed_by == "alice" and change.reason == "pilot"
    assert change.before["mode"] == "auto" and change.after["mode"] == "shadow"
    assert change.after["tools"] == ["erp:*", "mail:*"]
    assert store.live("finance").settings.mode == "shadow"
    assert audit.verify().ok


def test_a_change_that_changes_nothing_is_not_recorded(store: RolloutStore) -> None:
    """Setting what is already set records nothing."""
    assert store.set("finance", {"mode": "auto"}, by="alice", reason="") is None
    assert store.history() == []


def test_an_invalid_change_is_refused_naming_the_key(store: RolloutStore) -> None:
    """An invalid value is refused before anything is recorded, naming the key."""
    with pytest.raises(RolloutFileError, match=r"departments\.finance\.percent"):
        store.set("finance", {"percent": 130}, by="alice", reason="")
    assert store.history() == []


def test_a_stale_version_is_refused(store: RolloutStore, audit) -> None:
    """Two changes based on the same version: the second is refused."""
    store.set("finance", {"mode": "review"}, by="alice", reason="")
    with pytest.raises(Exception, match="changed meanwhile"):
        audit.append_rollout_change(
            department="finance", version=1, changed_by="bob", reason="", before=None, after={}
        )


def test_kill_switches_department_and_global(store: RolloutStore) -> None:
    """The department's or the global kill switch stops writes, saying who set it."""
    assert store.kill_switch("finance") is None
    store.set(GLOBAL, {"kill_switch": True}, by="carol", reason="incident 42")
    why = store.kill_switch("hr")
    assert why is not None and "global" in why and "carol" in why and "incident 42" in why
    store.set(GLOBAL, {"kill_switch": False}, by="carol", reason="")
    store.set("hr", {"kill_switch": True}, by="dan", reason="")
    assert store.kill_switch("finance") is None
    assert "'hr'" in (store.kill_switch("hr") or "")


def test_apply_records_only_departments_that_differ(store: RolloutStore, tmp_path: Path) -> None:
    """Applying a file records one change per department whose settings differ."""
    departments = {k: as_data(v, k) for k, v in Settings().departments.items()}
    departments["hr"]["mode"] = "shadow"
    parsed = parse(tomllib.loads(dump(departments)))
    done = store.apply(parsed, by="alice", reason="file v2")
    assert [d.department for d in done] == ["hr"]
    assert store.apply(parsed, by="alice", reason="again") == []


# -- the gate -------------------------------------------------------------------------

READ = ToolSpec("get_invoice", "Get an invoice.", effect="read", connector="erp")
WRITE = ToolSpec("dispute_invoice", "Dispute an invoice.", effect="write", connector="erp")


class Recording:
    name = "erp"

    def __init__(self) -> None:
        self.invoked: list[str] = []
        self.dry: list[str] = []

    def tools(self) -> list[ToolSpec]:
        return [READ, WRITE]

    def invoke(self, call: ToolCall, key: str) -> ToolResult:
        self.invoked.append(call.tool)
        return ToolResult(ok=True, data={"done": call.tool})

    def dry_run(self, call: ToolCall, key: str) -> ToolResult:
        self.dry.append(call.tool)
        return ToolResult(ok=True, data={"dry_run": True, "would_send": dict(call.arguments)})


class Box:
    def __init__(self, connector: Recording) -> None:
        self.connector = connector

    def specs(self) -> list[ToolSpec]:
        return [READ, WRITE]

    def spec(self, tool: str) -> ToolSpec:
        return {s.name: s for s in self.specs()}[tool]

    def connector_for(self, tool: str) -> Any:
        return self.connector


def gated(mode: str, kill: Any = lambda: None) -> tuple[GatedToolbox, Recording]:
    connector = Recording()
    decision = decide("finance", DepartmentSettings(mode=mode), key="t")
    return GatedToolbox(Box(connector), decision, kill), connector


def test_shadow_dry_runs_writes_and_reads_for_real() -> None:
    """In shadow a write is dry-run (nothing invoked), a read runs."""
    box, connector = gated("shadow")
    result = box.connector_for("dispute_invoice").invoke(ToolCall("dispute_invoice", {"x": 1}), "k")
    box.connector_for("get_invoice").invoke(ToolCall("get_invoice", {}), "k2")
    assert result.ok and result.data["would_send"] == {"x": 1}
    assert connector.invoked == ["get_invoice"] and connector.dry == ["dispute_invoice"]


def test_kill_switch_stops_the_write_with_the_reason() -> None:
    """A kill switch that is on stops a write; reads still run."""
    box, connector = gated("auto", kill=lambda: "the kill switch of 'finance' is on")
    result = box.connector_for("dispute_invoice").invoke(ToolCall("dispute_invoice", {}), "k")
    assert not result.ok and result.error.startswith("stopped: the kill switch")
    assert box.connector_for("get_invoice").invoke(ToolCall("get_invoice", {}), "k2").ok
    assert connector.invoked == ["get_invoice"]


def test_kill_switch_that_cannot_be_read_fails_closed() -> None:
    """When the kill switch cannot be read, the write is stopped."""

    def broken() -> str | None:
        raise OSError("database is down")

    box, connector = gated("auto", kill=broken)
    result = box.connector_for("dispute_invoice").invoke(ToolCall("dispute_invoice", {}), "k")
    assert not result.ok and "could not be read" in result.error
    assert "database is down" in result.error
    assert connector.invoked == []


# -- agreement ------------------------------------------------------------------------


def test_facts_normalize_numbers_ids_and_dates() -> None:
    """Amounts lose separators and trailing zeros; ids and dates are kept."""
    found = facts("Paid INV-1012: 1,200.50 EUR on 2025-03-20.")
    assert found == {"inv-1012", "1200.5", "2025-03-20"}


def test_agreement_compares_outcome_writes_and_answer_facts() -> None:
    """Same outcome, same writes (numbers normalized) and the facts in the answer agree."""
    writes = [("schedule_payment", {"invoice_id": "INV-1", "amount": 10.0})]
    same = agreement("answered", "Scheduled INV-1 for 10 EUR", writes, "answered", "INV-1: 10",
                     [("schedule_payment", {"invoice_id": "INV-1", "amount": 10})])  # fmt: skip
    assert same["agree"] is True
    other = agreement("answered", "Scheduled INV-1", writes, "answered", "INV-2", [])
    assert other["writes"] is False and other["answer"] is False and other["agree"] is False
    assert other["missing_facts"] == ["inv-2"]

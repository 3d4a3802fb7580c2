"""A chain written before the audit events were typed reads, verifies and rewrites byte for byte.

The fixture (``tests/fixtures/audit_chain``, see its ``write_chain.py``) holds every
append the worker made for seven tasks (answered, approved and resumed, rejected, held
and released, held and rejected, caller errors, a sealed one) and two dead-letter
refusals, and the rows SQLite stored for them.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from policies import _crypto
from policies._crypto import KeyRing
from tests.fixtures.audit_chain import write_chain
from worker.audit import AuditLog, ensure_schema
from worker.audit import log as audit_log
from worker.audit.sealing import Sealer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "audit_chain"


def _jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURE / name).read_text().splitlines()]


ROWS = _jsonl("rows.jsonl")
APPENDS = _jsonl("appends.jsonl")


def _ring() -> KeyRing:
    keys = json.loads((FIXTURE / "keyring.json").read_text())
    return KeyRing({kid: bytes.fromhex(key) for kid, key in keys.items()}, "fixture")


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return url


def _db(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _load(url: str) -> None:
    """The fixture's rows inserted as stored, column text for column text."""
    with sqlite3.connect(_db(url)) as conn:
        for item in ROWS:
            table, row = item["table"], item["row"]
            if table == "chain_head":
                conn.execute(
                    "UPDATE chain_head SET last_seq = ?, last_hash = ? WHERE chain = ?",
                    (row["last_seq"], row["last_hash"], row["chain"]),
                )
                continue
            names = ", ".join(f'"{n}"' for n in row)
            marks = ", ".join("?" for _ in row)
            conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))


def test_stored_rows_verify_with_todays_code(url: str) -> None:
    """Every row of the old chain verifies under today's hash code, up to the head."""
    _load(url)
    log = AuditLog.from_url(url)
    report = log.verify()
    assert report.ok, report
    head = next(r["row"] for r in ROWS if r["table"] == "chain_head")
    assert log.head() == (head["last_seq"], head["last_hash"])
    assert report.rows == head["last_seq"]
    log.close()


def test_sealed_values_of_the_old_chain_open(url: str) -> None:
    """The sealed task's query, token map and tool call open with the fixture's key ring."""
    _load(url)
    log = AuditLog.from_url(url, sealer=Sealer(_ring()))
    [first, *_] = log.unseal(log.steps("t-sealed"))
    assert first.details["query"] == "Mail bob@example.com whether INV-1 is open."
    assert "bob@example.com" in first.details["tokens"].values()
    [call] = log.unseal(log.tool_calls("t-sealed"))
    assert call.request == {"invoice_id": "INV-1"}
    log.close()


def test_replayed_appends_store_the_same_bytes(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same appends made with today's code, at their recorded times, store the same bytes."""
    for module, name in ((audit_log, "_now"), (_crypto, "new_key"), (_crypto, "new_nonce")):
        monkeypatch.setattr(module, name, getattr(module, name))  # put back after the test
    write_chain.repeatable()  # the fixture's data keys and nonces, in the same order
    plain = AuditLog.from_url(url)
    sealed = AuditLog.from_url(url, sealer=Sealer(_ring()))
    for append in APPENDS:
        stamp = datetime.fromisoformat(append["now"])
        monkeypatch.setattr(audit_log, "_now", lambda stamp=stamp: stamp)
        log = sealed if append["sealed_log"] else plain
        getattr(log, append["method"])(**append["kwargs"])
    plain.close()
    sealed.close()
    assert write_chain.dump_rows(Path(_db(url))) == ROWS


def test_every_step_of_the_old_chain_reads_as_its_typed_event() -> None:
    """Each stored step's details parse into its kind's payload and write back the same."""
    from worker.audit.events import DETAILS, details_of

    for item in ROWS:
        if item["table"] != "step":
            continue
        row = item["row"]
        details = json.loads(row["details"])
        event = details_of({"kind": row["kind"], "details": details})
        assert type(event) is DETAILS[row["kind"]]
        assert event.to_details() == details, row["seq"]


def test_the_typed_readers_read_the_old_chain(url: str) -> None:
    """Approvals, held answers and outcomes read the old rows as they did."""
    from worker.gates.answers import held
    from worker.gates.calls import approved_key

    _load(url)
    log = AuditLog.from_url(url)
    assert approved_key(log.steps("t-approved"), "t-approved:2")[0] is False  # resumed
    assert [h.task_id for h in held(log)] == []  # both held answers were decided
    outcome = log.outcome("t-rejected")
    assert outcome is not None
    assert (outcome["outcome"], outcome["reason"]) == (
        "rejected",
        "schedule_payment rejected by dave: duplicate invoice",
    )
    log.close()


def test_todays_decisions_write_the_old_bytes(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """decide and decide_answer, run where the old chain's humans decided, store the same rows."""
    from worker.gates.answers import decide_answer
    from worker.gates.calls import decide

    log = AuditLog.from_url(url)
    stamps = iter(datetime.fromisoformat(a["now"]) for a in APPENDS)  # one per row, in order
    monkeypatch.setattr(audit_log, "_now", lambda: next(stamps))
    decisions = 0
    skip = 0
    for append in APPENDS:
        if append["sealed_log"]:
            break  # the sealed task comes last and has no human decision
        if skip:
            skip -= 1
            continue
        kwargs = append["kwargs"]
        details = kwargs.get("details") or {}
        if kwargs.get("kind") == "policy" and "by" in details:
            task_id, by = kwargs["task_id"], details["by"]
            reason = details["reasons"][0].split(": ", 1)[1]
            if details["policy"] == "approval":
                decide(log, task_id, verdict=details["status"], by=by, reason=reason,
                       enqueue=lambda t, k: None)  # fmt: skip
                skip = 0 if details["status"] == "approved" else 1
            else:
                decide_answer(log, task_id, verdict=details["status"], by=by, reason=reason)
                skip = 1
            decisions += 1
            continue
        getattr(log, append["method"])(**kwargs)
    log.close()
    assert decisions == 4
    written = write_chain.dump_rows(Path(_db(url)))
    last = max(r["row"]["seq"] for r in written if "seq" in r["row"])
    old = [r for r in ROWS if r["table"] not in ("chain_head", "sealed_key")]
    assert [r for r in written if r["table"] not in ("chain_head", "sealed_key")] == [
        r for r in old if r["row"]["seq"] <= last
    ]

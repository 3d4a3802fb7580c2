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

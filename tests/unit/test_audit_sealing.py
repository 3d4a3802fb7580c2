"""Sealed audit fields on the embedded SQLite log: AuditLog, key ring loading, `umiq keys`."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import typer
from sqlalchemy import inspect
from typer.testing import CliRunner

from policies._crypto import SEALED, KeyRing, SealError, new_key
from worker.audit import AuditLog, ensure_schema, upgrade
from worker.audit.keyring import (
    dump_keyring,
    load_keyring,
    parse_keyring,
    read_keyring_file,
    save_keyring,
)
from worker.audit.keys_cli import register
from worker.audit.sealing import Sealer, is_sealed
from worker.errors import AuditError, ConfigError
from worker.settings import get_settings

IBAN = "DE89370400440532013000"
EMAIL = "jane.doe@example.org"


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'data' / 'audit.sqlite'}"
    ensure_schema(url)
    return url


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({"k1": new_key()}, "k1")


@pytest.fixture
def log(url: str, ring: KeyRing) -> Iterator[AuditLog]:
    audit = AuditLog.from_url(url, sealer=Sealer(ring))
    yield audit
    audit.close()


def _call(log: AuditLog, task_id: str = "t-1", step: int = 2) -> Any:
    log.append_task(task_id=task_id, department="finance", query="pay", requested_by="ana")
    return log.append_tool_call(
        task_id=task_id,
        step=step,
        idempotency_key=f"{task_id}:{step}",
        tool="erp.pay",
        effect="write",
        request={"iban": IBAN, "amount": 10},
        response={"mail": EMAIL},
        ok=True,
    )


def _all_text(path: Path) -> str:
    """Every value of every column of every table of the SQLite file, as one text."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            str(value)
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
            for value in row
        )


def _db_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _sql(url: str, *statements: str) -> None:
    with sqlite3.connect(_db_path(url)) as conn:
        for statement in statements:
            conn.execute(statement)


# -- AuditLog ---------------------------------------------------------------------------


def test_sealed_table_exists_at_head(url: str) -> None:
    """The embedded database gets the sealed_key table from the migrations."""
    log = AuditLog.from_url(url)
    columns = {c["name"] for c in inspect(log.engine).get_columns("sealed_key")}
    log.close()
    assert columns == {"ref", "kid", "wrapped", "created_at", "rewrapped_at"}


def test_an_older_embedded_database_gets_the_table(tmp_path: Path) -> None:
    """ensure_schema upgrades a SQLite log made before sealing, adding sealed_key."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade(url, "0001")
    ensure_schema(url)
    log = AuditLog.from_url(url)
    assert "sealed_key" in inspect(log.engine).get_table_names()
    log.close()


def test_tool_call_request_and_response_are_stored_sealed(log: AuditLog, url: str) -> None:
    """With a sealer the stored request and response are envelopes; the values are nowhere."""
    call = _call(log)
    assert is_sealed(call.request) and is_sealed(call.response)
    assert call.request[SEALED]["ref"] == "tool_call/t-1:2/request"
    stored = log.tool_call_by_key("t-1:2")
    assert stored is not None and stored.request == call.request
    text = _all_text(_db_path(url))
    assert IBAN not in text and EMAIL not in text
    assert "tool_call/t-1:2/response" in text


def test_unseal_opens_a_tool_call(log: AuditLog) -> None:
    """unseal gives the tool call back with its request and response opened."""
    _call(log)
    stored = log.tool_call_by_key("t-1:2")
    opened = log.unseal(stored)
    assert opened.request == {"iban": IBAN, "amount": 10}
    assert opened.response == {"mail": EMAIL}
    assert (opened.seq, opened.hash) == (stored.seq, stored.hash)


def test_unseal_opens_envelopes_anywhere_in_a_value(log: AuditLog) -> None:
    """unseal opens every envelope nested in a plain JSON value, by the ref it names."""
    call = _call(log)
    value = {"a": [call.request, {"b": call.response}], "c": 1}
    assert log.unseal(value) == {
        "a": [{"iban": IBAN, "amount": 10}, {"b": {"mail": EMAIL}}],
        "c": 1,
    }


def test_unseal_opens_a_list_of_records(log: AuditLog) -> None:
    """unseal on a list of tool call records opens each one."""
    _call(log)
    [opened] = log.unseal(log.tool_calls("t-1"))
    assert opened.response == {"mail": EMAIL}


def test_step_sealed_fields_go_into_details(log: AuditLog) -> None:
    """append_step(sealed=...) adds each entry to details as an envelope, opened by unseal."""
    log.append_task(task_id="t-1", department="hr", query="q", requested_by="ana")
    step = log.append_step(
        task_id="t-1",
        index=1,
        kind="tool",
        output="<EMAIL_1>",
        details={"ok": True},
        sealed={"tokens": {"<EMAIL_1>": EMAIL}},
    )
    assert step.details["ok"] is True
    assert step.details["tokens"][SEALED]["ref"] == f"step/{step.seq}/tokens"
    [stored] = log.steps("t-1")
    assert log.unseal(stored).details == {"ok": True, "tokens": {"<EMAIL_1>": EMAIL}}


def test_replayed_step_indexes_seal_apart(log: AuditLog) -> None:
    """Two steps with the same task and index (a redelivery) each get their own sealed key."""
    log.append_task(task_id="t-1", department="hr", query="q", requested_by="ana")
    for value in ("first", "second"):
        log.append_step(task_id="t-1", index=1, kind="tool", sealed={"tokens": value})
    assert [log.unseal(s).details["tokens"] for s in log.steps("t-1")] == ["first", "second"]


def test_sealed_rows_verify(log: AuditLog) -> None:
    """The chain covers the envelopes: a sealed log verifies like any other."""
    _call(log)
    log.append_step(task_id="t-1", index=3, kind="outcome", sealed={"tokens": 5})
    report = log.verify()
    assert (report.ok, report.rows) == (True, 3)


def test_without_a_sealer_values_are_stored_plain(url: str) -> None:
    """An audit log without a sealer stores tool call values as they are (as before)."""
    log = AuditLog.from_url(url)
    call = _call(log)
    log.close()
    assert call.request == {"iban": IBAN, "amount": 10}


def test_sealed_step_fields_without_a_sealer_are_refused(url: str) -> None:
    """append_step(sealed=...) on an audit log without a key ring refuses, storing nothing."""
    log = AuditLog.from_url(url)
    log.append_task(task_id="t-1", department="hr", query="q", requested_by="ana")
    with pytest.raises(AuditError, match=r"refusing to record step fields 'tokens' in plain text"):
        log.append_step(task_id="t-1", index=1, kind="tool", sealed={"tokens": EMAIL})
    assert log.steps("t-1") == []
    log.close()


def test_a_field_both_plain_and_sealed_is_refused(log: AuditLog) -> None:
    """A name given in details and in sealed is refused."""
    with pytest.raises(AuditError, match="both in details and in sealed"):
        log.append_step(task_id="t", index=1, kind="tool", details={"x": 1}, sealed={"x": 2})


def test_unseal_without_a_key_ring_is_refused(log: AuditLog, url: str) -> None:
    """Reading sealed values through an audit log without a key ring raises a clear error."""
    _call(log)
    plain = AuditLog.from_url(url)
    with pytest.raises(AuditError, match="this audit log has no key ring"):
        plain.unseal(plain.tool_call_by_key("t-1:2"))
    assert plain.unseal({"a": 1}) == {"a": 1}
    plain.close()


def test_envelope_moved_to_another_row_does_not_open(log: AuditLog, url: str) -> None:
    """An envelope copied into another row (triggers dropped) fails to open there."""
    _call(log, "t-1")
    _call(log, "t-2")
    _sql(
        url,
        "DROP TRIGGER tool_call_no_update",
        "UPDATE tool_call SET response = (SELECT response FROM tool_call "
        "WHERE idempotency_key = 't-1:2') WHERE idempotency_key = 't-2:2'",
    )
    moved = log.tool_call_by_key("t-2:2")
    with pytest.raises(
        SealError,
        match=r"^cannot open tool_call/t-2:2/response: the ciphertext was altered or belongs "
        r"to another record",
    ):
        log.unseal(moved)


def test_missing_sealed_key_is_named(log: AuditLog, url: str) -> None:
    """A sealed value whose key row is gone names the record."""
    _call(log)
    _sql(url, "DELETE FROM sealed_key WHERE ref = 'tool_call/t-1:2/request'")
    with pytest.raises(SealError, match="cannot open tool_call/t-1:2/request: sealed_key holds"):
        log.unseal(log.tool_call_by_key("t-1:2"))


def test_sealer_repr_holds_no_key_material(ring: KeyRing) -> None:
    """repr(Sealer) names key ids only."""
    assert repr(Sealer(ring)) == "Sealer(KeyRing(primary='k1', kids=['k1']))"


# -- key ring loading -------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """Settings from a fresh data dir, no key ring configured."""
    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path / "data"))
    for name in ("UMIQ_KEYRING", "UMIQ_KEYRING_FILE", "UMIQ_DATABASE_URL", "UMIQ_DATABASE_ROLE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def _reload(env: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()


def test_default_key_ring_is_created_private_with_a_warning(env: Any, tmp_path: Path) -> None:
    """With nothing set, <data_dir>/keyring.json is created 0600 and a warning names it."""
    with structlog.testing.capture_logs() as logs:
        ring = load_keyring()
    path = tmp_path / "data" / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keyring_file(path).keys == ring.keys
    [warning] = [e for e in logs if e["event"] == "keyring.created"]
    assert warning["log_level"] == "warning"
    assert str(path) in warning["message"] and "outside the data dir" in warning["message"]
    with structlog.testing.capture_logs() as again:
        assert load_keyring().keys == ring.keys
    assert again == []


def test_key_ring_from_the_environment(env: Any) -> None:
    """UMIQ_KEYRING holds the key ring as JSON."""
    ring = KeyRing({"a": new_key(), "b": new_key()}, "b")
    env.setenv("UMIQ_KEYRING", dump_keyring(ring))
    _reload(env)
    loaded = load_keyring()
    assert (loaded.primary, dict(loaded.keys)) == ("b", dict(ring.keys))
    assert dump_keyring(ring) not in repr(get_settings())


def test_key_ring_from_a_file(env: Any, tmp_path: Path) -> None:
    """UMIQ_KEYRING_FILE names a file holding the key ring JSON."""
    ring = KeyRing({"a": new_key()}, "a")
    path = tmp_path / "secrets" / "ring.json"
    save_keyring(ring, path)
    env.setenv("UMIQ_KEYRING_FILE", str(path))
    _reload(env)
    assert load_keyring().keys == ring.keys


def test_a_missing_key_ring_file_says_to_init(env: Any, tmp_path: Path) -> None:
    """A UMIQ_KEYRING_FILE that does not exist is refused with the command that makes it."""
    env.setenv("UMIQ_KEYRING_FILE", str(tmp_path / "nope.json"))
    _reload(env)
    with pytest.raises(ConfigError, match="does not exist: create it with `umiq keys init`"):
        load_keyring()


def test_both_sources_are_refused(env: Any, tmp_path: Path) -> None:
    """Setting UMIQ_KEYRING and UMIQ_KEYRING_FILE together is refused."""
    env.setenv("UMIQ_KEYRING", "{}")
    env.setenv("UMIQ_KEYRING_FILE", str(tmp_path / "x.json"))
    _reload(env)
    with pytest.raises(ConfigError, match="not both"):
        load_keyring()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"primary": "a"}', "must be a JSON object"),
        ('{"primary": "a", "keys": {"a": "%%%"}}', "key 'a' in UMIQ_KEYRING is not valid base64"),
        ('{"primary": "a", "keys": {"a": "c2hvcnQ="}}', "must be 32 bytes"),
        ('{"primary": "z", "keys": {"a": "' + "A" * 43 + '="}}', "primary key 'z'"),
    ],
)
def test_bad_key_rings_are_refused_without_quoting_them(text: str, message: str) -> None:
    """A malformed key ring is refused with what is wrong and never echoes key material."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_keyring(text, "UMIQ_KEYRING")
    assert "c2hvcnQ" not in str(info.value) and "AAAA" not in str(info.value)


def test_saving_a_key_ring_is_private_and_replaces_it(tmp_path: Path) -> None:
    """save_keyring writes mode 0600 and leaves no temp file behind."""
    path = tmp_path / "ring.json"
    save_keyring(KeyRing({"a": new_key()}, "a"), path)
    second = KeyRing({"b": new_key()}, "b")
    save_keyring(second, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keyring_file(path).keys == second.keys
    assert [p.name for p in tmp_path.iterdir()] == ["ring.json"]


# -- umiq keys --------------------------------------------------------------------------


@pytest.fixture
def keys(env: Any, tmp_path: Path) -> Callable[..., Any]:
    """Run ``umiq keys …`` in-process on a data dir of its own."""
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def run(*args: str) -> Any:
        get_settings.cache_clear()
        return runner.invoke(app, ["keys", *args])

    return run


def _sealed_log(tmp_path: Path) -> AuditLog:
    settings = get_settings()
    ensure_schema(settings.resolved_database_url)
    return AuditLog.from_url(settings.resolved_database_url, sealer=Sealer(load_keyring()))


def _kids(url: str) -> list[str]:
    with sqlite3.connect(_db_path(url)) as conn:
        return sorted({r[0] for r in conn.execute("SELECT kid FROM sealed_key")})


def test_keys_init_creates_once(keys: Callable[..., Any], tmp_path: Path) -> None:
    """`umiq keys init` creates the key ring file once, then says it exists."""
    first = keys("init")
    assert first.exit_code == 0, first.output
    assert "created key ring" in first.output and "in production keep keys" in first.output
    again = keys("init")
    assert again.exit_code == 0 and "already exists" in again.output


def test_keys_list_shows_no_key_material(keys: Callable[..., Any], tmp_path: Path) -> None:
    """`umiq keys list` prints key ids, primary and created time, never a key."""
    keys("init")
    ring = read_keyring_file(tmp_path / "data" / "keyring.json")
    result = keys("list")
    assert result.exit_code == 0, result.output
    assert f"{ring.primary}  primary" in result.output and "created 20" in result.output
    assert json.loads(dump_keyring(ring))["keys"][ring.primary] not in result.output


def test_keys_list_without_a_ring_says_to_init(keys: Callable[..., Any]) -> None:
    """`umiq keys list` before any key ring exists says to run init (and creates nothing)."""
    result = keys("list")
    assert result.exit_code == 1 and "umiq keys init" in result.output


def test_rotate_keeps_old_records_open(keys: Callable[..., Any], tmp_path: Path) -> None:
    """After `umiq keys rotate` old records open, new ones use the new key, the chain verifies."""
    log = _sealed_log(tmp_path)
    _call(log, "t-1")
    old_kid = log.sealer.keyring.primary
    log.close()

    result = keys("rotate")
    assert result.exit_code == 0, result.output
    assert (
        "re-wrapped 2 data key(s)" in result.output
        and "kept in the ring as retired" in result.output
    )
    ring = load_keyring()
    assert ring.primary != old_kid and ring.retired == [old_kid]

    log = _sealed_log(tmp_path)
    url = get_settings().resolved_database_url
    assert _kids(url) == [ring.primary]
    assert log.unseal(log.tool_call_by_key("t-1:2")).request["iban"] == IBAN
    _call(log, "t-2")
    assert log.sealer.keyring.primary == ring.primary
    assert log.tool_call_by_key("t-2:2") is not None and _kids(url) == [ring.primary]
    assert log.verify().ok
    log.close()


def test_rotate_retire_old_removes_the_old_key(keys: Callable[..., Any], tmp_path: Path) -> None:
    """After `rotate --retire-old` the old key is gone and every record still opens."""
    log = _sealed_log(tmp_path)
    _call(log, "t-1")
    log.append_step(task_id="t-1", index=3, kind="tool", sealed={"tokens": {"<IBAN_1>": IBAN}})
    old_kid = log.sealer.keyring.primary
    log.close()

    result = keys("rotate", "--retire-old")
    assert result.exit_code == 0, result.output
    assert f"removed old key(s) {old_kid}" in result.output
    ring = load_keyring()
    assert list(ring.keys) == [ring.primary] and old_kid not in ring.keys

    log = _sealed_log(tmp_path)
    assert log.unseal(log.tool_call_by_key("t-1:2")).response == {"mail": EMAIL}
    assert log.unseal(log.steps("t-1"))[0].details["tokens"] == {"<IBAN_1>": IBAN}
    assert log.verify().ok
    log.close()


def test_rotate_twice_keeps_the_oldest_records_open(
    keys: Callable[..., Any], tmp_path: Path
) -> None:
    """Records outlive two rotations, the second retiring every older key."""
    log = _sealed_log(tmp_path)
    _call(log, "t-1")
    log.close()
    assert keys("rotate").exit_code == 0
    log = _sealed_log(tmp_path)
    _call(log, "t-2")
    log.close()
    assert keys("rotate", "--retire-old").exit_code == 0
    log = _sealed_log(tmp_path)
    assert len(log.sealer.keyring.keys) == 1
    assert [
        log.unseal(c).request["iban"] for c in log.tool_calls("t-1") + log.tool_calls("t-2")
    ] == [
        IBAN,
        IBAN,
    ]
    log.close()


def test_retire_old_refuses_while_a_key_is_still_needed(
    keys: Callable[..., Any], tmp_path: Path
) -> None:
    """A data key that cannot be re-wrapped keeps the old keys in the ring (exit 1)."""
    log = _sealed_log(tmp_path)
    _call(log, "t-1")
    old_kid = log.sealer.keyring.primary
    log.close()
    url = get_settings().resolved_database_url
    _sql(url, "UPDATE sealed_key SET wrapped = 'AAAA' WHERE ref = 'tool_call/t-1:2/request'")

    result = keys("rotate", "--retire-old")
    assert result.exit_code != 0
    assert "not retiring the old keys" in result.output
    assert old_kid in load_keyring().keys


def test_rotate_refuses_a_key_ring_from_the_environment(keys: Callable[..., Any], env: Any) -> None:
    """`umiq keys rotate` with UMIQ_KEYRING set says where a rotated ring could be saved."""
    env.setenv("UMIQ_KEYRING", dump_keyring(KeyRing({"a": new_key()}, "a")))
    result = keys("rotate")
    assert result.exit_code == 2 and "UMIQ_KEYRING_FILE" in result.output


def test_decrypt_prints_the_task_opened(keys: Callable[..., Any], tmp_path: Path) -> None:
    """`umiq keys decrypt TASK` prints the task's tool calls and steps with values opened."""
    log = _sealed_log(tmp_path)
    _call(log, "t-1")
    log.append_step(task_id="t-1", index=3, kind="tool", sealed={"tokens": {"<EMAIL_1>": EMAIL}})
    log.close()
    result = keys("decrypt", "t-1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"]["task_id"] == "t-1"
    assert report["tool_calls"][0]["request"] == {"iban": IBAN, "amount": 10}
    assert report["steps"][0]["details"]["tokens"] == {"<EMAIL_1>": EMAIL}


def test_decrypt_of_an_unknown_task_fails(keys: Callable[..., Any]) -> None:
    """`umiq keys decrypt` of a task not in the log exits 1 and says so."""
    keys("init")
    result = keys("decrypt", "nope")
    assert result.exit_code == 1 and "not in the audit log" in result.output

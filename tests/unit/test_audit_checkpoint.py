"""Signed checkpoints on the embedded SQLite log: keys, signatures, and what a check finds."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import delete, insert, select, update
from typer.testing import CliRunner

from worker.audit import GENESIS, AuditLog, ensure_schema, row_hash
from worker.audit.checkpoint import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    Checkpoint,
    check_checkpoint,
    database_identity,
    extension_problem,
    load_private_key,
    load_public_key,
    sign,
    signature_problem,
    take_checkpoint,
    write_keypair,
)
from worker.audit.tables import CHAIN_TABLES, ChainHead, content_columns
from worker.errors import AuditError, ChainBroken

H1, H2 = "1" * 64, "2" * 64


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_keypair(tmp_path / "keys")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.sqlite'}"


@pytest.fixture
def log(url: str) -> Iterator[AuditLog]:
    """Two tasks of three links each: seq 1–6."""
    ensure_schema(url)
    audit = AuditLog.from_url(url)
    for n in (1, 2):
        _task(audit, f"t-{n}")
    yield audit
    audit.close()


def _task(audit: AuditLog, task_id: str) -> None:
    audit.append_task(task_id=task_id, department="finance", query="pay", requested_by="ana")
    audit.append_step(task_id=task_id, index=1, kind="planner", output="Next: Caller")
    audit.append_tool_call(
        task_id=task_id,
        step=1,
        idempotency_key=f"{task_id}:1",
        tool="erp",
        effect="write",
        request={"amount": 10},
        ok=True,
    )


def _rewrite_from_genesis(
    audit: AuditLog, keep: Any = lambda row: True, edit: Any = lambda row: row
) -> None:
    """Replace the whole chain by the kept rows, edited, renumbered and re-hashed from genesis."""
    with audit.engine.connect() as conn:
        rows = [
            (name, dict(r))
            for name, model in CHAIN_TABLES.items()
            for r in conn.execute(select(model.__table__)).mappings()  # type: ignore[attr-defined]
        ]
    rows.sort(key=lambda item: item[1]["seq"])
    with sqlite3.connect(audit.engine.url.database) as db:  # as the file's owner would
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            db.execute(f"DROP TRIGGER {name}")
    with audit.engine.begin() as conn:
        for model in CHAIN_TABLES.values():
            conn.execute(delete(model.__table__))  # type: ignore[attr-defined]
        prev, seq = GENESIS, 0
        for name, row in rows:
            if not keep(row):
                continue
            seq += 1
            row = edit({**row, "seq": seq})
            payload = {c: row[c] for c in content_columns(name)}
            row["prev_hash"], row["hash"] = prev, row_hash(prev, name, payload)
            conn.execute(insert(CHAIN_TABLES[name].__table__).values(**row))  # type: ignore[attr-defined]
            prev = row["hash"]
        conn.execute(update(ChainHead).values(last_seq=seq, last_hash=prev))


def _retitle(row: dict[str, Any]) -> dict[str, Any]:
    """A task's query changed (rows of other tables as they were)."""
    return {**row, "query": "refund INV-9"} if "query" in row else row


# -- keys -------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(keys: tuple[Path, Path]) -> None:
    """The private key file is mode 0600; the public key is readable by all."""
    private, public = keys
    assert (private.name, public.name) == (PRIVATE_KEY_FILE, PUBLIC_KEY_FILE)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert b"PRIVATE KEY" in private.read_bytes()
    assert load_private_key(private).public_key() == load_public_key(public)


def test_keygen_refuses_to_overwrite_a_key(keys: tuple[Path, Path]) -> None:
    """A second keygen into the same directory is refused and leaves the first key intact."""
    before = keys[0].read_bytes()
    with pytest.raises(AuditError, match="already exists"):
        write_keypair(keys[0].parent)
    assert keys[0].read_bytes() == before


def test_a_public_key_is_not_accepted_as_private_key(keys: tuple[Path, Path]) -> None:
    """Loading the public key file as the private key says what is wrong."""
    with pytest.raises(AuditError, match="not a PEM key"):
        load_private_key(keys[1])


def test_database_identity_names_no_user_or_password() -> None:
    """The database identity keeps backend, host, port and name, never credentials."""
    identity = database_identity("postgresql+psycopg://umiq:s3cret@db.internal:5433/audit")
    assert identity == {
        "backend": "postgresql",
        "host": "db.internal",
        "port": 5433,
        "database": "audit",
    }
    assert "s3cret" not in json.dumps(identity) and "umiq" not in json.dumps(identity)


# -- signatures -------------------------------------------------------------------------


def _checkpoint(keys: tuple[Path, Path], seq: int = 3, hash: str = H1) -> Checkpoint:
    return sign(load_private_key(keys[0]), seq=seq, hash=hash, database={"backend": "sqlite"})


def test_a_signed_checkpoint_survives_its_file(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A checkpoint written and read back verifies with the signer's public key."""
    path = tmp_path / "cp.json"
    _checkpoint(keys).write(path)
    read = Checkpoint.read(path)
    assert (read.seq, read.hash, read.chain) == (3, H1, "main")
    assert signature_problem(read, load_public_key(keys[1])) is None


def test_an_edited_checkpoint_fails_its_signature(keys: tuple[Path, Path]) -> None:
    """Changing the signed seq of a checkpoint makes its signature fail."""
    data = json.loads(_checkpoint(keys).to_json())
    data["seq"] = 2
    forged = Checkpoint.from_json(json.dumps(data))
    problem = signature_problem(forged, load_public_key(keys[1]))
    assert problem is not None and "altered after it was signed" in problem


def test_a_checkpoint_of_another_key_names_both_keys(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A checkpoint checked with another public key fails and names the key it was signed by."""
    other = load_public_key(write_keypair(tmp_path / "other")[1])
    checkpoint = _checkpoint(keys)
    problem = signature_problem(checkpoint, other)
    assert problem is not None and checkpoint.key_id in problem and "wrong public key" in problem


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other/1"}, "not a umiq audit checkpoint"),
        ({"signature": None}, "lacks signature"),
        ({"hash": "abc"}, "SHA-256 hex digest"),
        ({"seq": -1}, "non-negative integer"),
    ],
)
def test_a_malformed_checkpoint_file_is_refused(
    keys: tuple[Path, Path], change: dict[str, Any], message: str
) -> None:
    """A checkpoint file with a wrong format, missing field or bad value is refused by name."""
    data = {**json.loads(_checkpoint(keys).to_json()), **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(AuditError, match=message):
        Checkpoint.from_json(json.dumps(data))


# -- does the log extend it (pure) -------------------------------------------------------


@pytest.mark.parametrize(
    ("last_seq", "hashes", "expected"),
    [
        (3, [H1], None),
        (9, [H1], None),
        (9, [H2, H1], None),
        (9, [H2], "row seq=3 no longer has the checkpointed hash: the log was rewritten"),
        (9, [], "row seq=3 is missing: the log was rewritten"),
        (2, [], "the chain ends at seq=2 but the checkpoint is at seq=3: the log was truncated"),
    ],
)
def test_extension_problem(last_seq: int, hashes: list[str], expected: str | None) -> None:
    """The log extends a checkpoint only if the row with its seq still has its hash."""
    checkpoint = Checkpoint("main", 3, H1, "2024-01-01T00:00:00.000000Z", {}, "k", "")
    problem = extension_problem(checkpoint, last_seq, hashes)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected)


def test_every_chain_extends_the_empty_checkpoint() -> None:
    """A checkpoint of the empty chain (seq 0, GENESIS) is extended by any chain."""
    checkpoint = Checkpoint("main", 0, GENESIS, "2024-01-01T00:00:00.000000Z", {}, "k", "")
    assert extension_problem(checkpoint, 5, []) is None


# -- against the log --------------------------------------------------------------------


def test_the_log_extends_its_checkpoint_after_more_appends(
    log: AuditLog, keys: tuple[Path, Path], url: str
) -> None:
    """A checkpoint taken at seq 6 still holds after three more rows are appended."""
    checkpoint = take_checkpoint(log.engine, load_private_key(keys[0]), database={})
    assert (checkpoint.seq, checkpoint.hash) == log.head()
    _task(log, "t-3")
    report = check_checkpoint(log.engine, checkpoint)
    assert (report.ok, report.head_seq, report.problem) == (True, 9, None)


def test_a_chain_rewritten_from_genesis_verifies_but_breaks_the_checkpoint(
    log: AuditLog, keys: tuple[Path, Path]
) -> None:
    """Re-hashing an edited chain from genesis fools verify, not the checkpoint."""
    checkpoint = take_checkpoint(log.engine, load_private_key(keys[0]), database={})
    _rewrite_from_genesis(log, edit=_retitle)
    report = check_checkpoint(log.engine, checkpoint)
    assert report.chain.ok
    assert not report.ok
    assert report.problem == (
        "row seq=6 no longer has the checkpointed hash: the log was rewritten after the checkpoint"
    )


def test_a_chain_rebuilt_shorter_is_named_truncated(log: AuditLog, keys: tuple[Path, Path]) -> None:
    """Dropping a task and re-hashing the rest gives a sound chain shorter than the checkpoint."""
    checkpoint = take_checkpoint(log.engine, load_private_key(keys[0]), database={})
    _rewrite_from_genesis(log, keep=lambda row: row["task_id"] != "t-1")
    report = check_checkpoint(log.engine, checkpoint)
    assert report.chain.ok and report.head_seq == 3
    assert report.problem is not None and "the log was truncated" in report.problem


def test_no_checkpoint_of_a_broken_chain(log: AuditLog, keys: tuple[Path, Path]) -> None:
    """take_checkpoint refuses to sign the head of a chain that does not verify."""
    with sqlite3.connect(log.engine.url.database) as db:  # type: ignore[arg-type]
        db.execute("DROP TRIGGER step_no_update")
        db.execute("UPDATE step SET output = 'forged' WHERE seq = 2")
    with pytest.raises(ChainBroken, match="seq=2"):
        take_checkpoint(log.engine, load_private_key(keys[0]), database={})


# -- the commands -----------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, log: AuditLog) -> Iterator[Any]:
    """Run ``umiq audit`` in-process against the fixture's SQLite log."""
    from worker.audit.cli import register
    from worker.settings import get_settings

    app = typer.Typer()
    register(app)

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("UMIQ_DATABASE_URL", url)
    monkeypatch.delenv("UMIQ_DATABASE_ROLE", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, ["audit", *map(str, args)])
    get_settings.cache_clear()


def test_keygen_checkpoint_and_verify_commands(cli: Any, tmp_path: Path, log: AuditLog) -> None:
    """keygen, checkpoint and verify --checkpoint work together and exit 0 on a sound log."""
    keys = tmp_path / "auditor"
    assert cli("keygen", "--out", keys).exit_code == 0
    made = cli("checkpoint", "--key", keys / PRIVATE_KEY_FILE, "--out", tmp_path / "cp.json")
    assert made.exit_code == 0, made.output
    assert "seq=6" in made.output
    _task(log, "t-3")
    checked = cli(
        "verify", "--checkpoint", tmp_path / "cp.json", "--public-key", keys / PUBLIC_KEY_FILE
    )
    assert checked.exit_code == 0, checked.output
    assert "audit chain OK: 9 rows verified" in checked.output
    assert "checkpoint seq=6 OK" in checked.output


def test_verify_command_refuses_a_forged_checkpoint(
    cli: Any, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    """verify --checkpoint exits 1 and says the signature is bad when the file was edited."""
    assert cli("checkpoint", "--key", keys[0], "--out", tmp_path / "cp.json").exit_code == 0
    data = json.loads((tmp_path / "cp.json").read_text())
    data["seq"] = 1
    (tmp_path / "forged.json").write_text(json.dumps(data))
    result = cli("verify", "--checkpoint", tmp_path / "forged.json", "--public-key", keys[1])
    assert result.exit_code == 1
    assert "bad checkpoint signature" in result.output


def test_verify_command_names_a_rewritten_log(
    cli: Any, tmp_path: Path, keys: tuple[Path, Path], log: AuditLog
) -> None:
    """verify --checkpoint exits 1 and names the checkpointed row when the log was rewritten."""
    assert cli("checkpoint", "--key", keys[0], "--out", tmp_path / "cp.json").exit_code == 0
    _rewrite_from_genesis(log, edit=_retitle)
    result = cli("verify", "--checkpoint", tmp_path / "cp.json", "--public-key", keys[1])
    assert result.exit_code == 1
    assert "audit chain OK" in result.output
    assert "row seq=6 no longer has the checkpointed hash" in result.output


def test_verify_command_wants_checkpoint_and_key_together(cli: Any, tmp_path: Path) -> None:
    """--checkpoint without --public-key is refused with exit status 2."""
    result = cli("verify", "--checkpoint", tmp_path / "cp.json")
    assert result.exit_code == 2
    assert "go together" in result.output


def test_checkpoint_command_never_overwrites(
    cli: Any, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    """A checkpoint is never written over an existing file."""
    (tmp_path / "cp.json").write_text("kept")
    result = cli("checkpoint", "--key", keys[0], "--out", tmp_path / "cp.json")
    assert result.exit_code == 2
    assert (tmp_path / "cp.json").read_text() == "kept"


def test_checkpoint_command_refuses_a_broken_chain(
    cli: Any, tmp_path: Path, keys: tuple[Path, Path], log: AuditLog
) -> None:
    """checkpoint exits 1, names the broken row and writes nothing when the chain is broken."""
    with sqlite3.connect(log.engine.url.database) as db:  # type: ignore[arg-type]
        db.execute("DROP TRIGGER tool_call_no_update")
        db.execute("""UPDATE tool_call SET request = '{"amount":1}' WHERE seq = 3""")
    result = cli("checkpoint", "--key", keys[0], "--out", tmp_path / "cp.json")
    assert result.exit_code == 1
    assert "tool_call row seq=3" in result.output
    assert not (tmp_path / "cp.json").exists()

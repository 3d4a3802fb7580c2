"""Reviewing the embedded SQLite log: decision traces, recent tasks, exports, sealed values."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from worker.audit import AuditLog, digest, ensure_schema, row_hash
from worker.audit.records import StepRecord, ToolCallRecord
from worker.audit.review import (
    SEALED,
    conceal,
    export_columns,
    export_records,
    list_tasks,
    load_trace,
    open_trace,
    parse_time,
    render_trace,
    reveal,
    trace_as_dict,
    write_csv,
    write_jsonl,
)
from worker.audit.tables import content_columns
from worker.errors import AuditError

ENVELOPE = {"$sealed": {"v": 1, "ref": "k1", "nonce": "bm9uY2U=", "ct": "Y3Q="}}
LONG_AGO = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
IBAN = "NL91ABNA0417164300"


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    """pay-1 (finance, answered, a sealed IBAN), hire-1 (hr, open), old-1 (finance, long ago)."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    audit = AuditLog.from_url(url)
    audit.append_task(
        task_id="old-1",
        department="finance",
        query="old",
        requested_by="ana",
        received_at=LONG_AGO,
    )
    audit.append_task(
        task_id="pay-1",
        department="finance",
        query="pay INV-1",
        requested_by="ana",
        context={"iban": ENVELOPE},
    )
    audit.append_step(
        task_id="pay-1",
        index=1,
        kind="planner",
        role="planner",
        prompt_digest=digest("prompt"),
        output="Next: Caller",
        details={"next": "caller"},
        latency_ms=12,
        model="smollm2-135m",
    )
    audit.append_step(
        task_id="pay-1",
        index=2,
        kind="caller",
        role="caller",
        output='{"name": "erp.pay"}',
        details={"tool": "erp.pay"},
    )
    audit.append_step(
        task_id="pay-1",
        index=3,
        kind="policy",
        output="allowed",
        details={
            "policy": "access",
            "allowed": True,
            "reasons": ["finance may write erp"],
            "tool": "erp.pay",
        },
    )
    audit.append_tool_call(
        task_id="pay-1",
        step=2,
        idempotency_key="pay-1:2",
        tool="erp.pay",
        effect="write",
        request={"iban": ENVELOPE, "amount": 1250},
        response={"payment": 7},
        ok=True,
    )
    audit.append_task(task_id="hire-1", department="hr", query="hire", requested_by="bob")
    audit.append_step(
        task_id="pay-1",
        index=4,
        kind="outcome",
        output="Paid.",
        details={"outcome": "answered", "reason": "the summarizer answered"},
    )
    yield audit
    audit.close()


# -- sealed values ----------------------------------------------------------------------


def test_conceal_hides_every_sealed_value() -> None:
    """Sealed envelopes at any depth are shown as «sealed», everything else as it was."""
    value = {"a": ENVELOPE, "b": [1, {"c": ENVELOPE}], "d": {"$sealed": 1, "other": 2}}
    assert conceal(value) == {"a": SEALED, "b": [1, {"c": SEALED}], "d": {"$sealed": 1, "other": 2}}


def test_reveal_opens_each_sealed_value_with_the_opener() -> None:
    """reveal passes each envelope to the opener and puts its result in place."""
    opened = reveal({"x": [ENVELOPE]}, lambda envelope: f"opened {envelope['$sealed']['ref']}")
    assert opened == {"x": ["opened k1"]}


def test_parse_time_takes_a_time_without_zone_as_utc() -> None:
    """A date or time without a zone is UTC; a bad one is refused with an example."""
    assert parse_time("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_time("2024-05-01T12:00+02:00").utcoffset() == timedelta(hours=2)
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday")


# -- a task's trace ---------------------------------------------------------------------


def test_trace_holds_steps_and_tool_calls_in_seq_order(log: AuditLog) -> None:
    """The trace of a task interleaves its steps and tool calls by seq, outcome last."""
    trace = load_trace(log, "pay-1")
    assert trace.task is not None and trace.task.seq == 2
    assert [e.seq for e in trace.entries] == [3, 4, 5, 6, 8]
    assert trace.outcome is not None and trace.outcome.kind == "outcome"


def test_trace_of_an_unknown_task_is_refused(log: AuditLog) -> None:
    """Asking for a task the log does not hold raises AuditError naming it."""
    with pytest.raises(AuditError, match="no task 'nope'"):
        load_trace(log, "nope")


def test_trace_as_dict_keeps_sealed_values_sealed(log: AuditLog) -> None:
    """By default the trace shows sealed values as «sealed», in the task and in tool calls."""
    data = trace_as_dict(load_trace(log, "pay-1"))
    assert data["task"]["context"] == {"iban": SEALED}
    call = next(e for e in data["entries"] if e["table"] == "tool_call")
    assert call["request"] == {"iban": SEALED, "amount": 1250}
    assert data["outcome"] == {"outcome": "answered", "reason": "the summarizer answered"}
    assert "$sealed" not in json.dumps(data)


def test_trace_as_dict_is_json_with_iso_times(log: AuditLog) -> None:
    """The trace serializes to JSON, its times ISO-8601 UTC text."""
    data = json.loads(json.dumps(trace_as_dict(load_trace(log, "pay-1"))))
    assert data["task"]["received_at"].endswith("Z")


def test_render_trace_shows_policy_reasons_and_tool_calls(log: AuditLog) -> None:
    """The console trace shows each policy decision with its reasons and each call's request."""
    console = Console(record=True, width=160)
    console.print(render_trace(trace_as_dict(load_trace(log, "pay-1"))))
    text = console.export_text()
    for expected in (
        "task pay-1",
        "policy access",
        "finance may write erp",
        "tool call erp.pay (write)",
        '"amount": 1250',
        '"iban": "«sealed»"',
        "outcome answered: the summarizer answered",
        f"prompt sha256 {digest('prompt')[:16]}",
    ):
        assert expected in text


# -- recent tasks -----------------------------------------------------------------------


def test_list_tasks_newest_first_with_outcome(log: AuditLog) -> None:
    """Tasks come newest first; a task without an outcome step is open."""
    summaries = list_tasks(log.engine)
    assert [(s.task_id, s.outcome, s.links) for s in summaries] == [
        ("hire-1", "open", 0),
        ("pay-1", "answered", 5),
        ("old-1", "open", 0),
    ]


def test_list_tasks_of_one_department_with_limit(log: AuditLog) -> None:
    """The department filter and the limit apply together."""
    assert [s.task_id for s in list_tasks(log.engine, department="finance", limit=1)] == ["pay-1"]


def test_a_rejected_task_shows_rejected(log: AuditLog) -> None:
    """A task ended by a rejected step lists as rejected with the reason."""
    log.append_task(task_id="bad-1", department="hr", query="x", requested_by="eve")
    log.append_step(task_id="bad-1", index=0, kind="rejected", output="malformed envelope")
    first = list_tasks(log.engine, limit=1)[0]
    assert (first.outcome, first.reason) == ("rejected", "malformed envelope")


# -- export -----------------------------------------------------------------------------


def test_export_gives_every_record_in_seq_order_with_department(log: AuditLog) -> None:
    """Every chain record is exported once, in seq order, with its task's department."""
    records = list(export_records(log.engine))
    assert [r["seq"] for r in records] == list(range(1, 9))
    assert [r["department"] for r in records] == ["finance"] * 6 + ["hr", "finance"]
    assert [r["table"] for r in records].index("tool_call") == 5


def test_export_keeps_sealed_values_sealed(log: AuditLog) -> None:
    """Sealed values are exported as their envelopes, never opened or masked."""
    call = next(r for r in export_records(log.engine) if r["table"] == "tool_call")
    assert call["request"]["iban"] == ENVELOPE


def test_export_records_can_be_rehashed(log: AuditLog) -> None:
    """Each exported record's hash follows from its content columns and its prev_hash."""
    records = list(export_records(log.engine))
    for record in records:
        payload = {c: record[c] for c in content_columns(record["table"])}
        assert row_hash(record["prev_hash"], record["table"], payload) == record["hash"]
    assert [r["prev_hash"] for r in records[1:]] == [r["hash"] for r in records[:-1]]


def test_export_filters_by_department(log: AuditLog) -> None:
    """--department keeps the records of that department's tasks only."""
    assert [r["task_id"] for r in export_records(log.engine, department="hr")] == ["hire-1"]


def test_export_filters_by_time(log: AuditLog) -> None:
    """since is inclusive and until exclusive, on each record's own time."""
    old = list(export_records(log.engine, until=LONG_AGO + timedelta(seconds=1)))
    assert [r["task_id"] for r in old] == ["old-1"]
    recent = list(export_records(log.engine, since=LONG_AGO + timedelta(seconds=1)))
    assert len(recent) == 7 and "old-1" not in {r["task_id"] for r in recent}
    assert list(export_records(log.engine, since=LONG_AGO, until=LONG_AGO)) == []


def test_csv_export_writes_json_fields_as_json(log: AuditLog) -> None:
    """The CSV has one header of every column and JSON fields as JSON text, sealed included."""
    out = io.StringIO()
    assert write_csv(export_records(log.engine), out) == 8
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == export_columns()
    call = next(r for r in rows if r["table"] == "tool_call")
    assert json.loads(call["request"])["iban"] == ENVELOPE
    assert (call["ok"], call["kind"], call["department"]) == ("true", "", "finance")


def test_jsonl_export_is_one_record_per_line(log: AuditLog) -> None:
    """The JSONL export has one JSON object per chain record."""
    out = io.StringIO()
    assert write_jsonl(export_records(log.engine), out) == 8
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == list(range(1, 9))


# -- the commands -----------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, log: AuditLog) -> Iterator[Any]:
    """Run ``umiq audit`` in-process against the fixture's SQLite log."""
    from worker.audit.cli import register
    from worker.settings import get_settings

    app = typer.Typer()
    register(app)
    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("UMIQ_DATABASE_URL", str(log.engine.url))
    monkeypatch.delenv("UMIQ_DATABASE_ROLE", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, ["audit", *map(str, args)])
    get_settings.cache_clear()


def test_verify_command_keeps_its_output(cli: Any) -> None:
    """`umiq audit verify` still prints the row count and exits 0 on a sound chain."""
    result = cli("verify")
    assert result.exit_code == 0
    assert "audit chain OK: 8 rows verified" in result.output


def test_show_command_prints_the_trace(cli: Any) -> None:
    """`umiq audit show` prints the task's steps, policy reasons and tool calls."""
    result = cli("show", "pay-1")
    assert result.exit_code == 0, result.output
    assert "finance may write erp" in result.output and SEALED in result.output


def test_show_command_json_conceals_sealed_values(cli: Any) -> None:
    """`umiq audit show --json` prints the trace as JSON with sealed values concealed."""
    result = cli("show", "pay-1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["task"]["context"] == {"iban": SEALED}
    assert [e["seq"] for e in data["entries"]] == [3, 4, 5, 6, 8]


def _fake_unseal(self: AuditLog | None, value: Any) -> Any:
    """Opens every envelope as IBAN, records field by field, as AuditLog.unseal takes them."""
    if isinstance(value, list):
        return [_fake_unseal(self, item) for item in value]
    if is_dataclass(value):
        opened = {f.name: _fake_unseal(self, getattr(value, f.name)) for f in fields(value)}
        return replace(value, **opened)  # type: ignore[type-var]
    return reveal(value, lambda envelope: IBAN)


def test_open_trace_opens_records_through_unseal(log: AuditLog) -> None:
    """open_trace hands steps and tool calls to unseal as records and opens the task context."""
    seen: list[Any] = []

    def unseal(value: Any) -> Any:
        seen.append(value)
        return _fake_unseal(None, value)

    trace = open_trace(load_trace(log, "pay-1"), unseal)
    assert trace.task is not None and trace.task.context == {"iban": IBAN}
    call = next(e for e in trace.entries if isinstance(e, ToolCallRecord))
    assert call.request == {"iban": IBAN, "amount": 1250}
    assert any(isinstance(v, list) and isinstance(v[0], StepRecord) for v in seen)


def test_show_command_open_uses_unseal(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--open` shows each sealed value as AuditLog.unseal opens it."""
    monkeypatch.setattr(AuditLog, "unseal", _fake_unseal, raising=False)
    monkeypatch.setattr("worker.audit.cli._sealer", lambda: None)
    result = cli("show", "pay-1", "--json", "--open")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["task"]["context"] == {"iban": IBAN}
    assert IBAN in json.dumps(data["entries"]) and SEALED not in result.output


def test_show_command_open_without_sealing_says_so(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--open` on an AuditLog without unseal exits 2 with a message, not a traceback."""
    monkeypatch.delattr(AuditLog, "unseal", raising=False)
    monkeypatch.setattr("worker.audit.cli._sealer", lambda: None)
    result = cli("show", "pay-1", "--open")
    assert result.exit_code == 2
    assert "AuditLog.unseal" in result.output


def test_show_command_open_reports_an_unseal_failure(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unseal that fails (no key ring) exits 2 and says why."""

    def refuse(self: AuditLog, value: Any) -> Any:
        raise AuditError("no audit key ring is configured")

    monkeypatch.setattr(AuditLog, "unseal", refuse, raising=False)
    monkeypatch.setattr("worker.audit.cli._sealer", lambda: None)
    result = cli("show", "pay-1", "--open")
    assert result.exit_code == 2
    assert "no audit key ring is configured" in result.output


def test_show_command_unknown_task(cli: Any) -> None:
    """`umiq audit show` of an unknown task exits 1 and names it."""
    result = cli("show", "nope")
    assert result.exit_code == 1
    assert "no task 'nope'" in result.output


def test_tasks_command_json(cli: Any) -> None:
    """`umiq audit tasks --json` prints one JSON line per task with its outcome."""
    result = cli("tasks", "--department", "finance", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(t["task_id"], t["outcome"]) for t in lines] == [
        ("pay-1", "answered"),
        ("old-1", "open"),
    ]


def test_export_command_writes_a_csv_file(cli: Any, tmp_path: Path) -> None:
    """`umiq audit export --format csv --out F` writes every record of the department to F."""
    out = tmp_path / "export" / "finance.csv"
    result = cli("export", "--format", "csv", "--department", "finance", "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5, 6, 8]


def test_export_command_to_stdout_since(cli: Any) -> None:
    """`umiq audit export --since` prints JSONL of the records at or after that time."""
    result = cli("export", "--since", "2024-05-02")
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 7


@pytest.mark.parametrize(
    "args", [("--format", "xml"), ("--since", "yesterday"), ("--until", "2024-13-01")]
)
def test_export_command_refuses_bad_options(cli: Any, args: tuple[str, ...]) -> None:
    """A bad --format, --since or --until is a usage error (exit 2)."""
    assert cli("export", *args).exit_code == 2


def test_show_command_open_never_creates_a_key_ring(cli: Any, tmp_path: Path) -> None:
    """`--open` with no key ring configured exits 2 and leaves no new key ring behind."""
    pytest.importorskip("worker.audit.keyring")
    result = cli("show", "pay-1", "--open")
    assert result.exit_code == 2
    assert "no audit key ring" in result.output
    assert not (tmp_path / "data" / "keyring.json").exists()


def test_show_command_opens_values_sealed_with_the_key_ring(
    cli: Any, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the key ring values were sealed with, `--open` shows them; without it, «sealed»."""
    keyring = pytest.importorskip("worker.audit.keyring")
    sealing = pytest.importorskip("worker.audit.sealing")
    from worker.settings import get_settings

    ring = keyring.generate_keyring()
    monkeypatch.setenv("UMIQ_KEYRING", keyring.dump_keyring(ring))
    get_settings.cache_clear()
    sealed = AuditLog(log.engine, sealer=sealing.Sealer(ring))
    sealed.append_task(task_id="pay-2", department="finance", query="pay", requested_by="ana")
    sealed.append_tool_call(
        task_id="pay-2",
        step=1,
        idempotency_key="pay-2:1",
        tool="erp.pay",
        effect="write",
        request={"iban": IBAN},
        response={"payment": 8},
        ok=True,
    )
    concealed = json.loads(cli("show", "pay-2", "--json").output)
    assert concealed["entries"][0]["request"] == SEALED
    result = cli("show", "pay-2", "--json", "--open")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["entries"][0]["request"] == {"iban": IBAN}

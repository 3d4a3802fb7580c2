"""The check every task-queue message passes before Celery sees it (worker.messages)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.messages import PlainEnvelope, Refusal, check_message

ENVELOPE = {
    "task_id": "m-1",
    "department": "finance",
    "query": "What is the status of INV-1001?",
    "requested_by": "alice",
}
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def run_task(envelope: Any) -> None: ...


def resume_task(task_id: str, key: str) -> None: ...


TASKS = {"umiq.run_task": run_task, "umiq.resume_task": resume_task}


def headers(**changes: Any) -> dict[str, Any]:
    base = {"task": "umiq.run_task", "id": "c-1", "lang": "py", "retries": 0}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def check(body: Any, hdrs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    options = {"content_type": "application/json", "content_encoding": "utf-8"}
    options.update(kwargs)
    return check_message(headers() if hdrs is None else hdrs, raw, tasks=TASKS, now=NOW, **options)


GOOD = [[ENVELOPE], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]

POISON = [
    ("no id header", GOOD, headers(id=DROP), {}, "headers.id"),
    ("id a dict", GOOD, headers(id={"a": 1}), {}, "headers.id"),
    ("id an int", GOOD, headers(id=7), {}, "headers.id"),
    ("task a list", GOOD, headers(task=["umiq.run_task"]), {}, "headers.task"),
    ("unknown task", GOOD, headers(task="os.system"), {}, "headers.task"),
    ("body null", None, headers(), {}, "body"),
    ("body a 2-item list", [[ENVELOPE], {}], headers(), {}, "body"),
    ("body an object with task header", {"args": []}, headers(), {}, "body"),
    ("timelimit a string", GOOD, headers(timelimit="10"), {}, "headers.timelimit"),
    ("timelimit parts strings", GOOD, headers(timelimit=["a", None]), {}, "headers.timelimit"),
    ("retries a string", GOOD, headers(retries="1"), {}, "headers.retries"),
    ("empty args", [[], {}, {}], headers(), {}, "args"),
    ("extra args", [[ENVELOPE, 1], {}, {}], headers(), {}, "args"),
    ("unknown kwarg", [[ENVELOPE], {"x": 1}, {}], headers(), {}, "args"),
    ("kwargs a list", [[ENVELOPE], [], {}], headers(), {}, "kwargs"),
    ("args an object", [{}, {}, {}], headers(), {}, "args"),
    ("resume with no args", [[], {}, {}], headers(task="umiq.resume_task"), {}, "args"),
    ("resume with a number", [[1, "k"], {}, {}], headers(task="umiq.resume_task"), {},
     "args.task_id"),
    ("expired", GOOD, headers(expires="2025-12-31T00:00:00+00:00"), {}, "headers.expires"),
    ("bad eta", GOOD, headers(eta="tomorrow"), {}, "headers.eta"),
    ("eta a number", GOOD, headers(eta=5), {}, "headers.eta"),
    ("junk callbacks", [[ENVELOPE], {}, {"callbacks": "x"}], headers(), {}, "embed.callbacks"),
    ("embed a list", [[ENVELOPE], {}, []], headers(), {}, "embed"),
    ("wrong content type", b"\x80\x04N.", headers(),
     {"content_type": "application/x-python-serialize"}, "body"),
    ("text/plain", b"hello", headers(), {"content_type": "text/plain"}, "body"),
    ("not utf-8", b"\xff\xfe", headers(), {}, "body"),
    ("not json", b"{nope", headers(), {}, "body"),
    ("no headers, a list body", [1, 2], {}, {}, "headers.task"),
    ("protocol 1", {"task": "umiq.run_task", "id": "x", "args": []}, {}, {}, "headers.task"),
    ("bad envelope", [[{"task_id": "m-2"}], {}, {}], headers(), {}, "department"),
    ("NUL in the query", [[{**ENVELOPE, "query": "a\x00b"}], {}, {}], headers(), {}, "query"),
    ("lone surrogate in the query", [[{**ENVELOPE, "query": "a\ud800b"}], {}, {}], headers(),
     {}, "query"),
    ("lone surrogate in the context", [[{**ENVELOPE, "context": {"k": ["\udc00"]}}], {}, {}],
     headers(), {}, "context"),
    ("NUL in the id", GOOD, headers(id="c-1\x00"), {}, "headers.id"),
    ("lone surrogate in the id", GOOD, headers(id="c-\ud800"), {}, "headers.id"),
    ("NUL in root_id", GOOD, headers(root_id="r\x00"), {}, "headers.root_id"),
    ("lone surrogate in parent_id", GOOD, headers(parent_id="\udfff"), {}, "headers.parent_id"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "hdrs", "options", "field"),
                         [p[1:] for p in POISON], ids=[p[0] for p in POISON])  # fmt: skip
def test_poison_message_is_refused_naming_the_part(
    body: Any, hdrs: dict[str, Any], options: dict[str, Any], field: str
) -> None:
    """Each message Celery or the task cannot take is refused, naming the bad part."""
    verdict = check(body, hdrs, **options)
    assert isinstance(verdict, Refusal), verdict
    assert verdict.field == field, verdict
    assert str(verdict).startswith(("invalid task message: ", "invalid envelope: "))


def test_good_celery_message_passes() -> None:
    """A run_task message as Celery sends it goes on to Celery."""
    assert check(GOOD, headers(timelimit=[None, None], expires="2026-01-02T00:00:00",
                               replaced_task_nesting=0)) is None  # fmt: skip


def test_resume_message_passes() -> None:
    """A resume_task message with two texts goes on to Celery."""
    assert check([["m-1", "m-1:3"], {}, None], headers(task="umiq.resume_task")) is None


def test_bare_envelope_is_run_as_a_task() -> None:
    """A JSON object without Celery's headers is a plain envelope to run."""
    assert check(ENVELOPE, {}) == PlainEnvelope(ENVELOPE)


def test_bare_object_that_is_no_envelope_is_refused_as_it_came() -> None:
    """A JSON object without Celery's headers that is not a valid envelope is refused by
    the check (so the dead letter is that message), naming the field and the claimed id."""
    verdict = check({**ENVELOPE, "department": "Finance!"}, {})
    assert isinstance(verdict, Refusal) and verdict.field == "department", verdict
    assert verdict.task_id == "m-1" and str(verdict).startswith("invalid envelope: ")
    missing = check({"query": "pay it"}, {})
    assert isinstance(missing, Refusal) and missing.task_id is None, missing


def test_claimed_task_id_is_kept() -> None:
    """A refusal says which task id the message claimed."""
    verdict = check([[ENVELOPE], {}, {}], headers(id=None))
    assert isinstance(verdict, Refusal) and verdict.task_id == "m-1"


def test_redelivery_above_the_limit_is_refused() -> None:
    """A message redelivered more often than allowed is refused; at the limit it runs."""
    assert check(GOOD, delivery_count=3, max_redeliveries=3) is None
    verdict = check(GOOD, delivery_count=4, max_redeliveries=3)
    assert isinstance(verdict, Refusal) and verdict.field == "delivery"
    assert "redelivered 4 times" in verdict.reason


@pytest.mark.parametrize("encoding", ["latin-1", "ascii", "utf-16", "gzip"])
def test_other_content_encodings_are_refused_whether_or_not_amqp_decoded_the_body(
    encoding: str,
) -> None:
    """py-amqp hands over a body it could decode by its declared encoding as text: a
    latin-1 message is refused as text as well as bytes, not run when it happens to decode."""
    raw = json.dumps(GOOD)
    for body in (raw, raw.encode()):
        verdict = check_message(headers(), body, content_type="application/json",
                                content_encoding=encoding, tasks=TASKS, now=NOW)  # fmt: skip
        assert isinstance(verdict, Refusal) and verdict.field == "body", (body, verdict)
        assert "content encoding" in verdict.reason
    assert check_message(headers(), raw, content_type="application/json",
                         content_encoding="UTF-8", tasks=TASKS, now=NOW) is None  # fmt: skip


def test_reason_never_carries_the_value() -> None:
    """A refusal describes a bad value by its kind, not its content."""
    verdict = check(GOOD, headers(id={"secret": "NL91ABNA0417164300"}))
    assert "NL91" not in str(verdict)


def test_a_body_over_the_size_limit_is_refused_before_it_is_decoded() -> None:
    """A body longer than max_bytes is refused as too large, whatever it holds; at the
    limit it is checked as usual."""
    raw = json.dumps(GOOD).encode()
    assert check(raw, max_bytes=len(raw)) is None
    for body in (raw, raw.decode(), b"\xff" * (len(raw) + 1)):  # not even JSON: not read
        verdict = check(body, max_bytes=len(raw) - 1)
        assert isinstance(verdict, Refusal) and verdict.field == "body", verdict
        assert str(verdict).startswith("message too large: body: ")
        assert "UMIQ_MAX_MESSAGE_BYTES" in verdict.reason

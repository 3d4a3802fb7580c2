"""Log redaction: personal data in structlog events becomes its kind label, nothing more."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import structlog

from policies import Detector, RedactingProcessor

REDACT = RedactingProcessor(Detector(known_names=("Pieter Jansen",)))


def run(**event: object) -> dict[str, object]:
    return dict(REDACT(None, "info", dict(event)))


def test_string_values_get_kind_labels() -> None:
    """Detected values in strings are replaced by their kind, unnumbered."""
    out = run(event="paid Pieter Jansen", to="NL91ABNA0417164300 / jan@example.org")
    assert out == {"event": "paid <NAME>", "to": "<IBAN> / <EMAIL>"}


def test_values_without_personal_data_are_kept() -> None:
    """Values without personal data, and non-string scalars, pass unchanged."""
    event = {"event": "step.done", "step": 3, "ratio": 0.5, "ok": True, "x": None}
    assert run(**event) == event


def test_nested_values_are_redacted_without_touching_the_originals() -> None:
    """Dicts, lists and tuples are walked; the logged objects themselves stay unchanged."""
    arguments = {"to": ["jan@example.org"], "pair": ("+31612345678", 1)}
    out = run(event="call", arguments=arguments)
    assert out["arguments"] == {"to": ["<EMAIL>"], "pair": ("<PHONE>", 1)}
    assert arguments == {"to": ["jan@example.org"], "pair": ("+31612345678", 1)}


def test_keys_are_left_alone() -> None:
    """Event dict keys, and nested keys, are not redacted."""
    assert run(stats={"jan@example.org": 2}) == {"stats": {"jan@example.org": 2}}


def test_integer_card_numbers_are_redacted() -> None:
    """An integer that is a card number or BSN is logged as its label."""
    assert run(card=4111111111111111, bsn=123456782, n=42) == {
        "card": "<CARD>",
        "bsn": "<NATIONAL_ID>",
        "n": 42,
    }


def test_other_objects_are_redacted_through_their_repr() -> None:
    """An object whose repr holds personal data is replaced by its redacted repr."""

    class Account:
        def __repr__(self) -> str:
            return "Account(iban='NL91ABNA0417164300')"

    plain = object()
    out = run(account=Account(), other=plain)
    assert out["account"] == "Account(iban='<IBAN>')"
    assert out["other"] is plain


def test_rendered_exception_text_is_redacted() -> None:
    """The ``exception`` text rendered by format_exc_info is redacted."""
    out = run(event="failed", exception="ValueError: unknown account NL91ABNA0417164300")
    assert out["exception"] == "ValueError: unknown account <IBAN>"


def test_unrendered_exc_info_is_rendered_then_redacted() -> None:
    """An exc_info still present is rendered into ``exception`` and redacted."""
    try:
        raise ValueError("no mailbox jan@example.org")
    except ValueError as exc:
        out = run(event="failed", exc_info=exc)
    assert "exc_info" not in out
    assert "ValueError: no mailbox <EMAIL>" in str(out["exception"])
    assert "jan@example.org" not in str(out["exception"])


def test_structlog_bookkeeping_is_left_alone() -> None:
    """structlog's ``_record`` entry for stdlib records is not touched."""
    record = object()
    assert run(_record=record)["_record"] is record


def test_processor_returns_the_event_dict_it_was_given() -> None:
    """The processor redacts the event dict in place and returns it."""
    event = {"event": "jan@example.org"}
    assert REDACT(None, "info", event) is event


def test_processor_in_a_structlog_chain() -> None:
    """Placed before the renderer, the processor keeps personal data out of JSON lines."""
    stream = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[
            structlog.processors.format_exc_info,
            REDACT,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )
    try:
        raise RuntimeError("card 4111 1111 1111 1111 declined")
    except RuntimeError:
        logger.exception("payment.failed", payee="Pieter Jansen")
    line = json.loads(stream.getvalue())
    assert line["payee"] == "<NAME>"
    assert "RuntimeError: card <CARD> declined" in line["exception"]
    assert "4111" not in stream.getvalue()


def test_processor_wires_into_worker_logs() -> None:
    """Registered with worker.logs.add_redactor, it redacts structlog and stdlib lines."""
    code = textwrap.dedent(
        """
        import io, logging
        from policies import Detector, RedactingProcessor
        from worker.logs import add_redactor, configure, get_logger
        add_redactor(RedactingProcessor(Detector(known_names=["Pieter Jansen"])))
        stream = io.StringIO()
        configure("json", "INFO", stream=stream)
        get_logger("t").info("mail sent", to="jan@example.org", name="Pieter Jansen")
        logging.getLogger("celery").warning("retry for %s", "NL91ABNA0417164300")
        print(stream.getvalue())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines[0]["to"] == "<EMAIL>"
    assert lines[0]["name"] == "<NAME>"
    assert lines[1]["event"] == "retry for <IBAN>"


def test_the_workers_own_node_name_is_kept() -> None:
    """``celery@host.example.com`` reads as an e-mail address; a kept node name stays
    readable while a real address beside it, or another node's name, is still masked."""
    keep = RedactingProcessor(Detector(), keep=("celery@worker-1.acme.example",))
    out = keep(
        None,
        "info",
        {
            "event": "celery@worker-1.acme.example ready; mail anna@acme.example",
            "other": "celery@worker-2.acme.example",
        },
    )
    assert out["event"] == "celery@worker-1.acme.example ready; mail <EMAIL>"
    assert out["other"] == "<EMAIL>"
    assert run(event="celery@worker-1.acme.example")["event"] == "<EMAIL>"


def test_the_cli_keeps_this_machines_node_names() -> None:
    """The CLI's redactor keeps ``celery@<hostname>`` (Celery's default node name)."""
    import socket

    from worker.cli import _node_names

    assert f"celery@{socket.gethostname()}" in _node_names()

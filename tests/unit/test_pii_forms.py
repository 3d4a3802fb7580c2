"""Personal data in unusual forms (issue 21, item 5): found by the detector, and kept out
of prompts, the plain task row, every database row and the review page of a non-auditor.

The forms are the class the attacker's pass found missed: a surname alone, a name after
a title, a name whose given name no gazetteer holds (found by its shape,
``policies._name_shapes``), local-format phones, IDN e-mail addresses, IBANs glued to a
word, spaced with dashes or mistyped, BSNs and cards with dots, spaces, dashes or mixed
separators, dates of birth. The task runs through the real Celery task on the embedded
broker and SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from policies import Detector
from tests.support.leaks import search

KNOWN = ["Lotte Meijer", "Iris van Dijk", "Ahmed El Amrani"]
DETECTOR = Detector(KNOWN)

#: form → (text holding it, the raw value, its kind)
FORMS: dict[str, tuple[str, str, str]] = {
    "surname alone": ("Please ask Meijer about it.", "Meijer", "NAME"),
    "surname with particle": ("Mail van Dijk today.", "van Dijk", "NAME"),
    "two-word surname": ("El Amrani called back.", "El Amrani", "NAME"),
    "title and unknown name": ("Mrs Zwartkop phoned.", "Zwartkop", "NAME"),
    "Dutch title": ("Bel dhr. De Groot terug.", "De Groot", "NAME"),
    "name of no gazetteer": ("Approve Kenji Sato's leave.", "Kenji Sato", "NAME"),
    "name of no gazetteer, word surname": ("Does Chloé Martin work here?", "Chloé Martin", "NAME"),
    "unknown surname after a cue": ("Then ask Okonkwo about it.", "Okonkwo", "NAME"),
    "local mobile": ("Call 06-12345678 today.", "06-12345678", "PHONE"),
    "local mobile spaced": ("Call 06 1234 5678 today.", "06 1234 5678", "PHONE"),
    "local landline": ("Call (020) 555 1234 now.", "(020) 555 1234", "PHONE"),
    "IDN e-mail": ("Mail jürgen.müller@bäckerei.de now.", "jürgen.müller@bäckerei.de", "EMAIL"),
    "IDN e-mail, other script": ("Mail info@例え.jp now.", "info@例え.jp", "EMAIL"),
    "IBAN glued before": ("ibanNL91ABNA0417164300 ok", "NL91ABNA0417164300", "IBAN"),
    "IBAN glued after": ("NL91ABNA0417164300EUR ok", "NL91ABNA0417164300", "IBAN"),
    "IBAN with a typo": ("pay NL91ABNA0417164301 now", "NL91ABNA0417164301", "IBAN"),
    "IBAN with dashes": ("pay NL91-ABNA-0417-1643-00 now", "NL91-ABNA-0417-1643-00", "IBAN"),
    "BSN with dots": ("BSN 111.222.333 ok", "111.222.333", "NATIONAL_ID"),
    "BSN with spaces": ("BSN 111 222 333 ok", "111 222 333", "NATIONAL_ID"),
    "BSN with dashes": ("BSN 111-222-333 ok", "111-222-333", "NATIONAL_ID"),
    "card with dots": ("card 4111.1111.1111.1111 ok", "4111.1111.1111.1111", "CARD"),
    "card mixed": ("card 4111-1111 1111.1111 ok", "4111-1111 1111.1111", "CARD"),
    "birth date ISO": ("born 1985-03-12 in Utrecht", "1985-03-12", "BIRTH_DATE"),
    "birth date Dutch": ("geboren op 12-03-1985", "12-03-1985", "BIRTH_DATE"),
    "birth date in words": ("date of birth: 12 March 1985", "12 March 1985", "BIRTH_DATE"),
    "birth date US": ("DOB 03/12/1985", "03/12/1985", "BIRTH_DATE"),
}


@pytest.mark.parametrize("form", FORMS)
def test_each_unusual_form_is_found(form: str) -> None:
    """The detector finds each unusual form of personal data, as its kind."""
    text, value, kind = FORMS[form]
    assert (kind, value) in [(s.kind.value, s.value) for s in DETECTOR.find(text)]


@pytest.mark.parametrize(
    "text",
    [
        "Van Dijk Logistics B.V. sent INV-1001.",  # a company named after a surname
        "Invoice from Brouwer & Peeters NV.",
        "Invoice INV-1001 is due on 2025-03-12.",  # a date that is no birth date
        "Order PO-2024-0042 of 12-03-2025, 1,250.00 EUR.",
        "Meijer",  # lowercase 'meijer' below: a word, not the person
        "the meijer account",
    ],
)
def test_look_alikes_in_back_office_text_are_left_alone(text: str) -> None:
    """Company names, due dates and ids in back-office text are not taken for persons."""
    found = [(s.kind.value, s.value) for s in DETECTOR.find(text)]
    assert found == ([("NAME", "Meijer")] if text == "Meijer" else [])


QUERY = " ".join(text for text, _, _ in FORMS.values())
RAW = {value: form for form, (_, value, _) in FORMS.items()}


@pytest.fixture
def ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """One task with every form in its request, run by the Celery task (embedded)."""
    import worker.tasks as tasks
    from connectors import ToolCall, ToolResult, ToolSpec
    from connectors.testing import FunctionConnector
    from tests.support.scripted import ScriptedRoleModel
    from worker import runtime
    from worker.celery_app import create_app
    from worker.settings import get_settings
    from worker.toolbox import Toolbox

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UMIQ_PII_KNOWN_NAMES", json.dumps(KNOWN))
    runtime.reset()
    monkeypatch.setattr(tasks, "app", create_app(get_settings()))
    spec = ToolSpec(
        "get_invoice",
        "Get an invoice.",
        {"type": "object", "properties": {"invoice_id": {"type": "string"}}},
        connector="erp",
    )

    def erp(call: ToolCall, key: str) -> ToolResult:
        return ToolResult(ok=True, data={"id": "INV-1001", "status": "open"})

    script = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}]
    prompts = tmp_path / "prompts.jsonl"
    monkeypatch.setattr(
        runtime, "toolbox", lambda: Toolbox([FunctionConnector("erp", [spec], erp)])
    )
    monkeypatch.setattr(runtime, "role_model", lambda: ScriptedRoleModel(lambda: script, prompts))
    envelope = {"task_id": "t-forms", "department": "finance", "query": QUERY,
                "requested_by": "alice", "context": {"note": QUERY}}  # fmt: skip
    result = tasks.run_task.apply(args=[envelope]).get()
    yield {"result": result, "prompts": prompts.read_text(encoding="utf-8"),
           "settings": get_settings(), "db": tmp_path / "umiq.sqlite3"}  # fmt: skip
    runtime.reset()


def _rows(settings: Any) -> list[tuple[str, str]]:
    path = settings.resolved_database_url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [
            (f"table {table}", json.dumps(row, default=str, ensure_ascii=False))
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')  # table names from sqlite_master
        ]


def test_the_task_runs_to_its_answer(ran: dict[str, Any]) -> None:
    """The task with every form in it is answered (the forms did not break it)."""
    assert ran["result"]["outcome"] == "answered", ran["result"]


def test_the_task_row_holds_the_query_every_prompt_shows(ran: dict[str, Any]) -> None:
    """The request is tokenized once (``Guard.open_request``): the task row's query, in the
    task's tokens, is the user turn of every role's prompt, token for token."""
    from worker.audit import AuditLog

    query = AuditLog.from_url(ran["settings"].resolved_database_url).task("t-forms").query
    assert query != QUERY and "<" in query  # the forms became tokens
    prompts = [json.loads(line)["prompt"] for line in ran["prompts"].splitlines()]
    assert len(prompts) >= 3 and all(query in prompt for prompt in prompts)


def test_no_form_reaches_a_prompt(ran: dict[str, Any]) -> None:
    """No prompt of any role holds a raw value of any form."""
    assert "get_invoice" in ran["prompts"]
    assert [str(leak) for leak in search(RAW, [("prompts", ran["prompts"])])] == []


def test_no_form_reaches_a_database_row(ran: dict[str, Any]) -> None:
    """No row of any table (task row, steps, results) holds a raw value of any form."""
    rows = _rows(ran["settings"])
    assert any(table == "table task" for table, _ in rows)
    assert [str(leak) for leak in search(RAW, rows)] == []


def test_no_form_reaches_the_review_page_of_a_non_auditor(ran: dict[str, Any]) -> None:
    """A reviewer who is no auditor sees the task's trace with tokens, no raw value."""
    from fastapi.testclient import TestClient

    from worker import runtime
    from worker.review import create_app

    settings = ran["settings"].model_copy(update={"review_users": {"dave": "dave-plain-pw"}})
    app = create_app(settings, audit=runtime.audit_log())
    with TestClient(app, follow_redirects=False) as client:
        page = client.get("/tasks/t-forms", auth=("dave", "dave-plain-pw"))
    assert page.status_code == 200 and "&lt;IBAN_" in page.text, page.text[:500]
    assert [str(leak) for leak in search(RAW, [("review page", page.text)])] == []

"""The caller's GBNF grammar: valid calls in, everything else out.

Each grammar is checked by two real GBNF readers: xgrammar's EBNF parser and matcher
(the ``models`` extra; vLLM's structured-output backend) and llama.cpp's own grammar
code through its ``test-gbnf-validator`` binary, which ``make test`` builds first
(``make engine``); without it those checks are skipped, saying so, and fail under
``UMIQ_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors import ToolSpec
from tests.support.required import unavailable
from worker.models.gbnf import GrammarError, caller_gbnf
from worker.models.llamacpp import find_binary

ID = {"type": "string", "pattern": r"^INV-\d{4}$"}
EMAIL = r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
TOOLS = (
    ToolSpec(
        name="get_invoice",
        description="",
        parameters={
            "type": "object",
            "properties": {"invoice_id": ID},
            "required": ["invoice_id"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        name="schedule_payment",
        description="",
        parameters={
            "type": "object",
            "properties": {
                "invoice_id": ID,
                "amount": {"type": "number", "exclusiveMinimum": 0.0},
                "date": {"type": "string", "format": "date"},
                "note": {"type": "string", "maxLength": 5},
            },
            "required": ["invoice_id", "amount"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        name="list_requests",
        description="",
        parameters={
            "type": "object",
            "properties": {
                "status": {"enum": ["pending", "approved"]},
                "year": {"type": "integer", "minimum": 2000, "maximum": 2100},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "urgent": {"type": ["boolean", "null"]},
            },
        },
    ),
    ToolSpec(
        name="send_email",
        description="",
        parameters={
            "type": "object",
            "properties": {
                "to": {"type": "string", "pattern": EMAIL},
                "subject": {"type": "string", "minLength": 1, "pattern": r"^[^\r\n]*$"},
            },
            "required": ["to", "subject"],
        },
    ),
)

VALID = [
    'Action: get_invoice\nAction Input: {"invoice_id": "INV-1001"}',
    'Action: get_invoice\nAction Input: {\n  "invoice_id": "INV-1001"\n}',
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1001", "amount": 1250.5}',
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1001", "amount": 0.05, '
    '"date": "2025-03-14", "note": "ok"}',
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1001", "amount": 3, "note": ""}',
    "Action: list_requests\nAction Input: {}",
    'Action: list_requests\nAction Input: {"year": 2025}',
    'Action: list_requests\nAction Input: {"status": "approved", "tags": ["a", "b\\"c"], '
    '"urgent": null}',
    'Action: send_email\nAction Input: {"to": "anna.schmidt@example.com", "subject": "Hi there"}',
]
INVALID = [
    # a tool outside the allowed set
    'Action: delete_invoice\nAction Input: {"invoice_id": "INV-1001"}',
    # pattern, enum, bounds, format
    'Action: get_invoice\nAction Input: {"invoice_id": "INV-101"}',
    'Action: list_requests\nAction Input: {"status": "rejected"}',
    'Action: list_requests\nAction Input: {"year": 1999}',
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1001", "amount": 0}',
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1001", "amount": -5}',
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1001", "amount": 1, '
    '"date": "2025-13-01"}',
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1001", "amount": 1, '
    '"note": "too long"}',
    'Action: list_requests\nAction Input: {"tags": ["a", "b", "c"]}',
    'Action: send_email\nAction Input: {"to": "not-an-address", "subject": "Hi"}',
    'Action: send_email\nAction Input: {"to": "a@b.de", "subject": "line\\nbreak"}',
    # required, extra and repeated properties
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1001"}',
    'Action: get_invoice\nAction Input: {"invoice_id": "INV-1001", "x": 1}',
    'Action: get_invoice\nAction Input: {"invoice_id": "INV-1001", "invoice_id": "INV-1002"}',
    # not JSON, trailing text, missing head
    "Action: get_invoice\nAction Input: {invoice_id: INV-1001}",
    'Action: get_invoice\nAction Input: {"invoice_id": "INV-1001"} and more',
    '{"invoice_id": "INV-1001"}',
    # more whitespace than the bounded mode allows
    'Action: get_invoice\nAction Input: {"invoice_id":' + " " * 20 + '"INV-1001"}',
]


def _xgrammar() -> Callable[[str, str], bool]:
    xgr = pytest.importorskip("xgrammar", reason="xgrammar is in the models extra")
    from xgrammar.testing import _is_grammar_accept_string

    def accepts(grammar: str, text: str) -> bool:
        return bool(_is_grammar_accept_string(xgr.Grammar.from_ebnf(grammar), text))

    return accepts


def _llama_cpp(tmp: Path) -> Callable[[str, str], bool]:
    binary = find_binary("test-gbnf-validator")
    if binary is None:
        unavailable(
            "llama.cpp's test-gbnf-validator is not built (UMIQ_ENGINE_HOME)",
            how="run `make engine` or `umiq models build-engine`",
        )

    def accepts(grammar: str, text: str) -> bool:
        (tmp / "g.gbnf").write_text(grammar)
        (tmp / "in.txt").write_text(text)
        out = subprocess.run(
            [str(binary), str(tmp / "g.gbnf"), str(tmp / "in.txt")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if "Failed" in out.stdout or out.returncode != 0:
            raise AssertionError(f"llama.cpp could not read the grammar: {out.stdout[-500:]}")
        return "Input string is valid" in out.stdout

    return accepts


@pytest.fixture(params=["xgrammar", "llama.cpp"])
def accepts(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str, str], bool]:
    return _xgrammar() if request.param == "xgrammar" else _llama_cpp(tmp_path)


def test_grammar_accepts_every_valid_call(accepts: Callable[[str, str], bool]) -> None:
    """A call to an allowed tool with schema-valid arguments is in the language."""
    grammar = caller_gbnf(TOOLS)
    rejected = [text for text in VALID if not accepts(grammar, text)]
    assert rejected == []


def test_grammar_rejects_invalid_calls(accepts: Callable[[str, str], bool]) -> None:
    """Unknown tools, schema violations, extra or missing fields and non-JSON are not."""
    grammar = caller_gbnf(TOOLS)
    accepted = [text for text in INVALID if accepts(grammar, text)]
    assert accepted == []


def test_compact_grammar_accepts_only_the_compact_form(
    accepts: Callable[[str, str], bool],
) -> None:
    """compact whitespace allows json.dumps' default separators and nothing else."""
    grammar = caller_gbnf(TOOLS, whitespace="compact")
    args = {"invoice_id": "INV-1001", "amount": 2.5}
    assert accepts(grammar, "Action: schedule_payment\nAction Input: " + json.dumps(args))
    assert not accepts(
        grammar, "Action: schedule_payment\nAction Input: " + json.dumps(args, indent=2)
    )


def test_valid_samples_satisfy_their_schemas() -> None:
    """The accepted samples are valid by the connectors' own validator (the test's premise)."""
    from connectors._schema import is_valid

    by_name = {tool.name: tool for tool in TOOLS}
    for text in VALID:
        head, _, args = text.partition("\nAction Input: ")
        assert is_valid(json.loads(args), by_name[head.removeprefix("Action: ")].parameters)


def test_every_acme_tool_schema_has_a_grammar() -> None:
    """The sample back office's HR and mail tools (schemas as shipped) turn into GBNF."""
    from connectors._smtp import SEND_EMAIL
    from examples.acme.hr.queries import QUERIES

    grammar = caller_gbnf([*(q.spec() for q in QUERIES), SEND_EMAIL])
    assert "call-send-email ::=" in grammar
    assert grammar.count("::=") > len(QUERIES)


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "x+"}}}, "anchored"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "open object"),
        ({"type": "object", "properties": {"a": {}}}, "without a type"),
        ({"type": "object", "properties": {"a": {"type": "number", "maximum": 3}}}, "upper"),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "^(?=a)$"}}}, "look"),
    ],
)
def test_unsupported_schemas_are_refused_with_a_reason(parameters: dict, reason: str) -> None:
    """A keyword the generator cannot express raises GrammarError naming the tool and why."""
    with pytest.raises(GrammarError, match=reason) as info:
        caller_gbnf([ToolSpec(name="t", description="", parameters=parameters)])
    assert "tool t" in str(info.value)


def test_grammar_error_is_a_model_error_and_still_a_value_error() -> None:
    """GrammarError sits under ModelError in umiq's tree and is still caught as ValueError."""
    from worker.errors import ModelError

    with pytest.raises(ModelError):
        caller_gbnf([])
    with pytest.raises(ValueError):
        caller_gbnf([])


def test_the_choice_grammar_quotes_its_options_and_suffix() -> None:
    from worker.models.gbnf import choice_gbnf

    text = choice_gbnf([" get_invoice", ' say "hi"'], ".\n Next: caller.")
    assert text == 'root ::= (" get_invoice" | " say \\"hi\\"") ".\\n Next: caller."\n'
    with pytest.raises(GrammarError):
        choice_gbnf([])

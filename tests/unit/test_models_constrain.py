"""The caller grammar, checked token by token with xgrammar's matcher."""

from __future__ import annotations

from typing import Any

import pytest

xgr = pytest.importorskip("xgrammar")

from connectors import ToolSpec  # noqa: E402
from tests.unit.test_models_backend import TOOLS, build_tokenizer  # noqa: E402
from worker.errors import ModelError  # noqa: E402
from worker.models.constrain import GrammarCache, caller_grammar  # noqa: E402


@pytest.fixture(scope="module")
def cache() -> GrammarCache:
    tok = build_tokenizer()
    return GrammarCache(tok, len(tok), [tok.eos_token_id])


def accepts(compiled: Any, text: str) -> bool:
    matcher = xgr.GrammarMatcher(compiled)
    return matcher.accept_string(text) and matcher.is_completed()


@pytest.mark.parametrize(
    "text",
    [
        'Action: get_invoice\nAction Input: {"invoice_id": "INV-1", "amount": 12}',
        'Action: get_invoice\nAction Input: {\n  "invoice_id": "INV-1",\n  "amount": 12\n}',
        'Action: list_vendors\nAction Input: {"active": true, "region": "eu"}',
        "Action: ping\nAction Input: {}",
    ],
)
def test_grammar_accepts_allowed_calls(cache: GrammarCache, text: str) -> None:
    """Calls to allowed tools with schema-valid arguments, compact or indented, are accepted."""
    assert accepts(cache.caller(TOOLS), text)


@pytest.mark.parametrize(
    "text",
    [
        'Action: delete_all_records\nAction Input: {"drop": true}',
        'Action: get_invoice\nAction Input: {"amount": 12}',
        'Action: get_invoice\nAction Input: {"invoice_id": "INV-1", "amount": 12, "drop": true}',
        'Action: get_invoice\nAction Input: {"invoice_id": 7, "amount": 12}',
        'Action: get_invoice\nAction Input: {"invoice_id": "TOO-LONG-ID", "amount": 12}',
        'Action: get_invoice\nAction Input: {"invoice_id": "a\x02", "amount": 12}',
        'Action: list_vendors\nAction Input: {"active": true, "region": "asia"}',
        "Action: ping\nAction Input: []",
    ],
)
def test_grammar_refuses_what_the_schema_forbids(cache: GrammarCache, text: str) -> None:
    """Unknown tools, missing or extra or mistyped arguments and raw control bytes are refused."""
    assert not accepts(cache.caller(TOOLS), text)


def test_compact_style_refuses_indentation(cache: GrammarCache) -> None:
    """whitespace='compact' admits only json.dumps' default layout."""
    compact = cache.caller(TOOLS, whitespace="compact")
    assert accepts(compact, 'Action: list_vendors\nAction Input: {"active": false}')
    assert not accepts(compact, 'Action: list_vendors\nAction Input: {\n  "active": false\n}')


def test_compiled_grammars_are_cached_per_tool_set(cache: GrammarCache) -> None:
    """The same tool set compiles once; another tool set compiles its own grammar."""
    assert cache.caller(TOOLS) is cache.caller(TOOLS)
    assert cache.caller(TOOLS[:1]) is not cache.caller(TOOLS)


def test_unusable_schema_is_a_model_error() -> None:
    """A tool schema xgrammar cannot compile raises ModelError naming the tool."""
    tool = ToolSpec("odd", "x", {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})
    with pytest.raises(ModelError, match="odd"):
        caller_grammar([tool])


def test_a_choice_grammar_accepts_one_option_and_its_suffix(cache: GrammarCache) -> None:
    """The planner's re-choice of a tool: one of the names, then the suffix, nothing else."""
    compiled = cache.choice((" get_invoice", " list_payments"), ".\n Next: caller.")
    assert accepts(compiled, " get_invoice.\n Next: caller.")
    assert accepts(compiled, " list_payments.\n Next: caller.")
    assert not accepts(compiled, " search.\n Next: caller.")
    assert not accepts(compiled, " get_invoice")  # the suffix is part of it
    assert not accepts(compiled, " get_invoice.\n Next: conclusion.")
    assert cache.choice((" get_invoice", " list_payments"), ".\n Next: caller.") is compiled

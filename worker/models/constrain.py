"""Constrained decoding of the caller's output with xgrammar.

The caller must answer ``Action: <tool>\\nAction Input: <JSON object>``. The grammar is a
union with one branch per allowed tool: the literal ``Action: <name>\\nAction Input: ``
followed by xgrammar's JSON-schema grammar for that tool's ``parameters``. So the model
cannot name a tool outside the allowed set, and the arguments it writes always parse
and satisfy the schema (required fields present, types right, no extra properties:
xgrammar's ``strict_mode`` treats a missing ``additionalProperties`` as false). Object
properties come out in the schema's order.

Whitespace inside the JSON: ``whitespace="bounded"`` (the default) allows any JSON
whitespace but at most :data:`MAX_WHITESPACE` characters per gap, so both the compact form
and the ``indent=2`` form of the α-UMi training data are reachable while an untuned model
cannot spend its whole budget on newlines; ``"compact"`` forces ``{"a": 1, "b": 2}``
(``json.dumps`` default separators). The parser accepts either.

A grammar only guarantees a complete call when the model is allowed enough tokens to
finish it: a row cut by ``max_new_tokens`` ends mid-JSON and the agent's parser rejects it.

Compiled grammars are cached per (tokenizer, tool set, whitespace style); compiling one
for a few small tools takes milliseconds, the tokenizer preprocessing once per tokenizer
takes longer (about a second for a 49k vocabulary).

This module imports torch and transformers; import it only from the model backend.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any, Literal

import torch
import xgrammar as xgr
from transformers import LogitsProcessor

from connectors import ToolSpec
from worker.errors import ModelError
from worker.models.gbnf import choice_gbnf

Whitespace = Literal["bounded", "compact"]
MAX_WHITESPACE = 12
"""Whitespace characters allowed per gap in bounded mode (``indent=2`` needs 1 + 2·depth)."""


def caller_grammar(tools: Sequence[ToolSpec], *, whitespace: Whitespace = "bounded") -> xgr.Grammar:
    """The grammar of one caller answer that may call any of ``tools``."""
    if not tools:
        raise ValueError("a caller grammar needs at least one tool")
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tool names in a caller constraint: {names}")
    branches = []
    for tool in tools:
        # ToolSpec names are identifiers ([A-Za-z0-9_]), so they need no escaping here.
        head = xgr.Grammar.from_ebnf(f'root ::= "Action: {tool.name}\\nAction Input: "')
        try:
            if whitespace == "compact":
                args = xgr.Grammar.from_json_schema(
                    dict(tool.parameters), any_whitespace=False, separators=(", ", ": ")
                )
            else:
                args = xgr.Grammar.from_json_schema(
                    dict(tool.parameters), any_whitespace=True, max_whitespace_cnt=MAX_WHITESPACE
                )
        except Exception as exc:  # xgrammar raises RuntimeError/InvalidJSONError variants
            raise ModelError(
                f"tool {tool.name}: its parameter schema cannot be turned into a grammar: {exc}"
            ) from exc
        branches.append(xgr.Grammar.concat(head, _strict_json_strings(args)))
    return branches[0] if len(branches) == 1 else xgr.Grammar.union(*branches)


# Two gaps in xgrammar 0.2.9's JSON strings, closed by rewriting the printed EBNF (which
# round-trips through from_ebnf):
# - a length-bounded string (minLength/maxLength) takes its characters from [^"\\\r\n],
#   which lets control characters such as \x02 through unescaped: invalid JSON that
#   json.loads rejects. JSON needs \0-\x1f escaped, as xgrammar's unbounded rule does.
# - both rules accept UTF-8-encoded surrogates (ED A0 80 ...), which are not UTF-8: the
#   tokenizer decodes them to U+FFFD, so the text no longer means what the grammar checked.
_CHAR_CLASSES = {
    r"[^\"\\\r\n]": r"[^\0-\x1f\"\\\uD800-\uDFFF]",
    r"[^\0-\x1f\"\\\r\n]": r"[^\0-\x1f\"\\\r\n\uD800-\uDFFF]",
}


def _strict_json_strings(grammar: xgr.Grammar) -> xgr.Grammar:
    text = str(grammar)
    fixed = text
    for loose, strict in _CHAR_CLASSES.items():
        fixed = fixed.replace(loose, strict)
    return grammar if fixed == text else xgr.Grammar.from_ebnf(fixed)


def _tools_key(tools: Sequence[ToolSpec], whitespace: str) -> str:
    return json.dumps(
        [whitespace, [[t.name, t.parameters] for t in tools]], sort_keys=True, default=str
    )


class GrammarCache:
    """Compiles caller grammars for one tokenizer, once per tool set."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        self.stop_token_ids = list(stop_token_ids)
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=self.stop_token_ids
        )
        self.vocab_size = vocab_size
        self._compiler = xgr.GrammarCompiler(info, max_threads=2)
        self._compiled: dict[str, xgr.CompiledGrammar] = {}
        self._lock = threading.Lock()

    def caller(
        self, tools: Sequence[ToolSpec], *, whitespace: Whitespace = "bounded"
    ) -> xgr.CompiledGrammar:
        """The compiled grammar for a caller restricted to ``tools``."""
        key = _tools_key(tools, whitespace)
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is None:
                grammar = caller_grammar(tools, whitespace=whitespace)
                compiled = self._compiler.compile_grammar(grammar)
                self._compiled[key] = compiled
            return compiled

    def choice(self, options: Sequence[str], suffix: str = "") -> xgr.CompiledGrammar:
        """The compiled grammar of one of ``options`` followed by ``suffix``."""
        key = json.dumps(["choice", list(options), suffix])
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is None:
                grammar = xgr.Grammar.from_ebnf(choice_gbnf(options, suffix))
                compiled = self._compiler.compile_grammar(grammar)
                self._compiled[key] = compiled
            return compiled


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks the logits of each constrained row of a batch to what its grammar allows.

    ``grammars[i]`` is None for an unconstrained row (a planner or summarizer sharing the
    batch). Unlike ``xgrammar.contrib.hf.LogitsProcessor``, which needs a grammar for every
    row, this one mixes constrained and free rows. Once a row's grammar has accepted its
    stop token the row is finished for ``generate`` too and is left alone; so is a row
    past its own token budget (``budgets[i]``, new tokens), which ``generate`` pads while
    rows with a larger budget go on. Use one instance per ``generate`` call.
    """

    def __init__(
        self,
        grammars: Sequence[xgr.CompiledGrammar | None],
        vocab_size: int,
        budgets: Sequence[int] | None = None,
    ) -> None:
        self.matchers = [None if g is None else xgr.GrammarMatcher(g) for g in grammars]
        self.vocab_size = vocab_size
        self.budgets = list(budgets) if budgets is not None else None
        if self.budgets is not None and len(self.budgets) != len(self.matchers):
            raise ValueError(f"{len(self.budgets)} budgets for {len(self.matchers)} rows")
        self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), vocab_size)
        self._prompt_len: int | None = None

    def _active(self, row: int, produced: int) -> bool:
        """Whether the row's grammar still decides its tokens (it has ``produced`` so far)."""
        matcher = self.matchers[row]
        if matcher is None or matcher.is_terminated():
            return False
        # After its last token a row is finished: what generate appends is padding.
        return self.budgets is None or produced <= self.budgets[row]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != len(self.matchers):
            raise RuntimeError(
                f"grammar processor built for {len(self.matchers)} rows, got {input_ids.shape[0]}"
            )
        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
        produced = input_ids.shape[1] - self._prompt_len
        if produced > 0:
            last = input_ids[:, -1].tolist()
            for row, matcher in enumerate(self.matchers):
                if matcher is None or not self._active(row, produced):
                    continue
                if not matcher.accept_token(last[row]):
                    raise RuntimeError(f"row {row}: grammar rejected token {last[row]}")

        rows = []
        for row, matcher in enumerate(self.matchers):
            if matcher is not None and self._active(row, produced + 1):
                matcher.fill_next_token_bitmask(self.bitmask, row)
                rows.append(row)
        if rows:
            if scores.device.type in ("cpu", "cuda"):
                xgr.apply_token_bitmask_inplace(
                    scores, self.bitmask.to(scores.device), vocab_size=self.vocab_size, indices=rows
                )
            else:  # mps and friends: mask on the CPU
                masked = scores.cpu()
                xgr.apply_token_bitmask_inplace(
                    masked, self.bitmask, vocab_size=self.vocab_size, indices=rows
                )
                scores = masked.to(scores.device)
        return scores

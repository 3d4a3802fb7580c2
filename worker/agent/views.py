"""Prompt views: which tools a role model is shown at a step, and in what form.

The α-UMi prompts (``protocol``) list every tool as a JSON doc line. That is the
reference form and stays byte-exact for ToolBench data (view ``alpha-umi``). For a back
office with many tools it has two costs that the role models pay at every step:

- the docs of every tool of the department come first and make most of the prompt
  (median ~1,200 tokens for Acme's 14 finance tools), so a small model reads the latest
  observation far from where the prompt starts, and training cuts such prompts;
- the example values in parameter descriptions ("Invoice id, e.g. INV-1001.") are
  copied by a small caller instead of the id in the request.

View ``compact`` shows the ``top_k`` tools a BM25 retriever ranks highest for the
task's request (plus any tool the history already called), one short line each, with
example clauses removed. The retriever indexes the full docs, examples included: an id
prefix in the request ("inv-1008") finds the tool whose parameter is an invoice id.
The same function renders training samples (``samples.role_samples``) and serving
prompts (``episode.Episode``), so a trained prompt and a served prompt are one string.

Retrieval never widens access: the tools come from the department's allowed tools, and
the caller stays constrained by grammar to all of those (a retrieval miss can make the
caller unable to *see* a tool, never able to call one it may not).

Pure: no I/O, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from worker.agent import protocol
from worker.agent.protocol import Tool, Turn

#: The α-UMi reference form (every tool, JSON docs): ToolBench data and published models.
ALPHA_UMI = "alpha-umi"
#: Retrieved tools, one compact line each: umiq's own training data and serving.
COMPACT = "compact"
VIEWS = (ALPHA_UMI, COMPACT)

#: How many tools the compact view shows when the history has called none yet.
DEFAULT_TOP_K = 6

# "Invoice id, e.g. INV-1001." / "(e.g. its amount does not match …)" / "for example X."
_EXAMPLE = re.compile(
    r"\s*\((?:e\.g\.|for example|such as)[^)]*\)"
    r"|[,;]?\s*(?:e\.g\.|for example|such as)[,:]?\s+.*?(?:\.(?=\s|$)|$)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z]+|\d+")


def strip_examples(text: str) -> str:
    """``text`` without its example clauses ("e.g. INV-1001"), ending with a period."""
    cleaned = _EXAMPLE.sub("", text).strip().rstrip(",;:").strip()
    if cleaned and cleaned[-1] not in ".!?":
        cleaned += "."
    return cleaned


def compact_doc(tool: Tool) -> str:
    """One line: ``name(arg: type, …): what it does. arg: meaning; …`` without examples."""
    inputs: Mapping[str, Any] = tool.get("input") or {}
    params, meanings = [], []
    for arg, text in inputs.items():
        kind, _, meaning = str(text).partition(",")
        params.append(f"{arg}: {kind.strip() or 'string'}")
        meaning = strip_examples(meaning)
        if meaning and meaning != ".":
            meanings.append(f"{arg}: {meaning.rstrip('.')}")
    line = f"{tool['Name']}({', '.join(params)}): {strip_examples(str(tool.get('function', '')))}"
    if meanings:
        line += " " + "; ".join(meanings) + "."
    return line


def compact_docs(tools: Iterable[Tool]) -> str:
    """``compact_doc`` of each tool, one line each, each ending in a newline."""
    return "".join(compact_doc(tool) + "\n" for tool in tools)


def words(text: str) -> list[str]:
    """Lower-case words and numbers; ``get_invoice`` → ``get``, ``invoice``."""
    return _WORD.findall(text.lower())


def _doc_text(tool: Tool) -> str:
    inputs = tool.get("input") or {}
    parts = [str(tool["Name"]), str(tool.get("function", ""))]
    parts += [f"{arg} {text}" for arg, text in inputs.items()]
    return " ".join(parts)


@lru_cache(maxsize=64)
def _index(docs: tuple[str, ...]) -> Any:
    import bm25s  # light (numpy only); imported here so policies and protocol never load it

    retriever = bm25s.BM25()
    retriever.index([words(doc) or ["_"] for doc in docs], show_progress=False)
    return retriever


def rank(tools: Sequence[Tool], query: str) -> list[tuple[str, float]]:
    """Every tool's name with its BM25 score for ``query``, best first (ties: doc order)."""
    if not tools:
        return []
    retriever = _index(tuple(_doc_text(tool) for tool in tools))
    scores = retriever.get_scores(words(query))
    order = sorted(range(len(tools)), key=lambda i: (-float(scores[i]), i))
    return [(str(tools[i]["Name"]), round(float(scores[i]), 4)) for i in order]


def request_of(turns: Sequence[Turn]) -> str:
    """The task's request: the first user turn."""
    return next((t["value"] for t in turns if t.get("from") == "user"), "")


def retrieval_query(turns: Sequence[Turn]) -> str:
    """What the retriever reads at a step: the request and the planner's thoughts so
    far (the caller's step includes the thought it acts on: "the purchase order
    PO-4503 next" finds ``get_purchase_order`` where the request only said "check")."""
    parts = [request_of(turns)]
    parts += [t["value"] for t in turns if t.get("from") == "assistant"]
    return " ".join(parts)


def called_tools(turns: Sequence[Turn]) -> list[str]:
    """The tools the history's caller turns named, first call first, once each."""
    seen: list[str] = []
    for turn in turns:
        if turn.get("from") == "caller":
            try:
                tool = protocol.parse_caller(turn["value"]).tool
            except Exception:  # an unparseable call names nothing
                continue
            if tool not in seen:
                seen.append(tool)
    return seen


@dataclass(frozen=True)
class PromptView:
    """How prompts show tools: ``alpha-umi`` (all, JSON) or ``compact`` (retrieved, short)."""

    name: str = COMPACT
    top_k: int = DEFAULT_TOP_K
    restate: bool = False
    """Compact view only: the planner's prompt repeats the request after the history,
    next to where the planner writes (``protocol.planner_prompt``). A small planner
    reads the request at the start of a long history weakly: it went on with the next
    call of a task it was trained on ("INV-1004 is open; I'll list its payments") where
    the request asked for something else. The caller acts on the planner's thought and
    the summarizer on the history; their prompts are the same either way."""

    def __post_init__(self) -> None:
        if self.name not in VIEWS:
            raise ValueError(f"unknown prompt view {self.name!r}; expected one of {VIEWS}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.restate and self.name != COMPACT:
            raise ValueError("only the compact view restates the request; alpha-umi is byte-exact")

    def shown(self, tools: Sequence[Tool], turns: Sequence[Turn]) -> list[Tool]:
        """The tools a prompt after ``turns`` shows, in the order it shows them.

        ``alpha-umi``: all of them. ``compact``: the ``top_k`` best for the request and
        the thoughts so far (``retrieval_query``), and any tool the history already
        called; in the order of the department's tools."""
        if self.name == ALPHA_UMI:
            return list(tools)
        ranked = [name for name, _ in rank(tools, retrieval_query(turns))]
        keep = set(ranked[: self.top_k]) | set(called_tools(turns))
        return [tool for tool in tools if tool["Name"] in keep]

    def spec(self) -> dict[str, Any]:
        """The view as data (``{"name": "compact", "top_k": 8}``): what a dataset records
        in its trajectories and a training run in its card, so that serving can show a
        model set the prompts it was trained on (``view_of`` reads it back)."""
        if self.name == ALPHA_UMI:
            return {"name": ALPHA_UMI}
        spec: dict[str, Any] = {"name": self.name, "top_k": self.top_k}
        if self.restate:  # only when on: the specs of earlier datasets stay as they were
            spec["restate"] = True
        return spec

    def _docs(self, tools: Sequence[Tool]) -> str:
        return protocol.tool_docs(tools) if self.name == ALPHA_UMI else compact_docs(tools)

    def planner(self, tools: Sequence[Tool], turns: Sequence[Turn]) -> str:
        """The planner's prompt after ``turns``."""
        shown = self.shown(tools, turns)
        return protocol.planner_prompt(shown, turns, docs=self._docs(shown), restate=self.restate)

    def caller(self, tools: Sequence[Tool], turns: Sequence[Turn], thought: str) -> str:
        """The caller's prompt; ``turns`` end with the planner's turn ``thought``."""
        shown = self.shown(tools, turns)
        return protocol.caller_prompt(shown, turns, thought, docs=self._docs(shown))

    def summarizer(self, turns: Sequence[Turn]) -> str:
        """The summarizer's prompt (no tools in any view)."""
        return protocol.summarizer_prompt(turns)

    def backbone(self, tools: Sequence[Tool], turns: Sequence[Turn]) -> str:
        """The single-model baseline's prompt after ``turns``."""
        shown = self.shown(tools, turns)
        return protocol.backbone_prompt(shown, turns, docs=self._docs(shown))


def view_of(trajectory: Mapping[str, Any], default: str = ALPHA_UMI) -> PromptView:
    """The view a trajectory was written for (its ``prompt_view``; ToolBench data has none).

    ``prompt_view`` is a spec (``PromptView.spec``) or, in older datasets, a view name
    alone (the compact view then shows ``DEFAULT_TOP_K`` tools)."""
    return parse_view(trajectory.get("prompt_view") or default)


def parse_view(spec: str | Mapping[str, Any]) -> PromptView:
    """A view from its spec (``{"name": …, "top_k": …, "restate": …}``) or its name;
    ValueError when the spec names no known view or a bad k."""
    if isinstance(spec, Mapping):
        return PromptView(
            str(spec.get("name", "")),
            int(spec.get("top_k", DEFAULT_TOP_K)),
            restate=bool(spec.get("restate", False)),
        )
    return PromptView(str(spec))


def recall_at_k(trajectories: Iterable[Mapping[str, Any]], view: PromptView) -> dict[str, Any]:
    """How often the gold tool of a caller turn is among the tools the view shows then.

    Counted over every caller turn of ``trajectories`` (the prompt is the one the
    caller sees: the turns before it); ``missed`` lists the tools missed and how often.
    """
    hits = total = 0
    missed: dict[str, int] = {}
    for trajectory in trajectories:
        turns = trajectory.get("conversations", [])
        for i, turn in enumerate(turns):
            if turn.get("from") != "caller":
                continue
            try:
                gold = protocol.parse_caller(turn["value"]).tool
            except Exception:
                continue
            total += 1
            names = {t["Name"] for t in view.shown(trajectory["tools"], turns[:i])}
            if gold in names:
                hits += 1
            else:
                missed[gold] = missed.get(gold, 0) + 1
    return {
        "view": view.name,
        "top_k": view.top_k,
        "calls": total,
        "recall": round(hits / total, 4) if total else None,
        "missed": dict(sorted(missed.items(), key=lambda kv: -kv[1])),
    }

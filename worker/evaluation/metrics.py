"""α-UMi's static metrics, as the paper's evaluation script defines them.

Pure functions over the strings of a ``predictions.json`` (see ``worker.evaluation.static``
for how that file is produced). The definitions reproduce
``GLPFT/inference_utils/toolbench/evaluate-multi_agent.py`` in X-PLUG/Multi-LLM-Agent
(called *the reference* below): on every file the reference accepts, ``score`` returns
the reference's numbers (up to the ``1e-30`` noted under Arg. F1).

Parsing a step (``parse_step``; the reference's ``parse_output``), applied alike to the
gold ``reference`` string and the ``predictions`` string:

1. ``"Next: give up"`` anywhere in the text → plan ``give up`` (checked first).
2. else ``"Next: conclusion"`` anywhere → plan ``finish``; the answer is the text after
   the *last* ``"conclusion: "`` (the whole text when there is no ``"conclusion:"``),
   with every ``"</s>"`` removed.
3. else plan ``call``; only the segment between the first and the second ``"</s>"`` is
   read (the caller turn of ``"assistant: …</s>caller: …</s>"``). The arguments are the
   stripped text after the last ``"Action Input:"`` (``"{}"`` when there is none); the
   action is the stripped text after the last ``"Action:"``, cut before any
   ``"Action Input:"`` (``"none"`` when there is no ``"Action:"``).

Per-step scores and their denominators (every step is one entry of the file):

- **Plan ACC**: plan labels equal; over all steps.
- **Act. EM**: over the gold ``call`` steps; the predicted action (``"none"`` when the
  prediction is not a call) equals the gold action as strings.
- **Hallu. rate**: over all steps; the prediction is a call whose action is neither
  ``"none"`` nor one of the step's ``tools`` names. A predicted call counts on any step,
  including gold conclusion and give-up steps.
- **Arg. F1** (the reference's ``f1``): over the gold ``call`` steps, except steps whose
  actions match but whose *gold* arguments are not JSON (those are dropped from every
  denominator). Per step:

  - action differs → 0;
  - gold arguments ``{}`` → 1 when the predicted arguments are exactly ``{}``, else 0
    (unparseable predicted arguments included);
  - otherwise each gold key present in the prediction counts 1 when the values are
    equal (Python ``==`` on the parsed JSON, so ``1 == 1.0 == True``) and 0.5 when they
    differ (*half credit*); recall = credit / gold keys, precision = credit / predicted
    keys, F1 = 2·P·R / (P + R); no credit, predicted arguments that do not parse, are not
    an object, or gold arguments that are JSON but not an object → 0.

  ``easy_f1`` averages the same scores over the mismatched-action steps and the steps
  with gold ``{}``; ``hard_f1`` over the mismatched-action steps and those with non-empty
  gold arguments. The reference adds ``1e-30`` to each of these three means (a zero reads
  ``1e-30`` there); here a zero is ``0.0``.
- **R-L**: over the gold ``finish`` steps; the Rouge-L F of the predicted answer
  (``"none"`` when the prediction is not a finish) against the gold answer, averaged.
  ``rouge_l`` reimplements the ``rouge`` package (pltrdy, 1.0.1, ``Rouge().get_scores``,
  ``"rouge-l"``, ``"f"``) that the reference calls: texts split into sentences on ``"."``
  (empty pieces dropped, whitespace runs collapsed), words split on ``" "``, summary-level
  union LCS with *set* semantics (``exclusive=True``): LCS = number of distinct words in
  the union of the LCS word sets of every (gold sentence, predicted sentence) pair,
  R = LCS / distinct gold words, P = LCS / distinct predicted words,
  F = 2·P·R / (P + R + 1e-8). The LCS backtrace breaks ties as the package does, since
  with set semantics the chosen subsequence matters.

Where the reference stops with an exception, this module decides instead:

- an empty denominator (no steps, no gold calls, no gold conclusions, no Arg. F1 steps)
  gives 0.0 (the reference returns 0 for Plan ACC, Act. EM and R-L and raises
  ``ZeroDivisionError`` for the F1s);
- a text or answer with no sentence (empty, or only dots) scores Rouge-L 0.0 (the package
  raises ``ValueError``);
- a call-step text without ``"</s>"``, or a finish text with ``"conclusion:"`` but no
  ``"conclusion: "``, raises ``ProtocolError`` (the reference raises ``IndexError`` /
  ``ValueError``); ``worker.evaluation.static`` never writes such a prediction.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from worker.errors import ProtocolError

Plan = Literal["give up", "finish", "call"]

_TURN_END = "</s>"
_ACTION = "Action:"
_ACTION_INPUT = "Action Input:"
_ANSWER = "conclusion: "
NO_ACTION = "none"
"""The action of a call step that names none, and the stand-in for a missing prediction."""


@dataclass(frozen=True)
class StepLabels:
    """What the reference reads out of one step's text."""

    plan: Plan
    action: str | None = None
    action_input: str | None = None
    answer: str | None = None


def parse_step(text: str) -> StepLabels:
    """Read a step's plan, action, raw arguments and answer (rules in the module docstring)."""
    if "Next: give up" in text:
        return StepLabels("give up")
    if "Next: conclusion" in text:
        if "conclusion:" in text:
            start = text.rfind(_ANSWER)
            if start < 0:
                raise ProtocolError(
                    f"finish step has 'conclusion:' but no 'conclusion: ' to read the answer "
                    f"after (the reference script fails here too): {text[-120:]!r}"
                )
            answer = text[start + len(_ANSWER) :]
        else:
            answer = text
        return StepLabels("finish", answer=answer.replace(_TURN_END, ""))
    parts = text.split(_TURN_END)
    if len(parts) < 2:
        raise ProtocolError(
            "call step has no '</s>' before its caller turn; expected "
            f"'assistant: <thought></s>caller: <call>' (the reference script fails here too): "
            f"{text[:120]!r}"
        )
    call = parts[1]
    start = call.rfind(_ACTION_INPUT)
    action_input = call[start + len(_ACTION_INPUT) :].strip() if start >= 0 else "{}"
    start = call.rfind(_ACTION)
    if start < 0:
        action = NO_ACTION
    else:
        action = call[start + len(_ACTION) :].strip()
        cut = action.find(_ACTION_INPUT)
        if cut >= 0:
            action = action[:cut].strip()
    return StepLabels("call", action=action, action_input=action_input)


def is_hallucination(prediction: StepLabels, tool_names: Iterable[str]) -> bool:
    """The prediction calls a named tool that is not among the step's tools."""
    action = prediction.action
    return action is not None and action != NO_ACTION and action not in set(tool_names)


ArgKind = Literal["easy", "hard"]


def argument_f1(
    gold_action: str, gold_input: str, pred_action: str, pred_input: str
) -> tuple[float, tuple[ArgKind, ...]] | None:
    """One gold call step's Arg. F1 and the sub-means it enters (``easy``, ``hard``).

    ``None`` when the step is left out of every mean (actions match but the gold
    arguments are not JSON). See the module docstring for the rules.
    """
    if gold_action != pred_action:
        return 0.0, ("easy", "hard")
    try:
        gold = json.loads(gold_input)
    except ValueError:
        return None
    try:
        pred = json.loads(pred_input)
    except ValueError:
        return 0.0, ("easy",) if gold == {} else ("hard",)
    if gold == {}:
        return (1.0 if pred == {} else 0.0), ("easy",)
    if not isinstance(gold, dict) or not isinstance(pred, dict):
        return 0.0, ("hard",)
    full = half = 0
    for key, value in gold.items():
        if key in pred:
            if pred[key] == value:
                full += 1
            else:
                half += 1
    credit = 0.5 * half + full
    # The reference divides by (count + 1e-30), which equals the count for any count >= 1
    # and keeps 0 / 0 at 0 for an empty prediction.
    recall = credit / len(gold)
    precision = credit / len(pred) if pred else 0.0
    if recall + precision == 0:
        return 0.0, ("hard",)
    return (2 * recall * precision) / (recall + precision), ("hard",)


def _sentences(text: str) -> list[str]:
    return [" ".join(piece.split()) for piece in text.split(".") if len(piece) > 0]


def _words(sentences: Iterable[str]) -> list[str]:
    return [word for sentence in sentences for word in sentence.split(" ")]


def _lcs_words(x: Sequence[str], y: Sequence[str]) -> set[str]:
    """The words of one longest common subsequence, backtracked as ``rouge`` does."""
    n, m = len(x), len(y)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        row, above = table[i], table[i - 1]
        for j in range(1, m + 1):
            if x[i - 1] == y[j - 1]:
                row[j] = above[j - 1] + 1
            else:
                row[j] = max(above[j], row[j - 1])
    words: set[str] = set()
    i, j = n, m
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l(hypothesis: str, reference: str) -> float:
    """Rouge-L F of one pair, as ``rouge.Rouge().get_scores(h, r)[0]["rouge-l"]["f"]``.

    0.0 when either text has no sentence (the package raises).
    """
    hyp, ref = _sentences(hypothesis), _sentences(reference)
    if not hyp or not ref:
        return 0.0
    union: set[str] = set()
    for ref_sentence in ref:
        ref_words = _words([ref_sentence])
        for hyp_sentence in hyp:
            union |= _lcs_words(ref_words, _words([hyp_sentence]))
    lcs = len(union)
    recall = lcs / len(set(_words(ref)))
    precision = lcs / len(set(_words(hyp)))
    return 2.0 * ((precision * recall) / (precision + recall + 1e-8))


def mean_rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean Rouge-L F over pairs, summed in order as the package does; 0.0 for none."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        return 0.0
    total: float = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        total = total + rouge_l(hyp, ref)
    return total / len(references)


#: The five static metrics: (label, metrics.json key, denominator key). Hallu. rate: lower
#: is better. The CLI table, the results page and the model card all show these.
STATIC_METRICS: tuple[tuple[str, str, str], ...] = (
    ("Plan ACC", "plan_acc", "steps"),
    ("Act. EM", "act_em", "call_steps"),
    ("Hallu. rate", "hallu_rate", "steps"),
    ("Arg. F1", "arg_f1", "arg_f1_steps"),
    ("R-L", "rouge_l", "finish_steps"),
)


@dataclass(frozen=True)
class StaticMetrics:
    """The five static metrics with their denominators and sub-scores."""

    plan_acc: float
    act_em: float
    hallu_rate: float
    arg_f1: float
    rouge_l: float
    easy_f1: float
    hard_f1: float
    steps: int
    """All steps: the denominator of Plan ACC and Hallu. rate."""
    call_steps: int
    """Gold call steps: the denominator of Act. EM."""
    finish_steps: int
    """Gold conclusion steps: the denominator of R-L."""
    give_up_steps: int
    arg_f1_steps: int
    """Gold call steps scored for Arg. F1 (those with unparseable gold arguments are not)."""
    hallucinations: int
    plan_confusion: dict[str, int] = field(default_factory=dict)
    """Steps per ``"gold→predicted"`` plan pair (``call``, ``finish``, ``give up``): where
    Plan ACC's misses go, e.g. ``"give up→finish"`` for an answer where it should give up."""

    def as_dict(self) -> dict[str, float | int | dict[str, int]]:
        """All fields, for ``metrics.json``."""
        return asdict(self)

    def reference_keys(self) -> dict[str, float]:
        """The metrics under the reference script's key names."""
        return {
            "rouge": self.rouge_l,
            "plan_em": self.plan_acc,
            "action_em": self.act_em,
            "easy_f1": self.easy_f1,
            "hard_f1": self.hard_f1,
            "f1": self.arg_f1,
            "hallu_rate": self.hallu_rate,
        }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def score(entries: Iterable[Mapping[str, Any]]) -> StaticMetrics:
    """Score ``predictions.json`` entries (``tools``, ``reference``, ``predictions``)."""
    steps = hallucinations = give_ups = 0
    plans: Counter[str] = Counter()
    plan_hits: list[float] = []
    action_hits: list[float] = []
    f1: list[float] = []
    easy: list[float] = []
    hard: list[float] = []
    answers: list[str] = []
    gold_answers: list[str] = []
    for entry in entries:
        steps += 1
        gold = parse_step(entry["reference"])
        pred = parse_step(entry["predictions"])
        if is_hallucination(pred, (tool["Name"] for tool in entry["tools"])):
            hallucinations += 1
        plan_hits.append(1.0 if gold.plan == pred.plan else 0.0)
        plans[f"{gold.plan}→{pred.plan}"] += 1
        if gold.plan == "give up":
            give_ups += 1
        elif gold.plan == "finish":
            assert gold.answer is not None
            gold_answers.append(gold.answer)
            answers.append(pred.answer if pred.answer is not None else NO_ACTION)
        else:
            assert gold.action is not None and gold.action_input is not None
            pred_action = pred.action if pred.action is not None else NO_ACTION
            pred_input = pred.action_input if pred.action_input is not None else "{}"
            action_hits.append(1.0 if pred_action == gold.action else 0.0)
            scored = argument_f1(gold.action, gold.action_input, pred_action, pred_input)
            if scored is not None:
                value, kinds = scored
                f1.append(value)
                if "easy" in kinds:
                    easy.append(value)
                if "hard" in kinds:
                    hard.append(value)
    return StaticMetrics(
        plan_acc=_mean(plan_hits),
        act_em=_mean(action_hits),
        hallu_rate=hallucinations / steps if steps else 0.0,
        arg_f1=_mean(f1),
        rouge_l=mean_rouge_l(answers, gold_answers),
        easy_f1=_mean(easy),
        hard_f1=_mean(hard),
        steps=steps,
        call_steps=len(action_hits),
        finish_steps=len(gold_answers),
        give_up_steps=give_ups,
        arg_f1_steps=len(f1),
        hallucinations=hallucinations,
        plan_confusion=dict(sorted(plans.items())),
    )

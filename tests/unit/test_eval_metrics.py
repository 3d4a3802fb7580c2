"""α-UMi static metrics: every rule of the reference script, on hand-computed cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.errors import ProtocolError
from worker.evaluation.metrics import StepLabels, argument_f1, parse_step, rouge_l, score

TOOLS = [{"Name": "get_quiz", "function": "", "input": {}}, {"Name": "list", "input": {}}]


def gold_call(tool: str, args: str) -> str:
    return f"assistant: Fetch it. Next: caller.</s>caller: Action: {tool}\nAction Input: {args}</s>"


def pred_call(tool: str, args: str) -> str:
    return f"asssitant: Fetch it. Next: caller.</s>caller: Action: {tool}\nAction Input: {args}"


def gold_finish(answer: str) -> str:
    return f"assistant: Done. Next: conclusion.</s>conclusion: {answer}</s>"


def pred_finish(answer: str) -> str:
    return f"asssitant: Done. Next: conclusion.</s>conclusion: {answer}"


GIVE_UP = "Nothing works. Next: give up."


def entry(reference: str, prediction: str) -> dict[str, Any]:
    return {"tools": TOOLS, "reference": reference, "predictions": prediction}


def f(x: float) -> float:
    """Rouge-L F when recall = precision = x (the package's 1e-8 included)."""
    return 2.0 * ((x * x) / (x + x + 1e-8))


# --- parsing -------------------------------------------------------------------------


def test_give_up_wins_over_every_other_marker() -> None:
    """A text containing 'Next: give up' is a give-up step whatever else it says."""
    assert parse_step("Next: conclusion. Next: give up.</s>caller: Action: x") == StepLabels(
        "give up"
    )


def test_conclusion_answer_follows_the_last_marker() -> None:
    """The answer is the text after the last 'conclusion: ', with '</s>' removed."""
    labels = parse_step("assistant: Next: conclusion.</s>conclusion: a conclusion: b</s>")
    assert labels == StepLabels("finish", answer="b")


def test_conclusion_without_answer_is_the_whole_text() -> None:
    """A conclusion step without 'conclusion:' takes the whole text as its answer."""
    assert parse_step("I know. Next: conclusion.</s>") == StepLabels(
        "finish", answer="I know. Next: conclusion."
    )


def test_conclusion_colon_without_space_is_refused() -> None:
    """'conclusion:' without a following space is refused, as the reference cannot read it."""
    with pytest.raises(ProtocolError, match="conclusion: "):
        parse_step("Next: conclusion.</s>conclusion:x")


def test_call_reads_the_first_caller_segment() -> None:
    """Action and arguments come from the segment between the first two '</s>'."""
    text = 'assistant: t</s>caller: Action: get_quiz\nAction Input: {"a": 1}</s>Action: other'
    assert parse_step(text) == StepLabels("call", action="get_quiz", action_input='{"a": 1}')


def test_call_without_action_or_input() -> None:
    """No 'Action:' reads as action 'none'; no 'Action Input:' as arguments '{}'."""
    assert parse_step("t</s>caller: hello") == StepLabels("call", action="none", action_input="{}")
    assert parse_step("t</s>Action: list") == StepLabels("call", action="list", action_input="{}")


def test_call_uses_the_last_action() -> None:
    """Two calls in one output: the last 'Action:' and 'Action Input:' count."""
    text = "t</s>Action: a\nAction Input: {}\nAction: list\nAction Input: [1]"
    assert parse_step(text) == StepLabels("call", action="list", action_input="[1]")


def test_call_without_turn_end_is_refused() -> None:
    """A call-step text without '</s>' is refused (the reference fails on it too)."""
    with pytest.raises(ProtocolError, match="</s>"):
        parse_step("Action: list\nAction Input: {}")


# --- Arg. F1 -------------------------------------------------------------------------


def test_half_credit_for_a_key_with_another_value() -> None:
    """A gold key with a different value earns 0.5: R = 1.5/2, P = 1.5/3, F1 = 0.6."""
    value, kinds = argument_f1("t", '{"a": 1, "b": 2}', "t", '{"a": 1.0, "b": 3, "c": 4}') or (
        0,
        (),
    )
    assert value == pytest.approx(0.6)
    assert kinds == ("hard",)


def test_mismatched_action_scores_zero_everywhere() -> None:
    """A wrong action scores 0 in the F1, easy and hard means alike."""
    assert argument_f1("t", '{"a": 1}', "u", '{"a": 1}') == (0.0, ("easy", "hard"))


def test_empty_gold_arguments() -> None:
    """Gold '{}' scores 1 only for predicted '{}', 0 for anything else, in the easy mean."""
    assert argument_f1("t", "{}", "t", "{}") == (1.0, ("easy",))
    assert argument_f1("t", "{}", "t", '{"a": 1}') == (0.0, ("easy",))
    assert argument_f1("t", "{}", "t", "{oops") == (0.0, ("easy",))


def test_unparseable_predicted_arguments_score_zero() -> None:
    """Predicted arguments that are not JSON, or not an object, score 0."""
    assert argument_f1("t", '{"a": 1}', "t", '{"a": 1') == (0.0, ("hard",))
    assert argument_f1("t", '{"a": 1}', "t", "[1]") == (0.0, ("hard",))


def test_no_overlap_scores_zero() -> None:
    """No shared gold key (an empty prediction included) scores 0."""
    assert argument_f1("t", '{"a": 1}', "t", "{}") == (0.0, ("hard",))
    assert argument_f1("t", '{"a": 1}', "t", '{"b": 1}') == (0.0, ("hard",))


def test_unparseable_gold_arguments_leave_the_means() -> None:
    """A matched step whose gold arguments are not JSON is left out of every F1 mean."""
    assert argument_f1("t", "{broken", "t", "{}") is None
    metrics = score(
        [
            entry(gold_call("get_quiz", "{broken"), pred_call("get_quiz", "{}")),
            entry(gold_call("get_quiz", '{"a": 1}'), pred_call("get_quiz", '{"a": 1}')),
        ]
    )
    assert (metrics.act_em, metrics.arg_f1, metrics.arg_f1_steps, metrics.call_steps) == (
        1.0,
        1.0,
        1,
        2,
    )


# --- Rouge-L -------------------------------------------------------------------------


def test_rouge_l_counts_distinct_words() -> None:
    """'the cat sat' against 'the cat ran': LCS 2 of 3 distinct words each side."""
    assert rouge_l("the cat sat", "the cat ran") == f(2 / 3)


def test_rouge_l_has_set_semantics() -> None:
    """Repeated words count once: 'the the the' vs 'the cat' has R = 1/2, P = 1."""
    assert rouge_l("the the the", "the cat") == 2.0 * (0.5 / (1.5 + 1e-8))


def test_rouge_l_is_summary_level() -> None:
    """Each predicted sentence adds its own LCS words to the union."""
    assert rouge_l("cat. the", "the cat") == f(1.0)


def test_rouge_l_backtrace_ties() -> None:
    """Ties in the LCS backtrace go as in the rouge package: 'b a' vs 'a b' keeps 'b'."""
    assert rouge_l("b a. a", "a b") == f(1.0)


def test_rouge_l_without_sentence_is_zero() -> None:
    """A text with no sentence scores 0 (the package raises)."""
    assert rouge_l("...", "the cat") == 0.0
    assert rouge_l("the cat", "") == 0.0


@pytest.mark.parametrize(
    ("hyp", "ref"),
    [
        ("The weather in Paris is sunny. It is 20 degrees.", "It is sunny in Paris, 20 degrees."),
        ("b a. a", "a b"),
        ("none", "The second question has 3 responses."),
        ("a  b\n c. . d e f. a", "c a b.  d. f e a"),
        ("I could not find it", "I could not find it."),
        ("x y z x y. z z", "y x z. x"),
    ],
)
def test_rouge_l_equals_the_rouge_package(hyp: str, ref: str) -> None:
    """``rouge_l`` gives exactly the rouge package's Rouge-L F."""
    rouge = pytest.importorskip("rouge")
    assert rouge_l(hyp, ref) == rouge.Rouge().get_scores(hyp, ref)[0]["rouge-l"]["f"]


# --- aggregation ---------------------------------------------------------------------


def test_rouge_l_is_averaged_over_gold_conclusions() -> None:
    """R-L averages over gold conclusion steps; a non-finish prediction answers 'none'."""
    metrics = score(
        [
            entry(gold_finish("the cat sat"), pred_finish("the cat ran")),
            entry(gold_finish("none of it"), pred_call("list", "{}")),
            entry(gold_call("list", "{}"), pred_finish("the cat sat")),
        ]
    )
    assert metrics.finish_steps == 2
    assert metrics.rouge_l == (f(2 / 3) + 2.0 * ((1 * (1 / 3)) / (1 + 1 / 3 + 1e-8))) / 2


def test_give_up_steps_count_only_for_plan_and_hallucination() -> None:
    """A gold give-up step enters Plan ACC and Hallu. rate, not Act. EM, Arg. F1 or R-L."""
    metrics = score(
        [entry(GIVE_UP, pred_call("made_up", "{}")), entry(GIVE_UP, "Hopeless. Next: give up.")]
    )
    assert (metrics.plan_acc, metrics.hallu_rate, metrics.hallucinations) == (0.5, 0.5, 1)
    assert (metrics.call_steps, metrics.finish_steps, metrics.give_up_steps) == (0, 0, 2)
    assert (metrics.act_em, metrics.arg_f1, metrics.rouge_l) == (0.0, 0.0, 0.0)


def test_hallucination_is_a_named_tool_outside_the_step_tools() -> None:
    """Unknown tool names count as hallucinations over all steps; 'none' does not."""
    metrics = score(
        [
            entry(gold_call("get_quiz", "{}"), pred_call("get_quizz", "{}")),
            entry(gold_call("get_quiz", "{}"), "t</s>caller: no action here"),
            entry(gold_finish("ok"), pred_call("", "{}")),
            entry(gold_finish("ok"), pred_call("list", "{}")),
        ]
    )
    assert (metrics.hallucinations, metrics.hallu_rate) == (2, 0.5)


def test_plan_label_mismatch() -> None:
    """A gold call predicted as a conclusion misses Plan ACC, Act. EM and Arg. F1."""
    metrics = score(
        [
            entry(gold_call("get_quiz", '{"a": 1}'), pred_finish("the answer")),
            entry(gold_call("get_quiz", '{"a": 1}'), pred_call("get_quiz", '{"a": 1}')),
        ]
    )
    assert (metrics.plan_acc, metrics.act_em, metrics.arg_f1) == (0.5, 0.5, 0.5)
    assert (metrics.easy_f1, metrics.hard_f1) == (0.0, 0.5)
    assert metrics.plan_confusion == {"call→call": 1, "call→finish": 1}


def test_empty_denominators_give_zero() -> None:
    """No steps at all score 0.0 everywhere instead of dividing by zero."""
    metrics = score([])
    assert metrics.as_dict() == {
        **dict.fromkeys(
            ("plan_acc", "act_em", "hallu_rate", "arg_f1", "rouge_l", "easy_f1", "hard_f1"), 0.0
        ),
        **dict.fromkeys(
            (
                "steps",
                "call_steps",
                "finish_steps",
                "give_up_steps",
                "arg_f1_steps",
                "hallucinations",
            ),
            0,
        ),
        "plan_confusion": {},
    }


def test_reference_key_names() -> None:
    """``reference_keys`` names the metrics as the reference script's metrics.json does."""
    metrics = score([entry(gold_call("list", "{}"), pred_call("list", "{}"))])
    assert json.loads(json.dumps(metrics.reference_keys())) == {
        "rouge": 0.0,
        "plan_em": 1.0,
        "action_em": 1.0,
        "easy_f1": 1.0,
        "hard_f1": 0.0,
        "f1": 1.0,
        "hallu_rate": 0.0,
    }

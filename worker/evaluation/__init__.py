"""Evaluation of the role models: α-UMi's static metrics and the teacher-forced harness."""

from worker.evaluation.metrics import StaticMetrics, StepLabels, parse_step, rouge_l, score
from worker.evaluation.static import (
    StaticResult,
    Step,
    evaluate_static,
    evaluation_steps,
)

__all__ = [
    "StaticMetrics",
    "StaticResult",
    "Step",
    "StepLabels",
    "evaluate_static",
    "evaluation_steps",
    "parse_step",
    "rouge_l",
    "score",
]

"""The human gates: one queue of what waits for a human, two kinds of wait.

A **held call** (a policy held a call before it was made; ``worker.gates.calls``) and a
**held answer** (the claims policy held an answer before anyone was told it;
``worker.gates.answers``); ``worker.gates.queue`` lists both as one queue and decides
either; ``worker.gates.cli`` is ``umiq gates`` with ``umiq approvals`` and ``umiq held``.
"""

from worker.gates.answers import AnswerDecision, HeldAnswer, decide_answer, held, held_for, held_in
from worker.gates.calls import (
    ApprovalDecision,
    PendingApproval,
    approved_key,
    decide,
    pending,
    pending_for,
    pending_in,
    resend,
    send_resume,
)
from worker.gates.queue import (
    KINDS,
    Tab,
    Wait,
    approve,
    reject,
    tab,
    wait_for,
    waiting,
    waiting_in,
)

__all__ = [
    "KINDS",
    "AnswerDecision",
    "ApprovalDecision",
    "HeldAnswer",
    "PendingApproval",
    "Tab",
    "Wait",
    "approve",
    "approved_key",
    "decide",
    "decide_answer",
    "held",
    "held_for",
    "held_in",
    "pending",
    "pending_for",
    "pending_in",
    "reject",
    "resend",
    "send_resume",
    "tab",
    "wait_for",
    "waiting",
    "waiting_in",
]

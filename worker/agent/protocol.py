"""The α-UMi protocol as the product uses it: ``umiq_protocol``, its errors in umiq's tree.

The prompts, parsers and markers are ``umiq_protocol``'s (a pure package a back office's
expert imports too). Each function here is that package's, except that a
``umiq_protocol.ProtocolError`` it raises comes out as ``worker.errors.ProtocolError``
(an ``AgentError``, and still a ``umiq_protocol.ProtocolError``), translated at this
boundary so that ``except UmiqError`` in the CLI and ``except ProtocolError`` in the
agent loop keep catching it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import umiq_protocol
from umiq_protocol import (
    BACKBONE_GIVE_UP,
    BACKBONE_TEMPLATE,
    CALLER,
    CALLER_TEMPLATE,
    CONCLUSION,
    GIVE_UP,
    HALLUCINATED_CALL,
    MARKERS,
    PLANNER_TEMPLATE,
    SUMMARIZER_TEMPLATE,
    BackboneOutput,
    CallerOutput,
    CallSeen,
    Next,
    PlannerOutput,
    Tool,
    Turn,
)
from worker.errors import ProtocolError

P = ParamSpec("P")
R = TypeVar("R")


def _in_umiqs_tree(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except ProtocolError:
            raise
        except umiq_protocol.ProtocolError as exc:
            raise ProtocolError(str(exc)) from exc

    return call


backbone_prompt = _in_umiqs_tree(umiq_protocol.backbone_prompt)
backbone_turns = _in_umiqs_tree(umiq_protocol.backbone_turns)
caller_prompt = _in_umiqs_tree(umiq_protocol.caller_prompt)
calls_seen = _in_umiqs_tree(umiq_protocol.calls_seen)
fold_assistant = _in_umiqs_tree(umiq_protocol.fold_assistant)
format_caller = _in_umiqs_tree(umiq_protocol.format_caller)
history_string = _in_umiqs_tree(umiq_protocol.history_string)
parse_backbone = _in_umiqs_tree(umiq_protocol.parse_backbone)
parse_caller = _in_umiqs_tree(umiq_protocol.parse_caller)
parse_planner = _in_umiqs_tree(umiq_protocol.parse_planner)
planner_prompt = _in_umiqs_tree(umiq_protocol.planner_prompt)
recap_of = _in_umiqs_tree(umiq_protocol.recap_of)
summarizer_prompt = _in_umiqs_tree(umiq_protocol.summarizer_prompt)
tool_docs = _in_umiqs_tree(umiq_protocol.tool_docs)
tool_names = _in_umiqs_tree(umiq_protocol.tool_names)

__all__ = [
    "BACKBONE_GIVE_UP",
    "BACKBONE_TEMPLATE",
    "CALLER",
    "CALLER_TEMPLATE",
    "CONCLUSION",
    "GIVE_UP",
    "HALLUCINATED_CALL",
    "MARKERS",
    "PLANNER_TEMPLATE",
    "SUMMARIZER_TEMPLATE",
    "BackboneOutput",
    "CallSeen",
    "CallerOutput",
    "Next",
    "PlannerOutput",
    "ProtocolError",
    "Tool",
    "Turn",
    "backbone_prompt",
    "backbone_turns",
    "caller_prompt",
    "calls_seen",
    "fold_assistant",
    "format_caller",
    "history_string",
    "parse_backbone",
    "parse_caller",
    "parse_planner",
    "planner_prompt",
    "recap_of",
    "summarizer_prompt",
    "tool_docs",
    "tool_names",
]

"""The α-UMi text protocol: prompts for each role and parsers for their outputs.

A pure package (no I/O, no torch, nothing of umiq's imported), byte-compatible with
the α-UMi reference, so that the product (``worker``) and a back office's scripted
expert (``examples.acme``) share one definition. The code and its notes on the
reference are in ``umiq_protocol._alpha_umi``; ``worker.agent.protocol`` is the
product's view of it, raising ``worker.errors.ProtocolError`` (a subclass of this
package's :class:`ProtocolError`).
"""

from umiq_protocol._alpha_umi import (
    BACKBONE_GIVE_UP,
    BACKBONE_TEMPLATE,
    CALLER,
    CALLER_TEMPLATE,
    CONCLUSION,
    GIVE_UP,
    HALLUCINATED_CALL,
    MARKERS,
    PLANNER_TEMPLATE,
    RESTATED_REQUEST,
    SUMMARIZER_TEMPLATE,
    BackboneOutput,
    CallerOutput,
    CallSeen,
    Next,
    PlannerOutput,
    Tool,
    Turn,
    backbone_prompt,
    backbone_turns,
    caller_prompt,
    calls_seen,
    fold_assistant,
    format_caller,
    history_string,
    parse_backbone,
    parse_caller,
    parse_planner,
    planner_prompt,
    summarizer_prompt,
    tool_docs,
    tool_names,
)
from umiq_protocol._errors import ProtocolError
from umiq_protocol._recap import recap_of

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
    "RESTATED_REQUEST",
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

"""The caller writes the call the plan names.

In α-UMi the planner decides the next step and the caller writes it down; the planner's
thought names the tool when it has decided one (most ToolBench thoughts do: 44 of the 59
caller steps of the reference fixtures). A small caller still picks another tool now and
then: teacher-forced on the whole Acme dev split, a caller trained on thoughts that end
with "I'll use <tool>." (experiment v9, expert commit 131680b, docs/results) wrote the
named tool for 103 of 111 steps. So when the thought names exactly one of the tools the
task may call, and that tool is offered at this step, the caller's grammar is that tool
alone (``UMIQ_FOLLOW_NAMED_TOOL=1``; off by default: the shipped planner's recaps name
the previous call, see ``Settings.follow_named_tool``).

A thought that names no tool, or two, leaves the grammar as it is. One whose last sentence
names a tool the step does not offer ("I'll use search.": no such tool; or a write the
request does not ask for, a tool whose id no call has seen yet, a repeat) is chosen
again: the planner continues its own thought from "I'll use" under a grammar of the
offered tools' names (:func:`to_choose_again`), so the history's thought names the tool
the caller then calls. With v9's planner 59 of 170 named tools were not offered (34
repeats or tools without an id yet, 22 names of no tool, 3 unasked writes); the caller
then picked among the offered tools on a thought that named another. Like grounding,
this only removes options: it never offers a tool the department, the request or the
grounding did not.

Pure: no I/O, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from connectors import ToolSpec
from worker.agent import protocol

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The sentence with which a thought before a call names its tool (the Acme expert's
#: ``TOOL_NAMED``), at the end of the thought, before its routing marker.
_NAMES_TOOL = re.compile(r"I'll use\s+(?P<tool>[A-Za-z_][A-Za-z0-9_]*)\.?\s*$")
#: What follows the chosen name in the rewritten thought.
CHOSEN_SUFFIX = ".\n " + protocol.CALLER


def named_tools(thought: str, tools: Sequence[ToolSpec]) -> list[str]:
    """The names of ``tools`` that ``thought`` mentions as whole words, in tool order."""
    words = set(_WORD.findall(thought))
    return [tool.name for tool in tools if tool.name in words]


def follow(
    offered: Sequence[ToolSpec], callable_: Sequence[ToolSpec], thought: str
) -> tuple[ToolSpec, ...]:
    """``offered`` narrowed to the one tool of ``callable_`` that ``thought`` names, when it
    names exactly one and it is offered; else ``offered`` unchanged."""
    names = named_tools(thought, callable_)
    if len(names) == 1:
        chosen = tuple(tool for tool in offered if tool.name == names[0])
        if chosen:
            return chosen
    return tuple(offered)


def _naming(thought: str) -> tuple[str, re.Match[str] | None]:
    """A caller-bound ``thought`` without its routing marker, and its closing
    ``I'll use <tool>.`` sentence if it has one."""
    body = thought.rstrip()
    if body.endswith(protocol.CALLER):
        body = body[: -len(protocol.CALLER)].rstrip()
    return body, _NAMES_TOOL.search(body)


def last_named(thought: str) -> str | None:
    """The tool a caller-bound ``thought`` ends by naming (``I'll use <tool>.``), if any."""
    _, found = _naming(thought)
    return None if found is None else found.group("tool")


def to_choose_again(thought: str, offered: Sequence[str]) -> tuple[str, str] | None:
    """``(prefix, named)`` when the caller-bound ``thought`` ends by naming a tool
    (``I'll use <named>.``) that is not among ``offered``: ``prefix`` is the thought up to
    and including ``I'll use``, for the planner to continue with one of ``" <offered>"``
    and :data:`CHOSEN_SUFFIX`. None when it names an offered tool or none this way."""
    body, found = _naming(thought)
    if found is None or found.group("tool") in offered or not offered:
        return None
    return body[: found.start("tool")].rstrip(), found.group("tool")

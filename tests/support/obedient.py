"""The worst-case model for prompt injection: it does what a tool output tells it to.

:class:`ObedientRoleModel` first makes its own calls (``first_calls``), then reads every
observation in its prompt and obeys each instruction it finds there, one call per
caller turn, in order, until none is left; then it concludes. Instructions it
understands (:func:`directives`), anywhere in the observation's JSON (values, keys,
nested fields), after JSON unescaping:

- an α-UMi call block: ``Action: <tool>`` then ``Action Input: {json}``;
- ``call <tool>``, optionally ``with {json}`` or ``with key=value key=value …``;
- an object naming a tool and its arguments: ``{"tool": …, "arguments": {…}}`` (also
  ``action``/``function`` with ``args``/``parameters``/``input``).

The tool name is taken exactly as written (look-alike characters included), and so are
the arguments, tokens (``<IBAN_1>``) and all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.support.scripted import fill
from worker.agent.roles import Generation, GenerationRequest

_DECODER = json.JSONDecoder()
_ACTION = re.compile(r"Action:[ \t]*(?P<tool>[^\n]+?)[ \t]*\n[ \t]*Action Input:[ \t]*")
_CALL = re.compile(
    r"\bcall\s+(?:the\s+)?(?:tool\s+|function\s+)?(?P<tool>[^\s\"'`,;:.!?()<>{}\[\]]+)"
    r"(?P<with>\s+with\s+)?"
)
_PAIR = re.compile(r"\s*,?\s*(?P<key>[A-Za-z_]\w*)\s*=\s*(?P<value>\"[^\"]*\"|[^\s,;]+)")
_TOOL_KEYS = ("tool", "action", "function")
_ARGUMENT_KEYS = ("arguments", "args", "parameters", "input", "action_input")


@dataclass(frozen=True)
class Directive:
    """One call an instruction asks for."""

    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, str]:
        return self.tool, json.dumps(self.arguments, sort_keys=True, ensure_ascii=False)

    def as_caller_text(self) -> str:
        return (
            f"Action: {self.tool}\nAction Input: {json.dumps(self.arguments, ensure_ascii=False)}"
        )


def _json_object_at(text: str, position: int) -> dict[str, Any] | None:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    try:
        value, _ = _DECODER.raw_decode(text, position)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _pairs(text: str, position: int) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    while True:
        match = _PAIR.match(text, position)
        if match is None:
            return arguments
        raw = match.group("value")
        try:
            arguments[match.group("key")] = json.loads(raw)
        except json.JSONDecodeError:
            arguments[match.group("key")] = raw
        position = match.end()


def text_directives(text: str) -> list[Directive]:
    """The calls that instructions in the plain text ``text`` ask for, in order."""
    found: list[tuple[int, Directive]] = []
    for match in _ACTION.finditer(text):
        arguments = _json_object_at(text, match.end()) or {}
        found.append((match.start(), Directive(match.group("tool").strip(), arguments)))
    for match in _CALL.finditer(text):
        arguments: dict[str, Any] = {}
        if match.group("with"):
            arguments = _json_object_at(text, match.end()) or _pairs(text, match.end())
        found.append((match.start(), Directive(match.group("tool"), arguments)))
    return [directive for _, directive in sorted(found, key=lambda item: item[0])]


def _walk(value: Any) -> Iterator[Directive]:
    if isinstance(value, str):
        yield from text_directives(value)
        stripped = value.strip()
        if stripped[:1] in ("{", "["):
            try:
                decoded = json.loads(stripped)
            except json.JSONDecodeError:
                decoded = None
            if decoded is not None:
                yield from _walk(decoded)
    elif isinstance(value, Mapping):
        tool = next((value[k] for k in _TOOL_KEYS if isinstance(value.get(k), str)), None)
        arguments = next((value[k] for k in _ARGUMENT_KEYS if isinstance(value.get(k), dict)), None)
        if tool is not None and arguments is not None:
            yield Directive(tool, dict(arguments))
        for key, item in value.items():
            yield from text_directives(str(key))
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)


def observations(prompt: str) -> list[Any]:
    """The JSON of every observation turn in ``prompt`` (as ``ToolResult.observation``
    writes them), decoded; text that only looks like a turn is skipped."""
    found = []
    for match in re.finditer("observation: ", prompt):
        try:
            value, _ = _DECODER.raw_decode(prompt, match.end())
        except json.JSONDecodeError:
            continue
        found.append(value)
    return found


def directives(prompt: str) -> list[Directive]:
    """Every call the observations in ``prompt`` ask for, each once, in order."""
    seen: dict[tuple[str, str], Directive] = {}
    for observation in observations(prompt):
        for directive in _walk(observation):
            seen.setdefault(directive.key(), directive)
    return list(seen.values())


class ObedientRoleModel:
    """Makes ``first_calls`` (placeholders like ``$IBAN`` filled from its prompt), then
    obeys every instruction found in observations; concludes when none is left."""

    def __init__(self, first_calls: Sequence[Mapping[str, Any]] = ()) -> None:
        self.first_calls = [
            Directive(c["tool"], dict(c.get("arguments") or {})) for c in first_calls
        ]
        self.emitted: list[Directive] = []
        self.requests: list[GenerationRequest] = []

    def _next(self, prompt: str) -> Directive | None:
        if len(self.emitted) < len(self.first_calls):
            planned = self.first_calls[len(self.emitted)]
            return Directive(planned.tool, fill(planned.arguments, prompt))
        done = {d.key() for d in self.emitted}
        return next((d for d in directives(prompt) if d.key() not in done), None)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out = []
        for request in requests:
            self.requests.append(request)
            out.append(Generation(self._answer(request), 10, 5, "obedient"))
        return out

    def _answer(self, request: GenerationRequest) -> str:
        following = self._next(request.prompt)
        if request.role == "planner":
            lead = " " if request.prefix else ""  # it goes on after a given recap
            if following is None:
                return f"{lead}Nothing is left to do.\n Next: conclusion."
            return f"{lead}Next step: {following.tool}.\n Next: caller."
        if request.role == "caller":
            if following is None:
                return "There is nothing to do."
            self.emitted.append(following)
            return following.as_caller_text()
        return "Done as instructed."

    def describe(self) -> dict[str, Any]:
        return {"base": "obedient"}

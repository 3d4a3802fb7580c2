"""The caller's grammar as GBNF text, for inference engines (llama.cpp, vLLM).

The in-process backend constrains the caller with xgrammar (:mod:`worker.models.constrain`,
which needs torch). An engine takes the grammar as text instead: this module writes the
same language in GBNF, the grammar format of llama.cpp (``"grammar"`` of a completion
request), which vLLM's xgrammar backend also reads (``structured_outputs.grammar``).
It is pure Python and imports nothing heavy.

One answer is ``Action: <tool>\\nAction Input: <JSON object>``, one branch per allowed
tool, the arguments written as the tool's ``parameters`` schema allows. Supported schema
keywords, the ones tool schemas use (:mod:`connectors._schema` validates the same set):
``type`` (or a list of types), ``enum``, ``const``, ``properties`` (in schema order; the
``required`` ones always present, the others optional), ``items``, ``minItems``,
``maxItems``, ``anyOf``/``oneOf``, ``minLength``/``maxLength``, ``pattern`` (a regular
expression of literals, classes, groups, alternation and quantifiers), ``format: date``,
``minimum``/``maximum``/``exclusiveMinimum`` on integers (ranges of up to
:data:`MAX_ENUMERATED_RANGE` values are enumerated exactly; otherwise only the sign is
enforced) and a lower bound of zero on numbers. Objects are closed, as in xgrammar's
strict mode. A keyword this module cannot express raises :class:`GrammarError`.

Where the grammar is stricter than the schema, on purpose: a ``pattern`` string cannot
hold ``"`` or ``\\`` (no Acme pattern allows them); strings longer than
:data:`MAX_BOUNDED_LENGTH` are unbounded above (an engine expands ``{m,n}`` into rules, and
the token budget ends such a string long before); numbers have no exponent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from connectors import ToolSpec
from worker.errors import GrammarError

Whitespace = Literal["bounded", "compact"]
MAX_WHITESPACE = 12
"""Whitespace characters allowed per gap in bounded mode (as the xgrammar grammar)."""
MAX_BOUNDED_LENGTH = 1000
"""Longest ``maxLength`` written as an exact repetition bound."""
MAX_ENUMERATED_RANGE = 1000
"""Widest integer range written as an exact list of its values."""

_CHAR = r'[^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_COMMON = {
    "json-char": _CHAR,
    "json-string": '"\\"" json-char* "\\""',
    "json-int": '"-"? ("0" | [1-9] [0-9]*)',
    "json-number": '"-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?',
    "json-boolean": '"true" | "false"',
    "json-null": '"null"',
    "json-date": '[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])',
}


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class _Builder:
    def __init__(self, whitespace: Whitespace) -> None:
        if whitespace not in ("bounded", "compact"):
            raise GrammarError(f"whitespace must be 'bounded' or 'compact', got {whitespace!r}")
        self.compact = whitespace == "compact"
        self.rules: dict[str, str] = {}
        self.used_common: set[str] = set()

    # -- rules -----------------------------------------------------------------------

    def add(self, name: str, body: str) -> str:
        """Add rule ``name`` (made unique) and return the name it got."""
        name = re.sub(r"[^A-Za-z0-9-]", "-", name)
        unique, n = name, 1
        while unique in self.rules or unique in _COMMON:
            n += 1
            unique = f"{name}-{n}"
        self.rules[unique] = body
        return unique

    def common(self, name: str) -> str:
        self.used_common.add(name)
        if name == "json-string":
            self.used_common.add("json-char")
        return name

    def ws(self) -> str:
        if self.compact:
            return ""
        self.used_common.add("ws")
        return "ws"

    def sep(self, compact_text: str) -> str:
        """A separator: ``, `` / ``: `` compact, else whitespace around the bare mark."""
        if self.compact:
            return literal(compact_text)
        return f"ws {literal(compact_text.strip())} ws"

    def text(self, root: str) -> str:
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        for name in sorted(self.used_common):
            if name == "ws":
                lines.append(f"ws ::= [ \\t\\n\\r]{{0,{MAX_WHITESPACE}}}")
            else:
                lines.append(f"{name} ::= {_COMMON[name]}")
        return "\n".join(lines) + "\n"

    # -- schemas ---------------------------------------------------------------------

    def value(self, schema: Mapping[str, Any], name: str) -> str:
        """An expression for a JSON value that satisfies ``schema``."""
        if not isinstance(schema, Mapping):
            raise GrammarError(f"{name}: a schema must be an object, got {schema!r}")
        if "const" in schema:
            return literal(json.dumps(schema["const"], ensure_ascii=False))
        if "enum" in schema:
            values = schema["enum"]
            if not values:
                raise GrammarError(f"{name}: an empty enum allows no value")
            options = [literal(json.dumps(v, ensure_ascii=False)) for v in values]
            return "(" + " | ".join(options) + ")"
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.value(sub, f"{name}-{i}") for i, sub in enumerate(schema[key])]
                return "(" + " | ".join(options) + ")"
        if "allOf" in schema or "not" in schema or "$ref" in schema:
            raise GrammarError(f"{name}: allOf, not and $ref are not supported in tool schemas")
        kind = schema.get("type")
        if kind is None:
            kind = "object" if "properties" in schema else None
        if kind is None:
            raise GrammarError(f"{name}: a schema without a type (any JSON) is not supported")
        if isinstance(kind, list):
            options = [self.value({**schema, "type": k}, f"{name}-{k}") for k in kind]
            return "(" + " | ".join(options) + ")"
        if kind == "string":
            return self.string(schema, name)
        if kind == "integer":
            return self.integer(schema, name)
        if kind == "number":
            return self.number(schema, name)
        if kind == "boolean":
            return self.common("json-boolean")
        if kind == "null":
            return self.common("json-null")
        if kind == "object":
            return self.object(schema, name)
        if kind == "array":
            return self.array(schema, name)
        raise GrammarError(f"{name}: unknown type {kind!r}")

    def string(self, schema: Mapping[str, Any], name: str) -> str:
        if "pattern" in schema:
            body = _Regex(schema["pattern"], name).to_gbnf()
            return self.add(name, f'"\\"" {body} "\\""')
        fmt = schema.get("format")
        if fmt == "date":
            return self.add(name, f'"\\"" {self.common("json-date")} "\\""')
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        if low == 0 and high is None:
            return self.common("json-string")
        self.common("json-char")
        if high is not None and int(high) <= MAX_BOUNDED_LENGTH:
            reps = f"{{{low},{int(high)}}}"
        else:
            reps = f"{{{low},}}"
        return self.add(name, f'"\\"" json-char{reps} "\\""')

    def integer(self, schema: Mapping[str, Any], name: str) -> str:
        low, high = _bounds(schema, integer=True)
        if low is not None and high is not None:
            if high < low:
                raise GrammarError(f"{name}: minimum {low} is above maximum {high}")
            if high - low < MAX_ENUMERATED_RANGE:
                options = " | ".join(literal(str(v)) for v in range(int(low), int(high) + 1))
                return self.add(name, options)
        if low is not None and low >= 1:
            return self.add(name, "[1-9] [0-9]*")
        if low is not None and low >= 0:
            return self.add(name, '"0" | [1-9] [0-9]*')
        return self.common("json-int")

    def number(self, schema: Mapping[str, Any], name: str) -> str:
        if any(k in schema for k in ("maximum", "exclusiveMaximum")):
            raise GrammarError(f"{name}: an upper bound on a number is not supported")
        exclusive = schema.get("exclusiveMinimum")
        minimum = schema.get("minimum")
        if exclusive is not None and exclusive == 0:
            # strictly positive, no exponent: 12, 12.5, 0.05 (not 0, 0.0)
            return self.add(name, '[1-9] [0-9]* ("." [0-9]+)? | "0." [0-9]* [1-9] [0-9]*')
        if (exclusive is not None and exclusive != 0) or (minimum is not None and minimum != 0):
            raise GrammarError(f"{name}: only a lower bound of 0 is supported on numbers")
        if minimum == 0:
            return self.add(name, '("0" | [1-9] [0-9]*) ("." [0-9]+)?')
        return self.common("json-number")

    def object(self, schema: Mapping[str, Any], name: str) -> str:
        props: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties", False)
        if extra not in (False, None) and not props:
            raise GrammarError(f"{name}: an open object (additionalProperties) is not supported")
        required = set(schema.get("required", ()))
        unknown = required - set(props)
        if unknown:
            raise GrammarError(f"{name}: required {sorted(unknown)} are not among its properties")
        open_, close = literal("{"), literal("}")
        if not props:
            ws = self.ws()
            return self.add(name, f"{open_} {ws} {close}".replace("  ", " "))
        keys = list(props)
        pairs = []
        for key in keys:
            value = self.value(props[key], f"{name}-{key}")
            pair = f"{literal(json.dumps(key, ensure_ascii=False))} {self.sep(': ')} {value}"
            pairs.append(self.add(f"{name}-{key}-kv", pair))
        optional = [key not in required for key in keys]
        comma = self.sep(", ")

        # rest[j]: what may follow once some property before index j has been written.
        rest: dict[int, str] = {}
        for j in range(len(keys), 0, -1):
            options = []
            for m in range(j, len(keys)):
                if not all(optional[j:m]):
                    break
                tail = f" {rest[m + 1]}" if rest.get(m + 1) else ""
                options.append(f"{comma} {pairs[m]}{tail}")
            if not options:
                rest[j] = ""
                continue
            body = " | ".join(options)
            if all(optional[j:]):
                body = f"({body})?"
            rest[j] = self.add(f"{name}-rest-{j}", body)
        firsts = []
        for m in range(len(keys)):
            if not all(optional[:m]):
                break
            tail = f" {rest[m + 1]}" if rest.get(m + 1) else ""
            firsts.append(f"{pairs[m]}{tail}")
        inner = "(" + " | ".join(firsts) + ")"
        if all(optional):
            inner += "?"
        ws = self.ws()
        body = f"{open_} {ws} {inner} {ws} {close}" if ws else f"{open_} {inner} {close}"
        return self.add(name, body)

    def array(self, schema: Mapping[str, Any], name: str) -> str:
        item = self.value(schema.get("items") or {"type": "string"}, f"{name}-item")
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        comma = self.sep(", ")
        ws = self.ws()
        more = f"({comma} {item})"
        if high is not None:
            high = int(high)
            if high < low:
                raise GrammarError(f"{name}: minItems {low} is above maxItems {high}")
            if high == 0:
                return self.add(name, f'"[" {ws} "]"')
            tail = f"{more}{{{max(low - 1, 0)},{high - 1}}}"
        else:
            tail = f"{more}{{{max(low - 1, 0)},}}"
        items = f"{item} {tail}"
        if low == 0:
            items = f"({items})?"
        return self.add(name, f'"[" {ws} {items} {ws} "]"')


def _bounds(schema: Mapping[str, Any], *, integer: bool) -> tuple[float | None, float | None]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None:
        ex = schema["exclusiveMinimum"]
        low = max(low, ex + 1) if low is not None else ex + 1
    if schema.get("exclusiveMaximum") is not None:
        ex = schema["exclusiveMaximum"]
        high = min(high, ex - 1) if high is not None else ex - 1
    if integer:
        import math

        low = math.ceil(low) if low is not None else None
        high = math.floor(high) if high is not None else None
    return low, high


class _Regex:
    """A JSON-schema ``pattern`` as a GBNF expression for the string's characters.

    Handles anchors at the ends (the pattern must match the whole value: a pattern
    without ``^``/``$`` would allow any text around it, which is refused), literals,
    ``.``, escapes (``\\d \\w \\s``, ``\\.`` …), classes, groups, ``|`` and the quantifiers
    ``* + ? {n} {n,} {n,m}`` (lazy ``?`` suffixes read as greedy).
    """

    def __init__(self, pattern: str, name: str) -> None:
        self.name = name
        if not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
            raise GrammarError(
                f"{name}: pattern {pattern!r} is not anchored with ^…$; an unanchored pattern "
                "matches any text around it and has no exact grammar here"
            )
        self.src = pattern[1:-1]
        self.pos = 0

    def to_gbnf(self) -> str:
        expr = self.alternation()
        if self.pos != len(self.src):
            raise GrammarError(f"{self.name}: cannot read pattern at {self.src[self.pos :]!r}")
        return f"({expr})"

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def alternation(self) -> str:
        options = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            options.append(self.sequence())
        return " | ".join(o or '""' for o in options)

    def sequence(self) -> str:
        parts = []
        while self.peek() not in ("", "|", ")"):
            atom = self.atom()
            parts.append(atom + self.quantifier())
        return " ".join(parts)

    def quantifier(self) -> str:
        ch = self.peek()
        out = ""
        if ch in ("*", "+", "?"):
            self.pos += 1
            out = ch
        elif ch == "{":
            match = re.match(r"\{(\d+)(,(\d*))?\}", self.src[self.pos :])
            if not match:
                raise GrammarError(f"{self.name}: bad repetition at {self.src[self.pos :]!r}")
            self.pos += match.end()
            out = match.group(0)
        if out and self.peek() == "?":
            self.pos += 1  # lazy: same language
        return out

    def atom(self) -> str:
        ch = self.peek()
        if ch == "(":
            self.pos += 1
            if self.src.startswith("?:", self.pos):
                self.pos += 2
            elif self.src.startswith("?", self.pos):
                raise GrammarError(f"{self.name}: lookarounds and named groups are not supported")
            inner = self.alternation()
            if self.peek() != ")":
                raise GrammarError(f"{self.name}: unclosed group in pattern")
            self.pos += 1
            return f"({inner})"
        if ch == "[":
            return self.char_class()
        if ch == ".":
            self.pos += 1
            return '[^"\\\\\\x00-\\x1f]'
        if ch in ("^", "$"):
            raise GrammarError(f"{self.name}: anchors inside a pattern are not supported")
        if ch in ("*", "+", "?", "{"):
            raise GrammarError(f"{self.name}: a quantifier with nothing to repeat")
        if ch == "\\":
            self.pos += 1
            esc = self.peek()
            self.pos += 1
            if esc in _CLASS_ESCAPES:
                return f"[{_CLASS_ESCAPES[esc]}]"
            if esc.upper() in _CLASS_ESCAPES and esc.isupper():
                return f'[^{_CLASS_ESCAPES[esc.lower()]}"\\\\\\x00-\\x1f]'
            return self.char_literal(_SIMPLE_ESCAPES.get(esc, esc))
        self.pos += 1
        return self.char_literal(ch)

    def char_literal(self, ch: str) -> str:
        if ch in ('"', "\\") or ord(ch) < 0x20:
            # As JSON text these need an escape the pattern does not describe.
            raise GrammarError(f"{self.name}: the pattern's {ch!r} needs a JSON escape")
        return literal(ch)

    def char_class(self) -> str:
        self.pos += 1
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        items = []
        first = True
        while True:
            ch = self.peek()
            if ch == "":
                raise GrammarError(f"{self.name}: unclosed character class")
            if ch == "]" and not first:
                self.pos += 1
                break
            first = False
            if ch == "\\":
                esc = self.src[self.pos + 1 : self.pos + 2]
                self.pos += 2
                if esc in _CLASS_ESCAPES:
                    items.append(_CLASS_ESCAPES[esc])
                    continue
                if esc in _SIMPLE_ESCAPES:
                    items.append(_class_char(_SIMPLE_ESCAPES[esc]))
                    continue
                ch = esc
            else:
                self.pos += 1
            if self.peek() == "-" and self.src[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                end = self.peek()
                if end == "\\":
                    self.pos += 1
                    end = _SIMPLE_ESCAPES.get(self.peek(), self.peek())
                self.pos += 1
                items.append(f"{_class_char(ch)}-{_class_char(end)}")
            else:
                items.append(_class_char(ch))
        body = "".join(items)
        if negated:
            # A negated class must not let a raw quote, backslash or control character
            # through: inside a JSON string they would need escapes.
            return f'[^{body}"\\\\\\x00-\\x1f]'
        if any(c in body for c in ('"',)) or "\\\\" in body:
            raise GrammarError(f"{self.name}: a class with a quote or backslash needs escapes")
        return f"[{body}]"


_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_", "s": " \\t"}
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "f": "\f", "v": "\v"}


def _class_char(ch: str) -> str:
    if ch in ("]", "[", "-", "^", "\\"):
        return "\\" + ch
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if ord(ch) < 0x20:
        return f"\\x{ord(ch):02x}"
    return ch


def caller_gbnf(tools: Sequence[ToolSpec], *, whitespace: Whitespace = "bounded") -> str:
    """The GBNF grammar of one caller answer that may call any of ``tools``."""
    if not tools:
        raise GrammarError("a caller grammar needs at least one tool")
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise GrammarError(f"duplicate tool names in a caller constraint: {names}")
    builder = _Builder(whitespace)
    branches = []
    for tool in tools:
        try:
            args = builder.value(dict(tool.parameters), f"{tool.name}-args")
        except GrammarError as exc:
            raise GrammarError(f"tool {tool.name}: {exc}") from exc
        head = literal(f"Action: {tool.name}\nAction Input: ")
        branches.append(builder.add(f"call-{tool.name}", f"{head} {args}"))
    return builder.text(" | ".join(branches))


def choice_gbnf(options: Sequence[str], suffix: str = "") -> str:
    """The grammar of exactly one of ``options`` followed by ``suffix`` (GBNF, which
    xgrammar's EBNF reads too)."""
    if not options or not all(options):
        raise GrammarError("a choice grammar needs at least one non-empty option")
    choice = " | ".join(literal(option) for option in options)
    tail = f" {literal(suffix)}" if suffix else ""
    return f"root ::= ({choice}){tail}\n"


__all__ = ["GrammarError", "caller_gbnf", "choice_gbnf", "literal"]

"""A small, pure JSON-schema validator for tool arguments.

It covers what tool schemas use: ``type`` (string, integer, number, boolean, object,
array, null, or a list of them), ``enum``, ``const``, ``required``, ``properties``,
``additionalProperties``, ``items``, ``anyOf``/``oneOf``/``allOf``, string length and
``pattern``, numeric bounds, array length and ``format: date``. Other keywords are
ignored. Objects are closed by default (``additionalProperties: false`` unless the
schema says otherwise), because an argument the tool does not know is a mistake of the
caller model, not something to send on.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from connectors._errors import InvalidArguments

_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")


@dataclass(frozen=True)
class Violation:
    """One way an instance fails its schema: where (``lines[0].sku``, "" for the root) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def violations(instance: Any, schema: Mapping[str, Any], *, closed: bool = True) -> list[Violation]:
    """Every violation of ``schema`` by ``instance``; empty when it is valid.

    ``closed`` treats objects without ``additionalProperties`` as if it were ``false``.
    """
    found: list[Violation] = []
    _check(instance, schema, "", closed, found)
    return found


def is_valid(instance: Any, schema: Mapping[str, Any], *, closed: bool = True) -> bool:
    """Whether ``instance`` satisfies ``schema``."""
    return not violations(instance, schema, closed=closed)


def validate_arguments(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
    """Raise InvalidArguments naming every field of ``arguments`` that breaks ``schema``."""
    found = violations(dict(arguments), schema)
    if found:
        raise InvalidArguments("; ".join(str(v) for v in found))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _has_type(value: Any, expected: str) -> bool:
    kind = _kind(value)
    if expected == "number":
        return kind in ("integer", "number")
    if expected == "integer":
        return kind == "integer" or (kind == "number" and float(value).is_integer())
    return kind == expected


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _check(value: Any, schema: Mapping[str, Any], path: str, closed: bool, out: list) -> None:
    if not isinstance(schema, Mapping):  # true/false schemas
        if schema is False:
            out.append(Violation(path, "no value is allowed here"))
        return

    expected = schema.get("type")
    if expected is not None:
        options = [expected] if isinstance(expected, str) else list(expected)
        unknown = [t for t in options if t not in _TYPES]
        if unknown:
            raise ValueError(f"schema at {path or 'root'!r} names unknown type(s) {unknown}")
        if not any(_has_type(value, t) for t in options):
            shown = " or ".join(options)
            out.append(Violation(path, f"expected {shown}, got {_kind(value)} {value!r}"))
            return  # the other keywords would only repeat the mismatch

    if "const" in schema and value != schema["const"]:
        out.append(Violation(path, f"must be {schema['const']!r}, got {value!r}"))
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        out.append(Violation(path, f"{value!r} is not one of {allowed}"))

    for keyword, combine in (("anyOf", any), ("oneOf", None), ("allOf", all)):
        if keyword in schema:
            results = [not violations(value, sub, closed=closed) for sub in schema[keyword]]
            ok = combine(results) if combine else sum(results) == 1
            if not ok and keyword == "allOf":
                for sub in schema[keyword]:
                    _check(value, sub, path, closed, out)
            elif not ok:
                how = "any" if keyword == "anyOf" else "exactly one"
                out.append(Violation(path, f"{value!r} does not match {how} of the allowed forms"))

    kind = _kind(value)
    if kind == "string":
        _check_string(value, schema, path, out)
    elif kind in ("integer", "number"):
        _check_number(value, schema, path, out)
    elif kind == "object":
        _check_object(value, schema, path, closed, out)
    elif kind == "array":
        _check_array(value, schema, path, closed, out)


def _check_string(value: str, schema: Mapping[str, Any], path: str, out: list) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        out.append(Violation(path, f"must be at least {schema['minLength']} characters long"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        out.append(Violation(path, f"must be at most {schema['maxLength']} characters long"))
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        out.append(Violation(path, f"{value!r} does not match the pattern {schema['pattern']}"))
    if schema.get("format") == "date":
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            out.append(Violation(path, f"{value!r} is not a date in the form YYYY-MM-DD"))


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` with JSON Schema's (ECMA-262) meaning of ``$``: the end of the input.

    Python's ``$`` also matches before a final newline, so ``^[^\\r\\n]*$`` would let
    ``"subject\\n"`` through; every unescaped ``$`` outside a character class becomes
    ``\\Z``."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]" or pattern[i + 1 : i + 3] == "^]":
                # a "]" right after "[" or "[^" is a literal member, not the end
                skip = 2 if pattern[i + 1] == "]" else 3
                out.append(pattern[i : i + skip])
                i += skip
                continue
        elif ch == "$":
            ch = r"\Z"
        out.append(ch)
        i += 1
    return re.compile("".join(out))


def _check_number(value: float, schema: Mapping[str, Any], path: str, out: list) -> None:
    low, high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    # OpenAPI 3.0 spells exclusive bounds as booleans next to minimum/maximum
    if low is True:
        low = schema.get("minimum")
    if high is True:
        high = schema.get("maximum")
    if isinstance(low, int | float) and not isinstance(low, bool) and value <= low:
        out.append(Violation(path, f"must be greater than {low}, got {value}"))
    if isinstance(high, int | float) and not isinstance(high, bool) and value >= high:
        out.append(Violation(path, f"must be less than {high}, got {value}"))
    if "minimum" in schema and value < schema["minimum"]:
        out.append(Violation(path, f"must be at least {schema['minimum']}, got {value}"))
    if "maximum" in schema and value > schema["maximum"]:
        out.append(Violation(path, f"must be at most {schema['maximum']}, got {value}"))


def _check_object(
    value: Mapping[str, Any], schema: Mapping[str, Any], path: str, closed: bool, out: list
) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            out.append(Violation(_join(path, name), "is required"))
    extra = schema.get("additionalProperties", not closed)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], _join(path, name), closed, out)
        elif extra is False:
            allowed = ", ".join(properties) or "none"
            out.append(Violation(_join(path, name), f"unexpected field (allowed: {allowed})"))
        elif isinstance(extra, Mapping):
            _check(item, extra, _join(path, name), closed, out)


def _check_array(
    value: list[Any], schema: Mapping[str, Any], path: str, closed: bool, out: list
) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        out.append(Violation(path, f"must have at least {schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        out.append(Violation(path, f"must have at most {schema['maxItems']} items"))
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            _check(item, items, _join(path, index), closed, out)

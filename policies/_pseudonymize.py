"""Stable tokens for personal data, per task: ``<EMAIL_1>`` in, the raw value back out.

A ``Pseudonymizer`` lives for one task. The same raw value always gets the same token
(numbered per kind in order of first sight); the map is the only place the raw values
are kept, and the worker seals it per task (``mapping()`` / ``from_mapping()``).

What is tokenized: every string (detected spans are replaced, the rest of the text is
kept) and every integer that is a card number or a BSN written out (the integer is
replaced by its token, a string). Floats, booleans, ``None`` and dict keys are left as
they are. Tuples are walked as lists. Because tokens carry no type, an integer that was
tokenized comes back from ``detokenize`` as its digit string: the one case in which
``detokenize(tokenize(x)) != x``. Token-shaped text already in a value is left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from policies._pii import Detector, PiiKind
from policies._project import _child, _Node, _trie

#: The shape of a token; ``unknown_tokens`` reports every match the map does not hold.
TOKEN_RE = re.compile(r"<(" + "|".join(kind.value for kind in PiiKind) + r")_(\d+)>")


def _unsupported(value: object) -> TypeError:
    return TypeError(
        f"cannot pseudonymize a value of type {type(value).__name__}: tool responses and "
        "arguments must be JSON-like (dict, list, str, int, float, bool, None)"
    )


class Pseudonymizer:
    """Replaces personal data by stable per-task tokens and resolves them back."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._token_of: dict[str, str] = {}
        self._raw_of: dict[str, str] = {}
        self._last: Counter[str] = Counter()

    @classmethod
    def from_mapping(cls, detector: Detector, mapping: Mapping[str, str]) -> Pseudonymizer:
        """A pseudonymizer that continues from a stored ``mapping()`` (token → raw).

        Raises ``ValueError`` for a map that no pseudonymizer could have produced.
        """
        restored = cls(detector)
        for token, raw in mapping.items():
            match = TOKEN_RE.fullmatch(token)
            if match is None or not isinstance(raw, str):
                raise ValueError(f"not a token map entry: {token!r} (expected '<KIND_n>' → str)")
            if raw in restored._token_of:
                raise ValueError(f"token map holds one raw value under two tokens ({token!r})")
            restored._token_of[raw] = token
            restored._raw_of[token] = raw
            kind, number = match.group(1), int(match.group(2))
            restored._last[kind] = max(restored._last[kind], number)
        return restored

    def mapping(self) -> dict[str, str]:
        """Token → raw value, for every token handed out in this task."""
        return dict(self._raw_of)

    def token_for(self, raw: str, kind: PiiKind) -> str:
        """The token of ``raw``: the one it already has, else the next of ``kind``."""
        token = self._token_of.get(raw)
        if token is None:
            self._last[kind.value] += 1
            token = f"<{kind.value}_{self._last[kind.value]}>"
            self._token_of[raw] = token
            self._raw_of[token] = raw
        return token

    def tokenize(self, obj: Any, *, allow_raw: Sequence[str] = ()) -> Any:
        """A copy of ``obj`` with every detected value replaced by its token.

        Values under the ``allow_raw`` paths (projection notation) are copied untouched.
        """
        return self.tokenize_counted(obj, allow_raw=allow_raw)[0]

    def tokenize_counted(
        self, obj: Any, *, allow_raw: Sequence[str] = ()
    ) -> tuple[Any, dict[str, int]]:
        """``tokenize``, and how many values of each kind it replaced (kinds in order)."""
        counts: Counter[str] = Counter()
        node = _trie(allow_raw) if allow_raw else _Node()
        copy = self._walk(obj, node, counts)
        return copy, {kind.value: counts[kind.value] for kind in PiiKind if counts[kind.value]}

    def detokenize(self, obj: Any) -> Any:
        """A copy of ``obj`` with every known token in its strings replaced by the raw value.

        Unknown token-shaped text is left as is: check ``unknown_tokens`` first.
        """
        if isinstance(obj, str):
            return TOKEN_RE.sub(lambda m: self._raw_of.get(m.group(), m.group()), obj)
        if isinstance(obj, dict):
            return {key: self.detokenize(value) for key, value in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.detokenize(value) for value in obj]
        if obj is None or isinstance(obj, bool | int | float):
            return obj
        raise _unsupported(obj)

    def unknown_tokens(self, obj: Any) -> list[str]:
        """Token-shaped strings in ``obj`` that this task never handed out, each once."""
        found: dict[str, None] = {}
        self._scan(obj, found)
        return list(found)

    def _scan(self, obj: Any, found: dict[str, None]) -> None:
        if isinstance(obj, str):
            for match in TOKEN_RE.finditer(obj):
                if match.group() not in self._raw_of:
                    found[match.group()] = None
        elif isinstance(obj, dict):
            for value in obj.values():
                self._scan(value, found)
        elif isinstance(obj, list | tuple):
            for value in obj:
                self._scan(value, found)

    def _walk(self, obj: Any, raw_node: _Node, counts: Counter[str]) -> Any:
        if raw_node.whole:
            return self._copy(obj)
        if isinstance(obj, str):
            return self._text(obj, counts)
        if isinstance(obj, dict):
            out = {}
            for key, value in obj.items():
                child = _child(raw_node, str(key)) or _Node()
                out[key] = self._walk(value, child, counts)
            return out
        if isinstance(obj, list | tuple):
            return [self._walk(value, raw_node, counts) for value in obj]
        if isinstance(obj, bool) or obj is None or isinstance(obj, float):
            return obj
        if isinstance(obj, int):
            kind = self.detector.classify_number(obj)
            if kind is None:
                return obj
            counts[kind.value] += 1
            return self.token_for(str(obj), kind)
        raise _unsupported(obj)

    def _text(self, text: str, counts: Counter[str]) -> str:
        parts: list[str] = []
        position = 0
        # Existing tokens are kept: detect only in the text between them.
        for gap_start, gap_end in _gaps(text):
            gap = text[gap_start:gap_end]
            for span in self.detector.find(gap):
                parts.append(text[position : gap_start + span.start])
                parts.append(self.token_for(span.value, span.kind))
                counts[span.kind.value] += 1
                position = gap_start + span.end
        parts.append(text[position:])
        return "".join(parts)

    def _copy(self, obj: Any) -> Any:
        if isinstance(obj, dict):
            return {key: self._copy(value) for key, value in obj.items()}
        if isinstance(obj, list | tuple):
            return [self._copy(value) for value in obj]
        if obj is None or isinstance(obj, str | bool | int | float):
            return obj
        raise _unsupported(obj)


def _gaps(text: str) -> list[tuple[int, int]]:
    gaps, start = [], 0
    for match in TOKEN_RE.finditer(text):
        gaps.append((start, match.start()))
        start = match.end()
    gaps.append((start, len(text)))
    return gaps

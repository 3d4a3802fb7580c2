"""A structlog processor that masks personal data in log events by its kind (``<IBAN>``).

Log lines get kind labels, never tokens: a token would tie a log line to the sealed
per-task map, and logs outlive tasks. Place the processor after ``format_exc_info`` and
before the renderer (``worker.logs.add_redactor`` does); an ``exc_info`` that is still
unrendered when it runs is rendered here into ``exception`` so that the traceback text
is masked too.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterable, MutableMapping
from typing import Any

from policies._pii import Detector


def _render_exc_info(exc_info: Any) -> str | None:
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif not isinstance(exc_info, tuple):
        exc_info = sys.exc_info()
    if exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


class RedactingProcessor:
    """Replaces personal data in every value of a structlog event dict by ``<KIND>``.

    Strings are masked in place of the detected spans; integers that are card numbers
    or BSNs become their label; nested dicts, lists and tuples are walked (and copied,
    never changed: they may be the application's own objects); other objects are masked
    in their ``repr`` when it holds personal data. Keys are left alone, and so are the
    values of ``skip_keys``: structlog's own bookkeeping for stdlib records (the
    ``LogRecord`` itself; its message is already rendered into ``event``).

    ``keep`` are literal strings that look like personal data but name the system itself
    (a Celery node ``celery@host.example.com`` reads as an e-mail address): a finding
    inside one of them is left as it is, so operators can still tell workers apart.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        skip_keys: Iterable[str] = ("_record", "_from_structlog"),
        keep: Iterable[str] = (),
    ) -> None:
        self.detector = detector
        self.skip_keys = frozenset(skip_keys)
        self.keep = tuple(sorted({k for k in keep if k}, key=len, reverse=True))

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if event_dict.get("exc_info"):
            rendered = _render_exc_info(event_dict.pop("exc_info"))
            if rendered is not None:
                event_dict["exception"] = rendered
        for key, value in list(event_dict.items()):
            if key not in self.skip_keys:
                event_dict[key] = self.redact(value)
        return event_dict

    def redact(self, value: Any) -> Any:
        """``value`` with its personal data replaced by kind labels."""
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            kind = self.detector.classify_number(value)
            return value if kind is None else f"<{kind.value}>"
        if isinstance(value, dict):
            return {key: self.redact(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.redact(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self.redact(item) for item in value)
        text = repr(value)
        masked = self.redact_text(text)
        return value if masked == text else masked

    def redact_text(self, text: str) -> str:
        """``text`` with every detected span replaced by ``<KIND>``."""
        spans = self.detector.find(text)
        if spans and self.keep:
            kept = [
                (m.start(), m.end())
                for literal in self.keep
                for m in re.finditer(re.escape(literal), text)
            ]
            spans = [s for s in spans if not any(a <= s.start and s.end <= b for a, b in kept)]
        if not spans:
            return text
        parts, position = [], 0
        for span in spans:
            parts.append(text[position : span.start])
            parts.append(f"<{span.kind.value}>")
            position = span.end
        parts.append(text[position:])
        return "".join(parts)

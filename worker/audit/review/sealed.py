"""How sealed values are shown when they are not opened (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

SEALED_KEY = "$sealed"
"""The one key of a sealed JSON value."""

SEALED = "«sealed»"
"""What a sealed value is shown as when it is not opened."""

Show = Callable[[Any], Any]
"""How values are shown: ``conceal``, or ``reveal`` bound to an opener."""


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed envelope ``{"$sealed": {...}}``."""
    return isinstance(value, Mapping) and len(value) == 1 and SEALED_KEY in value


def conceal(value: Any) -> Any:
    """``value`` with every sealed envelope in it replaced by ``«sealed»``."""
    return _walk(value, lambda _: SEALED)


def reveal(value: Any, unseal: Callable[[Any], Any]) -> Any:
    """``value`` with every sealed envelope in it replaced by ``unseal(envelope)``."""
    return _walk(value, unseal)


def _walk(value: Any, on_sealed: Callable[[Any], Any]) -> Any:
    if is_sealed(value):
        return on_sealed(value)
    if isinstance(value, Mapping):
        return {key: _walk(item, on_sealed) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, on_sealed) for item in value]
    return value

"""The protocol's one error (``worker.errors.ProtocolError`` derives from it)."""

from __future__ import annotations


class ProtocolError(Exception):
    """A text or turn that does not follow the α-UMi format; the message says where."""

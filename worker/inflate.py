"""Bounded decompression of task messages: a compressed body may not inflate past the
message size limit.

kombu decompresses a message that names a ``compression`` header as it builds the
message, before any check of ours runs: a few hundred KiB of gzip that inflate to
gigabytes (a "zip bomb") would fill the worker's memory first. :func:`bound` registers
decoders for kombu's compression types (gzip/zlib, bzip2, lzma) that stop at
``max_bytes`` and raise :class:`InflateError` instead. kombu then records the error on
the message and the worker's consumer dead-letters it as it came (``cannot be decoded:
… inflates past …``), compressed, with its digest.

kombu's registry is per process, so this holds for every consumer of the worker.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Any

from worker.errors import InflateError

__all__ = ["InflateError", "bound", "inflate_bz2", "inflate_lzma", "inflate_zlib"]

#: kombu's content types of the compressions it registers itself.
GZIP = "application/x-gzip"
BZIP2 = "application/x-bz2"
LZMA = "application/x-lzma"


def _message(limit: int) -> str:
    return f"the compressed body inflates past {limit:,} bytes (UMIQ_MAX_MESSAGE_BYTES)"


def inflate_zlib(data: bytes, limit: int) -> bytes:
    """zlib data inflated, at most ``limit`` bytes (kombu's gzip is zlib's format)."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise InflateError(f"not zlib data: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise InflateError(_message(limit))
    if not inflater.eof:
        raise InflateError("truncated zlib data")
    return out


def _inflate_stream(inflater: Any, data: bytes, limit: int, kind: str) -> bytes:
    try:
        out = inflater.decompress(data, max_length=limit + 1)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InflateError(f"not {kind} data: {exc}") from exc
    if len(out) > limit or not inflater.eof:
        # more output is waiting (past the limit) or the stream is cut short
        raise InflateError(_message(limit) if len(out) > limit else f"truncated {kind} data")
    return out


def inflate_bz2(data: bytes, limit: int) -> bytes:
    return _inflate_stream(bz2.BZ2Decompressor(), data, limit, "bzip2")


def inflate_lzma(data: bytes, limit: int) -> bytes:
    return _inflate_stream(lzma.LZMADecompressor(), data, limit, "lzma")


_INFLATERS: dict[str, Callable[[bytes, int], bytes]] = {
    GZIP: inflate_zlib,
    BZIP2: inflate_bz2,
    LZMA: inflate_lzma,
}


def bound(max_bytes: int) -> None:
    """Replace kombu's decoders of its compressions by ones that stop at ``max_bytes``
    (the encoders stay kombu's). Idempotent; the latest limit holds."""
    from kombu import compression

    for content_type, inflate in _INFLATERS.items():
        encoder = compression._encoders.get(content_type)
        if encoder is None:
            continue

        def decode(body: bytes, _inflate: Callable[[bytes, int], bytes] = inflate) -> bytes:
            return _inflate(body, max_bytes)

        compression.register(encoder, decode, content_type)

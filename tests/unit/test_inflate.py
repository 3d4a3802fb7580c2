"""Bounded decompression: a compressed body never inflates past the size limit."""

from __future__ import annotations

import bz2
import lzma
import zlib

import pytest
from kombu import compression

from worker import inflate
from worker.inflate import InflateError, inflate_bz2, inflate_lzma, inflate_zlib

CASES = [(zlib.compress, inflate_zlib), (bz2.compress, inflate_bz2), (lzma.compress, inflate_lzma)]


@pytest.mark.parametrize(("deflate", "inflate_"), CASES)
def test_a_body_within_the_limit_comes_back_whole(deflate, inflate_) -> None:
    body = b'[[{"task_id": "t-1"}], {}, {}]' * 100
    assert inflate_(deflate(body), len(body)) == body


@pytest.mark.parametrize(("deflate", "inflate_"), CASES)
def test_a_bomb_stops_at_the_limit(deflate, inflate_) -> None:
    bomb = deflate(b"\0" * (64 * 2**20))  # 64 MiB of zeros: a few KiB compressed
    assert len(bomb) < 2**20
    with pytest.raises(InflateError, match="inflates past 1,048,576 bytes"):
        inflate_(bomb, 2**20)


@pytest.mark.parametrize(("deflate", "inflate_"), CASES)
def test_data_that_is_not_of_its_compression_is_refused(deflate, inflate_) -> None:
    with pytest.raises(InflateError):
        inflate_(b"plain text, not compressed", 2**20)
    with pytest.raises(InflateError):
        inflate_(deflate(b"x" * 1000)[:-8], 2**20)  # cut short


def test_bound_replaces_kombus_decoders_and_keeps_its_encoders() -> None:
    body = b"y" * 5000
    try:
        inflate.bound(4096)
        for name in ("gzip", "bzip2", "lzma"):
            packed, content_type = compression.compress(body, name)
            with pytest.raises(InflateError):
                compression.decompress(packed, content_type)
            small, content_type = compression.compress(body[:4000], name)
            assert compression.decompress(small, content_type) == body[:4000]
    finally:
        inflate.bound(4 * 2**20)

"""The body a refused message is dead-lettered with: the bytes that came (worker.consumer)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from worker.consumer import raw_body


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "ascii", "utf-16-le", None])
def test_a_body_py_amqp_decoded_is_dead_lettered_as_the_bytes_that_came(
    encoding: str | None,
) -> None:
    """py-amqp decodes a body by its declared encoding; the dead letter gets the bytes."""
    sent = '[[{"query": "Caf\u00e9 INV-1001"}], {}, {}]' if encoding != "ascii" else "[1, 2]"
    raw = sent.encode(encoding or "utf-8")
    decoded = raw.decode(encoding or "utf-8")  # what py-amqp hands over
    message = SimpleNamespace(body=decoded, content_encoding=encoding)
    assert raw_body(message) == raw


def test_bytes_stay_bytes_and_an_unknown_codec_falls_back_to_utf8() -> None:
    """A body py-amqp could not decode is kept as is; a codec Python lacks gives UTF-8."""
    assert raw_body(SimpleNamespace(body=b"\xff\x00", content_encoding="gzip")) == b"\xff\x00"
    assert raw_body(SimpleNamespace(body="caf\u00e9", content_encoding="no-such")) == (
        "caf\u00e9".encode()
    )


def test_a_compressed_body_is_kept_as_it_came_beside_kombus_decompression() -> None:
    """kombu decompresses a body that names a compression; the dead letter gets the bytes
    that came on the wire, which a replay can send again."""
    import zlib

    import amqp
    from kombu.transport import pyamqp

    from worker.consumer import keep_bytes

    channel = pyamqp.Channel.__new__(pyamqp.Channel)  # no broker: only its switches
    keep_bytes(channel)
    assert channel.auto_decode is False
    wire = zlib.compress(b"null")
    sent = amqp.Message(wire, content_type="application/json", content_encoding="utf-8",
                        application_headers={"compression": "application/x-gzip"})  # fmt: skip
    sent.delivery_info = {"delivery_tag": 1}
    message = channel.Message(sent, channel=None)
    assert message.body == b"null"  # what Celery and the check read
    assert raw_body(message) == wire

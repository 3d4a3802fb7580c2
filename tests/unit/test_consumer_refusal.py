"""A refusal that fails still ends the message somewhere (worker.consumer)."""

from __future__ import annotations

from typing import Any

import pytest

from worker.consumer import UmiqConsumer


class Message:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def reject(self, requeue: bool = False) -> None:
        self.calls.append(("reject", requeue))

    def ack(self) -> None:
        self.calls.append(("ack", None))


def consumer(monkeypatch: pytest.MonkeyPatch, error: Exception) -> UmiqConsumer:
    made = UmiqConsumer.__new__(UmiqConsumer)  # no broker: only the refusal path is used
    made.connection_errors = (ConnectionError,)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(made, "_dead_letter", fail)
    return made


def test_a_refusal_that_raises_hands_the_message_to_the_brokers_dead_letter_exchange(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dead letter that cannot be made rejects the message unrequeued; nothing raises."""
    message = Message()
    consumer(monkeypatch, UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"))._refuse(
        message, "body: not a list", "body"
    )
    assert message.calls == [("reject", False)]


def test_a_broker_outage_during_a_refusal_is_left_to_the_reconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection error is raised on (the message comes back after the reconnect)."""
    message = Message()
    with pytest.raises(ConnectionError):
        consumer(monkeypatch, ConnectionError("gone"))._refuse(message, "x", "body")
    assert message.calls == []

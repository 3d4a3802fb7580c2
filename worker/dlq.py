"""The dead-letter queue: read what was refused and why, and send it back to work.

Every message the worker refuses sits in the dead-letter queue sealed
(``worker.letters``: body, content type, headers and reason under the audit key ring),
with umiq's ``x-umiq-*`` headers beside it (reason with personal data masked, field,
SHA-256 of the original body, the audit record, when, the key id). A message the broker
dead-lettered itself (its delivery limit reached while no worker could refuse it) sits
there as it came. Reading leaves the queue as it was: messages are taken without an ack
and go back when the channel closes. A replay opens a sealed letter with the key ring,
publishes the original message again to the work queue with its own headers (umiq's and
the broker's delivery bookkeeping taken off) and only then removes the letter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from kombu import Connection

from policies import KeyRing
from worker.deadletter import KEPT_PROPERTIES, OWN_HEADERS, REASON, SHA256, TRUNCATED
from worker.letters import Original, is_letter, open_letter
from worker.settings import Settings

#: Headers the broker adds on a dead letter's way here; a replay starts them afresh.
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-delivery-count", "x-last-death-exchange",
                   "x-last-death-queue", "x-last-death-reason")  # fmt: skip


def _without_bookkeeping(headers: dict[str, Any]) -> dict[str, Any]:
    dropped = set(OWN_HEADERS) | set(_BROKER_HEADERS)
    return {k: v for k, v in headers.items() if k not in dropped}


@dataclass
class DeadLetter:
    """One message in the dead-letter queue; ``position`` counts from 1 in queue order."""

    position: int
    body: bytes
    content_type: str
    content_encoding: str
    headers: dict[str, Any]
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return str(self.headers.get(SHA256, ""))

    @property
    def reason(self) -> str:
        """umiq's reason, or the broker's (a delivery limit reached, say)."""
        if self.headers.get(REASON):
            return str(self.headers[REASON])
        deaths = self.headers.get("x-death") or []
        if deaths and isinstance(deaths[0], dict):
            return f"dead-lettered by the broker: {deaths[0].get('reason')}"
        return "(no reason recorded)"

    def original_headers(self) -> dict[str, Any]:
        """The headers the message came with, without umiq's and the broker's additions."""
        return _without_bookkeeping(self.headers)

    @property
    def truncated(self) -> int | None:
        """The size of the body refused for its size, of which the letter keeps the head."""
        size = self.headers.get(TRUNCATED)
        return int(size) if isinstance(size, int | str) and str(size).isdigit() else None

    @property
    def sealed(self) -> bool:
        """Whether the message is kept sealed (refused by a worker), not as it came."""
        return is_letter(self.content_type)

    def original(self, keyring: KeyRing | None) -> Original:
        """The message as it came: a sealed letter opened with ``keyring`` (SealError when
        it cannot be), an unsealed one as it is."""
        if not self.sealed:
            return Original(self.body, self.content_type, self.content_encoding,
                            self.original_headers(), self.reason)  # fmt: skip
        if keyring is None:
            from policies import SealError

            raise SealError(
                f"dead letter #{self.position} is sealed under key "
                f"{self.headers.get('x-umiq-sealed')}: no key ring is configured here "
                "(UMIQ_KEYRING_FILE or UMIQ_KEYRING)"
            )
        opened = open_letter(keyring, self.body)
        return replace(opened, headers=_without_bookkeeping(opened.headers))

    def matches(self, selector: str) -> bool:
        """``selector`` is this letter's position or a prefix (≥ 6) of its body's SHA-256."""
        if selector.isdigit():
            return int(selector) == self.position
        return len(selector) >= 6 and self.sha256.startswith(selector.lower())


@contextmanager
def _letters(settings: Settings) -> Iterator[tuple[Any, list[tuple[DeadLetter, Any]]]]:
    """Every dead letter, taken unacked (they go back when the block ends), and the
    connection; ack one in the block to remove it for good."""
    from worker.celery_app import dead_letter_queue
    from worker.consumer import keep_bytes, raw_body

    with Connection(settings.resolved_broker_url, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        channel = conn.channel()
        keep_bytes(channel)  # a letter kept as it came stays its bytes (a UTF-16 body)
        try:
            queue = dead_letter_queue(settings)(channel)
            queue.declare()
            found: list[tuple[DeadLetter, Any]] = []
            while True:
                message = queue.get(no_ack=False)
                if message is None:
                    break
                found.append((
                    DeadLetter(
                        position=len(found) + 1,
                        body=bytes(raw_body(message)),
                        content_type=message.content_type or "application/octet-stream",
                        content_encoding=message.content_encoding or "binary",
                        headers=dict(message.headers or {}),
                        properties={k: message.properties.get(k) for k in KEPT_PROPERTIES
                                    if message.properties.get(k)},
                    ),
                    message,
                ))  # fmt: skip
            yield conn, found
        finally:
            channel.close()  # what was not acked goes back to the queue, in order


def list_letters(settings: Settings) -> list[DeadLetter]:
    """The dead letters in queue order; the queue is left as it was."""
    with _letters(settings) as (_, found):
        return [letter for letter, _ in found]


def operator_keyring(settings: Settings) -> KeyRing | None:
    """The key ring the settings name, or None where none is configured (an embedded
    default file that does not exist is not created here)."""
    from worker.audit.keyring import keyring_source, load_keyring

    source = keyring_source(settings)
    if source.kind == "default" and (source.path is None or not source.path.exists()):
        return None
    return load_keyring(settings)


def replay(
    settings: Settings, selectors: Sequence[str], keyring: KeyRing | None = None
) -> list[DeadLetter]:
    """Send the letters ``selectors`` pick (``all`` for every one) back to the work queue.

    Each is opened (sealed letters need ``keyring``, by default the settings' key ring),
    published with its original body and headers and then removed from the dead-letter
    queue; the worker checks it again like any new message. A letter that cannot be
    opened stops the replay before anything is sent (SealError), and so does one that
    keeps only the head of a body refused for its size (DeadLetterError).
    """
    from kombu import Producer

    from worker.celery_app import task_queue
    from worker.errors import DeadLetterError

    keyring = keyring if keyring is not None else operator_keyring(settings)
    replayed: list[DeadLetter] = []
    with _letters(settings) as (conn, found):
        chosen = [
            (letter, message, letter.original(keyring))
            for letter, message in found
            if "all" in selectors or any(letter.matches(s) for s in selectors)
        ]
        for letter, _, _ in chosen:
            if letter.truncated is not None:
                raise DeadLetterError(
                    f"dead letter #{letter.position} keeps only the first bytes of its "
                    f"{letter.truncated:,}-byte body (refused for its size): it cannot be "
                    "sent back; the producer must send the task again, smaller"
                )
        producer = Producer(conn.channel())
        target = task_queue(settings)
        for letter, message, original in chosen:
            producer.publish(
                original.body,
                exchange=target.exchange,
                routing_key=target.routing_key,
                declare=[target],
                content_type=original.content_type,
                content_encoding=original.content_encoding,
                headers=original.headers,
                delivery_mode=2,
                retry=True,
                **letter.properties,
            )
            message.ack()
            replayed.append(letter)
        producer.channel.close()
    return replayed

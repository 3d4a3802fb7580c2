"""Acme's mail server: a real SMTP server (aiosmtpd) on loopback, delivering to a mailbox.

Every message it accepts lands in one SQLite mailbox file that tests and task checkers
read (``messages()``) and empty (``reset()``). It accepts any sender and any recipient
except those at a ``.invalid`` domain (RFC 2606), which it refuses for good (550), so
that a refused recipient can be exercised.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import sqlite3
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT,
    sender      TEXT NOT NULL,      -- envelope MAIL FROM
    recipients  TEXT NOT NULL,      -- envelope RCPT TO, a JSON list
    from_header TEXT,
    to_header   TEXT,
    subject     TEXT,
    body        TEXT,
    raw         BLOB NOT NULL,
    received_at TEXT NOT NULL
)
"""


class Mailbox:
    """Messages delivered by the mail server, kept in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def deliver(self, sender: str, recipients: list[str], raw: bytes) -> None:
        """Store one message as the server received it."""
        parsed = message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
        part = parsed.get_body(preferencelist=("plain",))
        body = part.get_content().rstrip("\n") if part is not None else ""  # type: ignore[union-attr]
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO message (message_id, sender, recipients, from_header, to_header, "
                "subject, body, raw, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    parsed["Message-ID"], sender, json.dumps(recipients), parsed["From"],
                    parsed["To"], parsed["Subject"], body, raw,
                    dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                ),
            )  # fmt: skip

    def messages(self) -> list[dict[str, Any]]:
        """Every message delivered since the last reset, oldest first.

        Each is ``{"message_id", "sender", "to", "subject", "body"}``, ``to`` being the
        envelope recipients.
        """
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT message_id, sender, recipients, subject, body FROM message ORDER BY seq"
            ).fetchall()
        return [
            {
                "message_id": row["message_id"],
                "sender": row["sender"],
                "to": json.loads(row["recipients"]),
                "subject": row["subject"],
                "body": row["body"],
            }
            for row in rows
        ]

    def reset(self) -> None:
        """Delete every message."""
        with self._connect() as conn:
            conn.execute("DELETE FROM message")


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if not domain or domain.endswith(".invalid"):
            return f"550 5.1.2 {address}: no such domain"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        await asyncio.to_thread(self.mailbox.deliver, envelope.mail_from, envelope.rcpt_tos, raw)
        return "250 2.0.0 Message accepted for delivery"


class _SocketController(Controller):
    """aiosmtpd's threaded controller, serving a socket bound beforehand (port 0 works)."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class MailServer:
    """The SMTP server on a loopback address; ``start()`` returns once it answers."""

    def __init__(
        self, mailbox: str | Path | Mailbox, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"refusing to serve on {host}: sample services bind to loopback only")
        self.mailbox = mailbox if isinstance(mailbox, Mailbox) else Mailbox(mailbox)
        self.host = host
        self._requested_port = port
        self._controller: _SocketController | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        """``host:port`` once started."""
        if self.port is None:
            raise RuntimeError("the mail server is not started")
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        """Bind, serve in a background thread, and wait until it greets."""
        if self._controller is not None:
            raise RuntimeError("the mail server is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self.port = sock.getsockname()[1]
        controller = _SocketController(
            _Handler(self.mailbox),
            sock,
            server_hostname="mail.acme-corp.nl",  # no DNS lookup of our own name
            ready_timeout=15.0,
        )
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[dict[str, Any]]:
        """The mailbox's messages (see ``Mailbox.messages``)."""
        return self.mailbox.messages()

    def reset(self) -> None:
        """Empty the mailbox (the server keeps running)."""
        self.mailbox.reset()

    def __enter__(self) -> Self:
        if self._controller is None:
            self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

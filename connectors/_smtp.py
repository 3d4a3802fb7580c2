"""A connector that sends mail through an SMTP server: one write tool, ``send_email``.

SMTP has no idempotency of its own, so the connector keeps a sent-log (a small SQLite
file, shared by every worker that names the same ``sent_log``) keyed by the idempotency
key. A key is logged as ``sending`` before the message goes out and ``sent`` after; a
repeated key replays the first result and sends nothing. The Message-ID is derived from
the key, so should a worker die between handing the message over and logging it, the
one resend that follows carries the same Message-ID and the receiving side can tell.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from connectors._base import ToolCall, ToolResult, ToolSpec
from connectors._errors import (
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    InvalidArguments,
    UnknownTool,
)
from connectors._schema import validate_arguments

_EMAIL = r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"

SEND_EMAIL = ToolSpec(
    name="send_email",
    description="Send a plain-text e-mail to one recipient.",
    parameters={
        "type": "object",
        "properties": {
            "to": {
                "type": "string",
                "pattern": _EMAIL,
                "maxLength": 254,
                "description": "Recipient address, e.g. anna.schmidt@example.com.",
            },
            "subject": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "pattern": r"^[^\r\n]*$",
                "description": "Subject line (one line).",
            },
            "body": {
                "type": "string",
                "minLength": 1,
                "maxLength": 20000,
                "description": "The message text.",
            },
        },
        "required": ["to", "subject", "body"],
        "additionalProperties": False,
    },
    effect="write",
)

_SENT_LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent_mail (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('sending', 'sent')),
    started_at  REAL NOT NULL,
    result      TEXT
)
"""


class SmtpConnector:
    """A connector that sends mail as ``sender`` through the SMTP server at host:port.

    ``sent_log`` is the path of the sent-log; without one the log lives in memory and
    protects only against repeats within this process. A key logged as ``sending`` for
    less than ``stale_after`` seconds (another worker may be sending it right now) makes
    a repeat raise ConnectorUnavailable; after that, the send is retried once more.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,
        *,
        sent_log: str | Path | None = None,
        timeout: float = 10.0,
        stale_after: float = 60.0,
    ) -> None:
        if "@" not in sender:
            raise ValueError(f"connector {name!r}: sender {sender!r} is not an e-mail address")
        self.name = name
        self.host = host
        self.port = int(port)
        self.sender = sender
        self.sent_log = str(sent_log) if sent_log is not None else None
        self._timeout = timeout
        self._stale_after = stale_after
        self._lock = threading.Lock()
        if self.sent_log is not None:
            Path(self.sent_log).parent.mkdir(parents=True, exist_ok=True)
            Path(self.sent_log).touch(mode=0o600, exist_ok=True)
            Path(self.sent_log).chmod(0o600)  # keys and fingerprints: the owner's only
        self._log = sqlite3.connect(
            self.sent_log or ":memory:", timeout=timeout, check_same_thread=False
        )
        self._log.isolation_level = None  # transactions are begun explicitly below
        self._log.execute(_SENT_LOG_SCHEMA)

    @staticmethod
    def clear_sent_log(path: str | Path) -> None:
        """Forget every key in the sent-log at ``path`` (a sample system's reset)."""
        if Path(path).exists():
            with sqlite3.connect(path) as conn:
                conn.execute(_SENT_LOG_SCHEMA)
                conn.execute("DELETE FROM sent_mail")
            conn.close()

    def tools(self) -> Sequence[ToolSpec]:
        """The one tool, ``send_email``."""
        return [replace(SEND_EMAIL, connector=self.name)]

    def _header_safe(self, arguments: Mapping[str, Any]) -> None:
        # Any line break Python's mail headers know (U+2028, \x0b, \x85…), not only
        # CR and LF: the schema's pattern lets them through, and the message refuses them.
        for name in ("to", "subject"):
            value = arguments.get(name)
            if isinstance(value, str) and len(f"{value}x".splitlines()) > 1:
                raise InvalidArguments(
                    f"send_email: {name} must be one line (it holds a line-break character)"
                )

    def invoke(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        """Send the message once per idempotency key.

        A recipient or message the server refuses for good (5xx) comes back ``ok=False``
        with the server's reply; a server that cannot be reached, or refuses for now
        (4xx), raises ConnectorUnavailable (ConnectorTimeout when it did not answer).
        """
        if call.tool != SEND_EMAIL.name:
            raise UnknownTool(
                f"connector {self.name!r} has no tool {call.tool!r} (it has: send_email)"
            )
        try:
            validate_arguments(SEND_EMAIL.parameters, call.arguments)
        except InvalidArguments as exc:
            raise InvalidArguments(f"{call.tool}: {exc}") from exc
        self._header_safe(call.arguments)
        if not idempotency_key:
            raise ConnectorError(
                "refusing write 'send_email' without an idempotency key: a retried task "
                "could send the mail twice"
            )
        arguments = dict(call.arguments)
        fingerprint = _fingerprint(arguments)
        message_id = self._message_id(idempotency_key)

        earlier = self._claim(idempotency_key, fingerprint, message_id)
        if earlier is not None:
            if earlier.ok and isinstance(earlier.data, dict):
                # the log keeps no recipient or subject: the same fingerprint means the
                # same arguments, so the replayed result takes them from this call
                earlier = ToolResult(ok=True, data=_result(arguments, message_id))
            return earlier
        try:
            message = self._message(arguments, message_id)
        except ValueError as exc:  # a header the mail library refuses: the caller's mistake
            self._forget(idempotency_key)
            raise InvalidArguments(f"send_email: {exc}") from exc
        try:
            self._send(message, arguments["to"])
        except _Refused as exc:
            self._forget(idempotency_key)
            return ToolResult(ok=False, error=str(exc), status=exc.code)
        except _NotSent as exc:
            self._forget(idempotency_key)
            raise exc.error from exc.__cause__
        with self._lock:
            # personal data stays out of the log: only the message id and the state
            self._log.execute(
                "UPDATE sent_mail SET state = 'sent', result = ? WHERE key = ?",
                (json.dumps({"message_id": message_id, "status": "sent"}), idempotency_key),
            )
        return ToolResult(ok=True, data=_result(arguments, message_id))

    def dry_run(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        """Validate ``call`` and build the message as ``invoke`` would, without sending it
        or touching the sent-log (a department in shadow): the data is the message."""
        if call.tool != SEND_EMAIL.name:
            raise UnknownTool(
                f"connector {self.name!r} has no tool {call.tool!r} (it has: send_email)"
            )
        try:
            validate_arguments(SEND_EMAIL.parameters, call.arguments)
        except InvalidArguments as exc:
            raise InvalidArguments(f"{call.tool}: {exc}") from exc
        self._header_safe(call.arguments)
        message_id = self._message_id(idempotency_key)
        try:
            message = self._message(dict(call.arguments), message_id)
        except ValueError as exc:
            raise InvalidArguments(f"send_email: {exc}") from exc
        would_send = {
            "from": message["From"],
            "to": message["To"],
            "subject": message["Subject"],
            "message_id": message_id,
            "body": message.get_content(),
        }
        return ToolResult(ok=True, data={"dry_run": True, "sent": False, "would_send": would_send})

    def close(self) -> None:
        """Close the sent-log."""
        with self._lock:
            self._log.close()

    def __enter__(self) -> SmtpConnector:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the sent-log -------------------------------------------------------------------

    def _message_id(self, key: str) -> str:
        digest = hashlib.sha256(f"{self.name}\0{key}".encode()).hexdigest()[:32]
        return f"<umiq.{digest}@{self.sender.rpartition('@')[2]}>"

    def _claim(self, key: str, fingerprint: str, message_id: str) -> ToolResult | None:
        """Log ``key`` as sending; or the earlier result, a refusal, or busy for a known key."""
        now = time.time()
        with self._lock:
            try:
                self._log.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise ConnectorTimeout(f"{self.name}: the sent-log stayed locked: {exc}") from exc
            try:
                row = self._log.execute(
                    "SELECT fingerprint, state, started_at, result FROM sent_mail WHERE key = ?",
                    (key,),
                ).fetchone()
                if row is None:
                    self._log.execute(
                        "INSERT INTO sent_mail (key, fingerprint, message_id, state, started_at) "
                        "VALUES (?, ?, ?, 'sending', ?)",
                        (key, fingerprint, message_id, now),
                    )
                    return None
                logged_fingerprint, state, started_at, result = row
                if logged_fingerprint != fingerprint:
                    return ToolResult(
                        ok=False,
                        error=f"idempotency key {key!r} was already used for a different "
                        "message; use a new key",
                    )
                if state == "sent":
                    return ToolResult(ok=True, data=json.loads(result))
                if now - started_at < self._stale_after:
                    raise ConnectorUnavailable(
                        f"{self.name}: the message for key {key!r} is being sent by another "
                        "call; retry later"
                    )
                # an interrupted send: go again, with the same Message-ID
                self._log.execute("UPDATE sent_mail SET started_at = ? WHERE key = ?", (now, key))
                return None
            finally:
                self._log.execute("COMMIT")

    def _forget(self, key: str) -> None:
        with self._lock:
            self._log.execute("DELETE FROM sent_mail WHERE key = ? AND state = 'sending'", (key,))

    # -- SMTP ---------------------------------------------------------------------------

    def _message(self, arguments: Mapping[str, Any], message_id: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = arguments["to"]
        message["Subject"] = arguments["subject"]
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id
        message.set_content(arguments["body"])
        return message

    def _send(self, message: EmailMessage, to: str) -> None:
        where = f"{self.host}:{self.port}"
        try:
            client = smtplib.SMTP(self.host, self.port, timeout=self._timeout)
        except TimeoutError as exc:
            raise _NotSent(
                ConnectorTimeout(f"{self.name}: {where} did not answer in {self._timeout}s")
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise _NotSent(
                ConnectorUnavailable(f"{self.name}: cannot reach the mail server {where}: {exc}")
            ) from exc
        try:
            with client:
                client.send_message(message, from_addr=self.sender, to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            self._refusal(code, reply, f"recipient {to}")
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            self._refusal(exc.smtp_code, exc.smtp_error, "the message")
        except TimeoutError as exc:
            # the server may have taken the message: the key stays logged as sending
            raise ConnectorTimeout(
                f"{self.name}: {where} stopped answering while sending; retry later"
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise ConnectorUnavailable(
                f"{self.name}: the connection to {where} failed while sending: {exc}"
            ) from exc

    def _refusal(self, code: int, reply: bytes | str, what: str) -> None:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        if 400 <= code < 500:
            raise _NotSent(
                ConnectorUnavailable(f"{self.name}: the mail server deferred {what}: {code} {text}")
            )
        raise _Refused(f"the mail server refused {what}: {code} {text}", code)


def _result(arguments: Mapping[str, Any], message_id: str) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "to": arguments["to"],
        "subject": arguments["subject"],
        "status": "sent",
    }


def _fingerprint(arguments: Mapping[str, Any]) -> str:
    canonical = json.dumps({"tool": SEND_EMAIL.name, "arguments": dict(arguments)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Refused(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _NotSent(Exception):
    """Nothing left this process: the key may be used again at once."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(str(error))
        self.error = error

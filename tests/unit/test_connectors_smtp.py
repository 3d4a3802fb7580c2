"""The SMTP connector against a real local SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import socket

import pytest

from connectors import (
    ConnectorError,
    ConnectorUnavailable,
    InvalidArguments,
    SmtpConnector,
    ToolCall,
    UnknownTool,
)
from connectors._smtp import _fingerprint
from examples.acme.mail import MailServer

MAIL = {"to": "anna.schmidt@example.com", "subject": "Invoice INV-1003", "body": "Hello Anna,\nok."}


@pytest.fixture
def server(tmp_path):
    with MailServer(tmp_path / "mailbox.sqlite3") as running:
        yield running


@pytest.fixture
def mail(server, tmp_path):
    with SmtpConnector(
        "mail", server.host, server.port, "agent@acme-corp.nl", sent_log=tmp_path / "sent.sqlite3"
    ) as connector:
        yield connector


def send(connector, key, **changes):
    return connector.invoke(ToolCall("send_email", {**MAIL, **changes}), key)


def test_one_write_tool():
    """The connector offers exactly send_email, as a write."""
    connector = SmtpConnector("mail", "127.0.0.1", 25, "agent@acme-corp.nl")
    assert [(t.name, t.effect, t.connector) for t in connector.tools()] == [
        ("send_email", "write", "mail")
    ]


def test_sent_message_arrives_with_subject_and_body(mail, server):
    """A sent message reaches the server's mailbox with its recipient, subject and body."""
    result = send(mail, "task-1:1")
    [message] = server.messages()
    assert result.ok and result.data["message_id"] == message["message_id"]
    assert (message["to"], message["subject"], message["body"]) == (
        ["anna.schmidt@example.com"],
        "Invoice INV-1003",
        "Hello Anna,\nok.",
    )


def test_same_key_sends_once(mail, server):
    """A repeated idempotency key replays the first result and sends no second mail."""
    first, again = send(mail, "task-1:1"), send(mail, "task-1:1")
    assert again.data == first.data and len(server.messages()) == 1


def test_sent_log_is_shared_by_connectors_naming_it(mail, server, tmp_path):
    """Another connector on the same sent-log sends nothing for a key already sent."""
    send(mail, "task-1:1")
    with SmtpConnector(
        "mail", server.host, server.port, "agent@acme-corp.nl", sent_log=tmp_path / "sent.sqlite3"
    ) as other:
        assert send(other, "task-1:1").ok
    assert len(server.messages()) == 1


def test_message_id_is_derived_from_the_key(mail):
    """Two keys give two Message-IDs; the id is the same for the same key."""
    a, b = send(mail, "task-1:1"), send(mail, "task-1:2")
    assert a.data["message_id"] != b.data["message_id"]
    assert a.data["message_id"] == mail._message_id("task-1:1")


def test_key_reused_for_another_message_is_refused(mail, server):
    """A key already used for a different message is refused and sends nothing."""
    send(mail, "task-1:1")
    result = send(mail, "task-1:1", subject="Something else")
    assert not result.ok and "already used for a different message" in result.error
    assert len(server.messages()) == 1


def test_refused_recipient_is_a_refusal_with_the_reply(mail, server):
    """A recipient the server refuses for good comes back ok=False with the 550 reply."""
    result = send(mail, "task-2:1", to="nobody@example.invalid")
    assert (result.ok, result.status) == (False, 550)
    assert "no such domain" in result.error and server.messages() == []


def test_refused_send_leaves_the_key_free(mail, server):
    """After a refusal the same key can send a corrected message."""
    send(mail, "task-2:1", to="nobody@example.invalid")
    assert send(mail, "task-2:1").ok and len(server.messages()) == 1


def test_invalid_address_is_refused_before_sending(mail, server):
    """A recipient that is no e-mail address raises InvalidArguments."""
    with pytest.raises(InvalidArguments, match="send_email: to"):
        send(mail, "task-3:1", to="anna at example")


def test_header_injection_in_subject_is_refused(mail):
    """A subject with a line break raises InvalidArguments."""
    with pytest.raises(InvalidArguments, match="subject"):
        send(mail, "task-3:1", subject="Hi\r\nBcc: all@example.com")


def test_unknown_tool_is_refused(mail):
    """A tool other than send_email raises UnknownTool."""
    with pytest.raises(UnknownTool):
        mail.invoke(ToolCall("read_inbox", {}), "task-3:1")


def test_send_without_key_is_refused(mail):
    """A send with an empty idempotency key raises ConnectorError."""
    with pytest.raises(ConnectorError, match="without an idempotency key"):
        send(mail, "")


def test_unreachable_server_is_unavailable_and_frees_the_key(tmp_path):
    """No server on the port raises ConnectorUnavailable and logs nothing for the key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "sent.sqlite3"
    with SmtpConnector("mail", "127.0.0.1", port, "agent@acme-corp.nl", sent_log=log) as down:
        with pytest.raises(ConnectorUnavailable, match="cannot reach"):
            send(down, "task-4:1")
        assert down._log.execute("SELECT count(*) FROM sent_mail").fetchone()[0] == 0


def test_key_being_sent_elsewhere_is_busy(mail):
    """A key another call is still sending raises ConnectorUnavailable instead of sending."""
    mail._claim("task-5:1", _fingerprint(MAIL), mail._message_id("task-5:1"))
    with pytest.raises(ConnectorUnavailable, match="being sent by another call"):
        send(mail, "task-5:1")


@pytest.mark.parametrize("subject", ["Hi\u2028Bcc: all@example.com", "Hi\x85there", "Hi\x0bx"])
def test_unicode_line_breaks_in_subject_are_refused(mail, server, subject):
    """U+2028 and the other line breaks Python's mail headers refuse are InvalidArguments
    (a refusal the planner reads), not a crash of the task; nothing is sent."""
    with pytest.raises(InvalidArguments, match="subject"):
        send(mail, "task-4:1", subject=subject)
    assert server.messages() == []
    assert send(mail, "task-4:1").ok  # the key stays free


def test_trailing_newline_does_not_pass_an_anchored_pattern(mail):
    """``$`` in a schema pattern means the end of the input: ``"a@b.nl\\n"`` is no address."""
    with pytest.raises(InvalidArguments, match="send_email: to"):
        send(mail, "task-5:1", to="anna.schmidt@example.com\n")


def test_sent_log_keeps_no_recipient_or_subject(mail, tmp_path):
    """The sent-log (0600) holds keys, fingerprints and message ids, never the recipient
    or the subject; a replay still returns them."""
    first = send(mail, "task-6:1")
    log = tmp_path / "sent.sqlite3"
    assert log.stat().st_mode & 0o777 == 0o600
    raw = log.read_bytes()
    assert b"anna.schmidt" not in raw and b"INV-1003" not in raw
    assert send(mail, "task-6:1").data == first.data

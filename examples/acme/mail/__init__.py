"""Acme's mail: a real SMTP server on loopback delivering to an inspectable mailbox."""

from examples.acme.mail.server import Mailbox, MailServer

__all__ = ["MailServer", "Mailbox"]

"""Signed values for the browser: the CSRF token and the flash message.

CSRF uses a signed double-submit cookie: ``GET /approvals`` sets the cookie
``umiq_csrf`` = ``<nonce>.<HMAC(secret, "csrf" | user | nonce)>`` and puts the same value
in each form's hidden field; a POST passes only if the field equals the cookie and the
signature holds for the user who is logged in. Another site can make a browser send the
basic-auth credentials and the cookie, but it can read neither, so it cannot fill in the
field. The secret is ``UMIQ_REVIEW_SECRET`` when set, so every review process behind one
address accepts the others' forms; otherwise it lives in this process, and a restart
turns open forms stale (the POST is refused, a reload gives a fresh form).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

from worker.errors import ConfigError

CSRF_COOKIE = "umiq_csrf"
CSRF_FIELD = "csrf"
FLASH_COOKIE = "umiq_flash"


#: The shortest ``UMIQ_REVIEW_SECRET`` accepted (characters).
MIN_SECRET_CHARS = 32


def signing_key(secret: str | None) -> bytes | None:
    """The signing key derived from ``UMIQ_REVIEW_SECRET``, or None to draw one.

    Raises ConfigError for a secret shorter than :data:`MIN_SECRET_CHARS`: a guessable
    secret would let another site forge the CSRF token.
    """
    if secret is None:
        return None
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"UMIQ_REVIEW_SECRET has {len(secret)} characters; it needs at least "
            f"{MIN_SECRET_CHARS} (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    return hashlib.sha256(b"umiq-review-signing\0" + secret.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 signatures under a secret, each bound to a purpose."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, purpose: str, *parts: str) -> str:
        message = "\0".join((purpose, *parts)).encode("utf-8")
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    # -- CSRF ----------------------------------------------------------------------------

    def csrf_token(self, user: str) -> str:
        """A fresh token for ``user``: ``<nonce>.<signature>``."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac('csrf', user, nonce)}"

    def csrf_valid(self, user: str, token: str | None) -> bool:
        """Whether ``token`` was made by this process for ``user``."""
        if not token:
            return False
        nonce, _, mac = token.partition(".")
        # bytes: compare_digest refuses non-ASCII str (a forged cookie must not be a 500)
        expected = self._mac("csrf", user, nonce).encode()
        return bool(nonce) and hmac.compare_digest(mac.encode("utf-8", "replace"), expected)

    # -- flash messages --------------------------------------------------------------------

    def flash(self, kind: str, text: str) -> str:
        """A cookie value carrying one message to the next page."""
        payload = _b64(json.dumps({"kind": kind, "text": text}).encode("utf-8"))
        return f"{payload}.{self._mac('flash', payload)}"

    def read_flash(self, value: str | None) -> dict[str, Any] | None:
        """The message in a flash cookie, or None if absent or not signed here."""
        if not value:
            return None
        payload, _, mac = value.partition(".")
        if not hmac.compare_digest(
            mac.encode("utf-8", "replace"), self._mac("flash", payload).encode()
        ):
            return None
        try:
            data = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(data, dict) or data.get("kind") not in ("ok", "error"):
            return None
        return {"kind": data["kind"], "text": str(data.get("text", ""))}

"""Who is asking: HTTP basic auth against ``review_users``, or the read-only bearer token.

Passwords are stored as hashes made by :func:`hash_password` (``umiq review hash-password``):

    scrypt$<log2 n>$<r>$<p>$<salt, base64>$<key, base64>
    pbkdf2_sha256$<iterations>$<salt, base64>$<key, base64>

Any other value is taken as a plain password (for a trial; the server warns at start).
Every comparison is constant-time (``hmac.compare_digest``). A hash is costly on purpose,
so a pair of credentials that verified once is remembered, as an HMAC under a secret of
this process, and the next requests of the same browser cost nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from worker.errors import ConfigError

SCRYPT = "scrypt"
PBKDF2 = "pbkdf2_sha256"
_SCRYPT_LOG2_N, _SCRYPT_R, _SCRYPT_P = 15, 8, 1
_PBKDF2_MIN_ITERATIONS = 100_000
_REMEMBERED = 256
#: Failed logins a user name may have within ``LOGIN_WINDOW`` seconds; beyond, its logins
#: are refused unchecked until the window has passed (password guessing is throttled).
LOGIN_FAILURES = 5
LOGIN_WINDOW = 60.0


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a review user by name, or the holder of the bearer token."""

    name: str
    via: Literal["basic", "token"]
    auditor: bool = False

    @property
    def can_decide(self) -> bool:
        """Only a named person may approve or reject: the audit records who."""
        return self.via == "basic"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32
    )


def hash_password(password: str) -> str:
    """A ``scrypt$…`` hash of ``password`` for ``review_users``."""
    if not password:
        raise ValueError("a review password cannot be empty")
    salt = os.urandom(16)
    key = _scrypt(password, salt, _SCRYPT_LOG2_N, _SCRYPT_R, _SCRYPT_P)
    return f"{SCRYPT}${_SCRYPT_LOG2_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(key)}"


def is_hashed(stored: str) -> bool:
    """Whether a ``review_users`` value is a hash (else: a plain password)."""
    return stored.startswith((f"{SCRYPT}$", f"{PBKDF2}$"))


def _parse(stored: str, user: str) -> tuple[str, list[int], bytes, bytes]:
    """The scheme, numeric parameters, salt and key of a stored hash; ConfigError if bad."""
    scheme, *fields = stored.split("$")
    expected = {SCRYPT: 5, PBKDF2: 3}[scheme]
    try:
        if len(fields) != expected:
            raise ValueError
        params = [int(f) for f in fields[:-2]]
        salt = base64.b64decode(fields[-2], validate=True)
        key = base64.b64decode(fields[-1], validate=True)
    except (ValueError, binascii.Error):
        shape = "scrypt$15$8$1$<salt>$<key>" if scheme == SCRYPT else f"{PBKDF2}$<n>$<salt>$<key>"
        raise ConfigError(
            f"review user {user!r}: the password hash is malformed (expected {shape}); "
            "make one with `umiq review hash-password`"
        ) from None
    if scheme == SCRYPT and not (10 <= params[0] <= 20 and params[1] >= 1 and params[2] >= 1):
        raise ConfigError(f"review user {user!r}: scrypt parameters {params} are out of range")
    if scheme == PBKDF2 and params[0] < _PBKDF2_MIN_ITERATIONS:
        raise ConfigError(
            f"review user {user!r}: {params[0]} PBKDF2 iterations are too few "
            f"(at least {_PBKDF2_MIN_ITERATIONS})"
        )
    return scheme, params, salt, key


def verify_password(password: str, stored: str, *, user: str = "?") -> bool:
    """Whether ``password`` matches ``stored`` (a hash or a plain password)."""
    if not is_hashed(stored):
        return hmac.compare_digest(password.encode("utf-8"), stored.encode("utf-8"))
    scheme, params, salt, key = _parse(stored, user)
    if scheme == SCRYPT:
        got = _scrypt(password, salt, *params)
    else:
        got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, params[0], len(key))
    return hmac.compare_digest(got, key)


class Authenticator:
    """Checks credentials against the configured users and token.

    ``users`` maps names to stored passwords; ``token`` is the bearer token or None;
    ``auditors`` may open sealed fields. With neither users nor a token it refuses to
    exist: a review server is never open by default.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        token: str | None,
        auditors: list[str] | tuple[str, ...],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not users and not token:
            raise ConfigError(
                "refusing to serve the review page without credentials: set UMIQ_REVIEW_USERS "
                '(JSON {"name": "<hash from `umiq review hash-password`>"}) and/or '
                "UMIQ_REVIEW_TOKEN"
            )
        for name, stored in users.items():
            if not name or ":" in name or name != name.strip():
                raise ConfigError(
                    f"review user name {name!r} cannot be used with basic auth (empty, a "
                    "colon, or surrounding spaces)"
                )
            if not stored:
                raise ConfigError(f"review user {name!r} has an empty password")
            if is_hashed(stored):
                _parse(stored, name)
        if token is not None and len(token) < 16:
            raise ConfigError("UMIQ_REVIEW_TOKEN is too short: use at least 16 random characters")
        unknown = sorted(set(auditors) - set(users))
        if unknown:
            raise ConfigError(f"review auditors {unknown} are not review users")
        self.users = dict(users)
        self.token = token
        self.auditors = frozenset(auditors)
        self._secret = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        # an unknown name costs as much as a known one
        self._dummy = hash_password(secrets.token_urlsafe(16))
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def plain_users(self) -> list[str]:
        """Users whose password is configured in plain text (worth a warning)."""
        return sorted(name for name, stored in self.users.items() if not is_hashed(stored))

    def basic(self, user: str, password: str) -> Principal | None:
        """The review user ``user`` if ``password`` is theirs, else None."""
        mark = hmac.new(self._secret, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        if mark in self._verified:
            return self._principal(user)
        if self._throttled(user):
            return None
        stored = self.users.get(user)
        ok = verify_password(password, stored if stored is not None else self._dummy, user=user)
        if stored is not None and not is_hashed(stored):
            # a plain password compares at once: pay the hash anyway, so that the time
            # taken does not tell a configured name from an unknown one
            verify_password(password, self._dummy)
        if not ok or stored is None:
            self._failed(user)
            return None
        if len(self._verified) >= _REMEMBERED:
            self._verified.clear()
        self._verified.add(mark)
        return self._principal(user)

    def _recent(self, user: str) -> deque[float]:
        failures = self._failures.setdefault(user[:200], deque())
        while failures and self._clock() - failures[0] > LOGIN_WINDOW:
            failures.popleft()
        return failures

    def _throttled(self, user: str) -> bool:
        with self._lock:
            return len(self._recent(user)) >= LOGIN_FAILURES

    def _failed(self, user: str) -> None:
        with self._lock:
            if len(self._failures) > 10_000:  # bounded: a flood of names starts over
                self._failures.clear()
            self._recent(user).append(self._clock())

    def bearer(self, token: str) -> Principal | None:
        """The token holder if ``token`` is the configured one, else None."""
        if self.token is None or not hmac.compare_digest(token.encode(), self.token.encode()):
            return None
        return Principal("review-token", "token")

    def _principal(self, user: str) -> Principal:
        return Principal(user, "basic", auditor=user in self.auditors)

    def from_header(self, authorization: str | None) -> Principal | None:
        """The caller named by an ``Authorization`` header, or None."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and value:
            return self.bearer(value)
        if scheme != "basic" or not value:
            return None
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return self.basic(user, password) if sep else None

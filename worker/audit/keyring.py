"""Where the key ring that seals audit fields comes from, and how it is saved.

In order:

- ``UMIQ_KEYRING``: the key ring itself as JSON, ``{"primary": kid, "keys": {kid: b64}}``
  (optionally ``"created": {kid: iso}``), e.g. injected from a secret store;
- ``UMIQ_KEYRING_FILE``: a file holding that JSON (``umiq keys init`` creates one);
- neither: the embedded default ``<data_dir>/keyring.json``, created on first use with
  mode 0600 and a warning: production keeps its keys outside the data dir, next to
  which the audit database (and its backups) lie.

Setting both is refused. A rotated ring is saved atomically (temp file, fsync, rename,
mode 0600), so a crash leaves the old ring or the new one, never half of one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from policies import KeyRing, new_key
from worker.audit.chain import iso_utc
from worker.errors import ConfigError
from worker.files import create_once, fsync_dir
from worker.settings import Settings, get_settings

log = structlog.get_logger("umiq.audit.keyring")

DEFAULT_FILE = "keyring.json"
"""The embedded default key ring file, in the data dir."""


@dataclass(frozen=True)
class KeyRingSource:
    """Where the key ring comes from: ``env`` (UMIQ_KEYRING), ``file`` or ``default``."""

    kind: Literal["env", "file", "default"]
    path: Path | None = None

    def __str__(self) -> str:
        return "UMIQ_KEYRING" if self.kind == "env" else str(self.path)


def keyring_source(settings: Settings | None = None) -> KeyRingSource:
    """Where ``settings`` (default: the process settings) take the key ring from."""
    settings = settings or get_settings()
    if settings.keyring is not None and settings.keyring_file is not None:
        raise ConfigError("set UMIQ_KEYRING or UMIQ_KEYRING_FILE, not both")
    if settings.keyring is not None:
        return KeyRingSource("env")
    if settings.keyring_file is not None:
        return KeyRingSource("file", settings.keyring_file.expanduser().resolve())
    return KeyRingSource("default", settings.data_dir / DEFAULT_FILE)


def new_kid(now: datetime | None = None) -> str:
    """A fresh key id: ``k<YYYYMMDD>-<8 hex>``, readable and unique."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return f"k{stamp}-{os.urandom(4).hex()}"


def generate_keyring() -> KeyRing:
    """A key ring of one fresh key."""
    kid = new_kid()
    return KeyRing({kid: new_key()}, kid, {kid: iso_utc(datetime.now(UTC))})


def rotated(keyring: KeyRing) -> KeyRing:
    """``keyring`` plus a fresh key, which becomes primary."""
    return keyring.with_primary(new_kid(), new_key(), created=iso_utc(datetime.now(UTC)))


def parse_keyring(text: str, origin: str) -> KeyRing:
    """The key ring in JSON ``text`` read from ``origin``; ConfigError says what is wrong.

    Errors never quote the text: it is key material.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"the key ring in {origin} is not valid JSON (line {getattr(exc, 'lineno', '?')})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise ConfigError(
            f'the key ring in {origin} must be a JSON object {{"primary": kid, "keys": '
            "{kid: base64 of 32 bytes}}"
        )
    keys: dict[str, bytes] = {}
    for kid, b64 in data["keys"].items():
        try:
            keys[kid] = base64.b64decode(str(b64).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ConfigError(f"key {kid!r} in {origin} is not valid base64") from None
    created = data.get("created") or {}
    try:
        return KeyRing(keys, data.get("primary"), created if isinstance(created, dict) else {})
    except ValueError as exc:
        raise ConfigError(f"the key ring in {origin} cannot work: {exc}") from None


def dump_keyring(keyring: KeyRing) -> str:
    """``keyring`` as the JSON that ``parse_keyring`` reads (key material: keep it secret)."""
    data: dict[str, Any] = {
        "primary": keyring.primary,
        "keys": {kid: base64.b64encode(key).decode("ascii") for kid, key in keyring.keys.items()},
    }
    if keyring.created:
        data["created"] = dict(keyring.created)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_keyring_file(path: Path) -> KeyRing:
    """The key ring in file ``path`` (a warning if others may read it)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"key ring file {path} does not exist: create it with `umiq keys init`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the key ring file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "keyring.file_readable_by_others",
            path=str(path),
            mode=oct(stat.S_IMODE(mode)),
            hint=f"chmod 600 {path}",
        )
    return parse_keyring(text, str(path))


def _write_temp(keyring: KeyRing, directory: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=".keyring-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dump_keyring(keyring))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def save_keyring(keyring: KeyRing, path: Path) -> None:
    """Write ``keyring`` to ``path`` atomically (temp file, fsync, rename), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _write_temp(keyring, path.parent)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def create_keyring_file(path: Path) -> tuple[KeyRing, bool]:
    """The key ring in ``path``, made there with one fresh key if the file does not exist.

    Returns the ring and whether it was created. Processes starting together create one
    ring: the file appears whole or not at all (:func:`worker.files.create_once`).
    """
    if path.exists():
        return read_keyring_file(path), False
    created = create_once(path, dump_keyring(generate_keyring()).encode("utf-8"), 0o600)
    return read_keyring_file(path), created


def load_keyring(settings: Settings | None = None) -> KeyRing:
    """The key ring from ``settings`` (see the module docstring for where it comes from).

    The embedded default file is created on first use, with a warning naming it.
    """
    settings = settings or get_settings()
    source = keyring_source(settings)
    if source.kind == "env":
        assert settings.keyring is not None
        return parse_keyring(settings.keyring, "UMIQ_KEYRING")
    assert source.path is not None
    if source.kind == "file":
        return read_keyring_file(source.path)
    keyring, created = create_keyring_file(source.path)
    if created:
        log.warning(
            "keyring.created",
            path=str(source.path),
            message=(
                f"created the audit key ring {source.path} (mode 0600) beside the audit "
                "database; in production keep keys outside the data dir: "
                "set UMIQ_KEYRING_FILE or UMIQ_KEYRING"
            ),
        )
    return keyring


def save_source(keyring: KeyRing, settings: Settings | None = None) -> Path:
    """Save ``keyring`` where ``settings`` take it from; refused for UMIQ_KEYRING."""
    source = keyring_source(settings)
    if source.path is None:
        raise ConfigError(
            "the key ring comes from UMIQ_KEYRING (the environment), where umiq cannot save "
            "a new key: point UMIQ_KEYRING_FILE at a copy of it, rotate, then update the "
            "secret from that file"
        )
    save_keyring(keyring, source.path)
    return source.path

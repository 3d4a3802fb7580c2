"""A worker on Postgres does not start while its login could rewrite the audit log.

``umiq health``'s ``login`` check judges the worker's database login
(``worker.audit.login.LoginRights.verdict``): a superuser, a login that can become one
(``SET ROLE``), that may UPDATE, DELETE or TRUNCATE audit steps, or that is no member of
``umiq_worker`` fails it. This gate applies the same verdict when a worker starts:
:class:`LoginGate`, a step of Celery's worker blueprint, runs once per worker process
before the consumer (the last step) connects to the broker, so a refused worker takes no
task. It logs ``worker.login_refused`` (the login, what is wrong, the fix) and exits with
status 78 (``EX_CONFIG``).

``UMIQ_ALLOW_PRIVILEGED_LOGIN=1`` (``Settings.allow_privileged_login``) starts it anyway,
for development and tests against a local superuser, like Celery's ``C_FORCE_ROOT``: a
``worker.login_privileged`` warning at each start says so. The embedded SQLite database
has no logins: nothing to check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from celery import bootsteps

from worker.audit.login import LoginRights
from worker.errors import ConfigError
from worker.settings import Settings

log = structlog.get_logger("umiq.worker")

OVERRIDE = "UMIQ_ALLOW_PRIVILEGED_LOGIN"
"""The setting that starts a worker on a privileged login (development and tests)."""
EX_CONFIG = getattr(os, "EX_CONFIG", 78)
"""The exit status of a refused worker (sysexits' configuration error)."""


@dataclass(frozen=True)
class Decision:
    """Whether a worker starts, and the log line that says why."""

    start: bool
    level: Literal["info", "warning", "error"]
    event: str
    message: str
    facts: dict[str, Any] = field(default_factory=dict)


def decide(
    rights: LoginRights | None,
    *,
    allowed: bool,
    set_role: str | None = None,
    unreadable: str | None = None,
) -> Decision:
    """The gate's decision on a login's ``rights`` (None with the reason ``unreadable``
    when they could not be read): a least-privilege login starts; any other starts only
    when ``allowed`` (the override), with a warning."""
    if rights is None:
        detail = (
            f"cannot read the rights of the worker's database login ({unreadable}): is the "
            "database up and its audit schema migrated (`umiq db upgrade`)?"
        )
        facts: dict[str, Any] = {}
    else:
        fine, detail = rights.verdict(set_role)
        facts = {"login": rights.login, "superuser": rights.superuser, "via": list(rights.via)}
        if fine:
            return Decision(True, "info", "worker.login_checked", detail, facts)
    if allowed:
        return Decision(
            True,
            "warning",
            "worker.login_privileged",
            f"{detail}. Starting anyway: {OVERRIDE}=1 is set (development and tests only, "
            "never in production)",
            facts,
        )
    return Decision(
        False,
        "error",
        "worker.login_refused",
        f"refusing to start: {detail}. ({OVERRIDE}=1 starts it anyway, for development and "
        "tests only)",
        facts,
    )


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, the driver's wrapper removed."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


def check(settings: Settings, timeout: float = 10.0) -> Decision | None:
    """The gate's decision for a worker with ``settings`` (None on SQLite: no logins)."""
    from worker.audit.db import is_sqlite, make_engine
    from worker.audit.login import login_rights

    url = settings.resolved_database_url
    if is_sqlite(url):
        return None
    allowed = settings.allow_privileged_login
    engine = None
    try:
        engine = make_engine(
            url,
            role=settings.database_role,
            connect_args={"connect_timeout": max(1, round(timeout))},
        )
        with engine.connect() as conn:
            rights = login_rights(conn)
    except Exception as exc:  # whatever keeps the rights unread keeps the worker stopped
        return decide(None, allowed=allowed, unreadable=_reason(exc))
    finally:
        if engine is not None:
            engine.dispose()
    return decide(rights, allowed=allowed, set_role=settings.database_role)


def enforce(settings: Settings) -> Decision | None:
    """Log the gate's decision for ``settings``; ConfigError, with the message, when the
    worker must not start."""
    decision = check(settings)
    if decision is None:
        return None
    getattr(log, decision.level)(decision.event, detail=decision.message, **decision.facts)
    if not decision.start:
        raise ConfigError(decision.message)
    return decision


class LoginGate(bootsteps.StartStopStep):  # type: ignore[misc]
    """The worker blueprint's step that refuses a privileged login: it starts before the
    consumer, and a refusal stops the worker with status :data:`EX_CONFIG`."""

    label = "Login gate"

    def start(self, parent: Any) -> None:
        from worker.settings import get_settings

        try:
            enforce(get_settings())
        except ConfigError:  # logged: Celery stops the worker with this status
            raise SystemExit(EX_CONFIG) from None

"""Health and readiness: can a worker with these settings serve tasks?

Each check looks at one thing a worker needs and says what is wrong in words an operator
can act on: the broker answers, the audit database answers, its schema is at the newest
migration, the worker logs in as a least-privilege role (no superuser that ``RESET ROLE``
gives its rights back to), the base model and the role adapters are on disk (or loaded, with
``load_model``) and serve the version every pinned department asks for, the key ring that
seals audit fields is there and opens every data key the database holds.

``umiq health`` prints them and exits 1 when any failed; container health checks and
readiness probes run it. A check whose prerequisite failed is *skipped* (a database that
does not answer has no migration to compare): the failure that matters is named once.
Nothing here downloads, creates or migrates anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from worker.settings import Settings

Status = Literal["ok", "fail", "skip"]

CHECKS = (
    "broker", "database", "migrations", "login", "model", "engine", "keyring", "decisions"
)  # fmt: skip
"""Every check, in the order they run."""


@dataclass(frozen=True)
class Check:
    """The result of one check: ``ok``, ``fail`` or ``skip``, with what was found."""

    name: str
    status: Status
    detail: str
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _masked(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (amqp://…): kombu masks those
        from kombu.utils.url import maybe_sanitize_url

        return str(maybe_sanitize_url(url))


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, with the driver's wrapper removed."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- broker --------------------------------------------------------------------------


def check_broker(settings: Settings, timeout: float = 5.0) -> Check:
    """The broker accepts a connection (AMQP login included)."""
    from kombu import Connection

    url = settings.resolved_broker_url
    shown = _masked(url)
    conn = Connection(url, connect_timeout=timeout)
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:
        return Check("broker", "fail", f"the broker at {shown} does not answer: {_reason(exc)}")
    finally:
        conn.release()
    return Check("broker", "ok", f"connected to {shown}", facts={"url": shown})


# -- database and migrations ---------------------------------------------------------


def _engine(settings: Settings, timeout: float) -> Any:
    from worker.audit.db import is_sqlite, make_engine

    url = settings.resolved_database_url
    if is_sqlite(url):
        return make_engine(url)
    return make_engine(url, connect_args={"connect_timeout": max(1, round(timeout))})


def _embedded_missing(settings: Settings) -> Path | None:
    """The embedded SQLite file when it does not exist yet (created on first use)."""
    if not settings.embedded:
        return None
    path = settings.data_dir / "audit.sqlite"
    return None if path.exists() else path


def check_database(settings: Settings, timeout: float = 5.0) -> Check:
    """The audit database answers a query (as ``UMIQ_DATABASE_ROLE`` when set)."""
    from sqlalchemy import text

    url = settings.resolved_database_url
    shown = _masked(url)
    missing = _embedded_missing(settings)
    if missing is not None:
        return Check("database", "ok", f"embedded SQLite {missing}: created on first use")
    engine = _engine(settings, timeout)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            limit = None
            if engine.dialect.name == "postgresql":
                limit = int(conn.execute(text("SHOW max_connections")).scalar())
    except Exception as exc:
        return Check("database", "fail", f"the database at {shown} does not answer: {_reason(exc)}")
    finally:
        engine.dispose()
    if limit is None:
        return Check("database", "ok", f"connected to {shown}", facts={"url": shown})
    # A worker's audit pool (and as many again when busy) plus one lease per episode.
    pool = settings.database_pool_size
    facts = {"url": shown, "pool_size": pool, "max_connections": limit}
    sized = (
        f"audit pool {pool} (+{pool} when busy)"
        if pool
        else "audit pool sized to the worker's --concurrency"
    )
    return Check(
        "database",
        "ok",
        f"connected to {shown}; {sized}, plus one lease connection per running episode; "
        f"server max_connections {limit}",
        facts=facts,
    )


def check_migrations(settings: Settings, timeout: float = 5.0) -> Check:
    """The audit schema is at the newest migration (``umiq db upgrade`` otherwise)."""
    from alembic.runtime.migration import MigrationContext

    from worker.audit.db import head_revision

    head = head_revision()
    if _embedded_missing(settings) is not None:
        return Check("migrations", "ok", f"embedded SQLite: migrated to {head} on first use")
    engine = _engine(settings, timeout)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        return Check("migrations", "fail", f"cannot read the schema revision: {_reason(exc)}")
    finally:
        engine.dispose()
    facts = {"current": current, "head": head}
    if current == head:
        return Check("migrations", "ok", f"audit schema at head ({head})", facts=facts)
    if settings.embedded:
        return Check(
            "migrations",
            "ok",
            f"embedded SQLite at {current or 'no revision'}: upgraded to {head} on first use",
            facts=facts,
        )
    return Check(
        "migrations",
        "fail",
        f"the audit schema is at {current or 'no revision (empty database)'}, the code expects "
        f"{head}: run `umiq db upgrade` as the database owner",
        facts=facts,
    )


def check_login(settings: Settings, timeout: float = 5.0) -> Check:
    """The worker's database login is its own least-privilege role (``umiq db login-role``):
    no superuser, nor a role that may change audit rows or become one that may."""
    from worker.audit.db import is_sqlite
    from worker.audit.login import login_rights

    if is_sqlite(settings.resolved_database_url):
        return Check("login", "skip", "SQLite has no logins: the file's owner may change it")
    engine = _engine(settings, timeout)
    try:
        with engine.connect() as conn:
            rights = login_rights(conn)
    except Exception as exc:
        return Check("login", "fail", f"cannot read the login's rights: {_reason(exc)}")
    finally:
        engine.dispose()
    fine, detail = rights.verdict(settings.database_role)
    facts = {"login": rights.login, "superuser": rights.superuser, "via": list(rights.via)}
    return Check("login", "ok" if fine else "fail", detail, facts=facts)


# -- model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """What a worker with these settings serves, read from disk without loading weights."""

    base: str
    adapters: dict[str, str | None]
    version: str


def served_model(settings: Settings) -> ServedModel:
    """The base checkpoint, adapter labels and model version (``umiq models show``'s).

    Never fetches: a base missing from the model store is a ModelStoreError saying to
    run ``umiq models fetch``.
    """
    from worker.agent.roles import AGENT_ROLES
    from worker.errors import ModelStoreError
    from worker.models.adapters import (
        adapter_labels,
        checkpoint_digest,
        find_adapters,
        model_version,
        read_adapter,
    )
    from worker.models.store import STORE, checkpoint_name, is_converted

    candidate = Path(settings.base_model).expanduser()
    if candidate.is_dir():
        if not (candidate / "config.json").is_file():
            raise ModelStoreError(f"{candidate} is not a Hugging Face checkpoint (no config.json)")
        base = candidate.resolve()
    else:
        entry = STORE.get(settings.base_model)
        if entry is None:
            raise ModelStoreError(
                f"unknown base model {settings.base_model!r}: neither a directory nor one of "
                f"{', '.join(sorted(STORE))}"
            )
        base = settings.resolved_model_dir / entry.name
        if not is_converted(base):
            raise ModelStoreError(
                f"the base model {entry.name} is not in the model store {base.parent}: "
                "run `umiq models fetch` (or bake it into the image)"
            )
    base_id = f"{checkpoint_name(base)}@{checkpoint_digest(base)}"
    found = find_adapters(settings.resolved_adapters_dir, agent=settings.agent)
    labels = adapter_labels({r: read_adapter(r, p) for r, p in found.items()}, AGENT_ROLES)
    return ServedModel(base_id, dict(labels), model_version(base_id, labels))


def _pins(settings: Settings) -> dict[str, str]:
    return {
        name: dept.adapter_version
        for name, dept in settings.departments.items()
        if dept.adapter_version
    }


def _describe_loaded(settings: Settings) -> dict[str, Any]:
    from worker.models import load_role_model

    return dict(load_role_model(settings).describe())


def check_model(settings: Settings, *, load: bool = False) -> Check:
    """The role model is there (loaded with ``load``) and serves every department's pin.

    A role-model plug-in (``UMIQ_ROLE_MODEL``) and role checkpoints report their version
    only once built, so they are always loaded.
    """
    from worker.errors import UmiqError

    try:
        if load or settings.role_model or settings.role_checkpoints:
            described = _describe_loaded(settings)
            version = described.get("version")
            how = "loaded"
        else:
            served = served_model(settings)
            described = {"base": served.base, "adapters": served.adapters}
            version = served.version
            how = "on disk"
    except (UmiqError, OSError, ImportError, ValueError) as exc:
        return Check("model", "fail", f"the role model cannot be loaded: {exc}")
    facts = {
        "version": version,
        "base": described.get("base"),
        "adapters": described.get("adapters"),
    }
    wrong = {dept: pin for dept, pin in _pins(settings).items() if pin != version}
    if wrong:
        named = "; ".join(f"{dept} is pinned to {pin}" for dept, pin in sorted(wrong.items()))
        return Check(
            "model",
            "fail",
            f"this worker serves model version {version or 'unknown'}, but {named}: deploy "
            "the pinned adapters (`umiq models show`) or change the pin",
            facts=facts,
        )
    adapters = [label for label in (described.get("adapters") or {}).values() if label]
    pinned = sorted(_pins(settings))
    return Check(
        "model",
        "ok",
        f"model version {version} {how} (base {described.get('base')}; "
        f"{len(adapters)} adapter(s))"
        + (f"; serves the pin of {', '.join(pinned)}" if pinned else ""),
        facts=facts,
    )


# -- key ring ------------------------------------------------------------------------


def check_engine(settings: Settings, timeout: float = 5.0) -> Check:
    """The inference engine answers ``GET /health`` with 200 (llama.cpp's server and vLLM
    both do, once their weights are loaded); skipped when the role models run in process
    (``UMIQ_MODEL_BACKEND=hf``) or a ``UMIQ_ROLE_MODEL`` plug-in serves them."""
    import httpx

    if settings.role_model or settings.model_backend != "openai":
        return Check("engine", "skip", "not used: the role models run in this process")
    url = settings.engine_url.rstrip("/") + "/health"
    shown = _masked(url)
    try:
        answer = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return Check("engine", "fail", f"the engine at {shown} does not answer: {_reason(exc)}")
    if answer.status_code != 200:
        why = "still loading the model" if answer.status_code == 503 else answer.text[:200]
        return Check(
            "engine", "fail", f"the engine at {shown} answered {answer.status_code}: {why}"
        )
    facts = {"url": shown, "dialect": settings.engine_dialect}
    return Check("engine", "ok", f"{settings.engine_dialect} engine at {shown} is up", facts=facts)


def _wrapping_kids(settings: Settings, timeout: float) -> set[str]:
    """The key ids that wrap the data keys in the audit database's ``sealed_key`` table."""
    from sqlalchemy import text

    engine = _engine(settings, timeout)
    try:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT DISTINCT kid FROM sealed_key"))}
    finally:
        engine.dispose()


def check_keyring(settings: Settings, timeout: float = 5.0, *, database_ok: bool = True) -> Check:
    """The key ring is where the settings say and holds every key the database uses."""
    from worker.audit.keyring import keyring_source, parse_keyring, read_keyring_file
    from worker.errors import UmiqError

    try:
        source = keyring_source(settings)
        if source.kind == "env":
            assert settings.keyring is not None
            ring = parse_keyring(settings.keyring, "UMIQ_KEYRING")
        else:
            assert source.path is not None
            if source.kind == "default" and not source.path.exists():
                if settings.embedded:
                    return Check(
                        "keyring", "ok", f"embedded: {source.path} is created on first use"
                    )
                return Check(
                    "keyring",
                    "fail",
                    f"no key ring: {source.path} does not exist and neither UMIQ_KEYRING_FILE "
                    "nor UMIQ_KEYRING is set; mount the key ring and point UMIQ_KEYRING_FILE "
                    "at it (`umiq keys init` makes a new one for a new deployment)",
                )
            ring = read_keyring_file(source.path)
    except (UmiqError, ValueError) as exc:
        return Check("keyring", "fail", f"the key ring cannot be read: {exc}")
    facts = {"source": str(source), "primary": ring.primary, "kids": sorted(ring.keys)}
    detail = f"key ring from {source}: primary {ring.primary}, {len(ring.keys)} key(s)"
    if not database_ok or _embedded_missing(settings) is not None:
        return Check("keyring", "ok", detail, facts=facts)
    try:
        used = _wrapping_kids(settings, timeout)
    except Exception as exc:
        return Check(
            "keyring", "ok", f"{detail} (sealed keys not compared: {_reason(exc)})", facts=facts
        )
    missing = sorted(used - set(ring.keys))
    if missing:
        return Check(
            "keyring",
            "fail",
            f"the key ring from {source} lacks key(s) {', '.join(missing)} that wrap data keys "
            "in the audit database: sealed fields could not be opened; restore the ring that "
            "holds them",
            facts=facts,
        )
    return Check("keyring", "ok", f"{detail}; opens every sealed key in the database", facts=facts)


def check_decisions(settings: Settings) -> Check:
    """Whether human decisions are signed: the decision keys readable and a pair.

    Unset, the keys are the data dir's default pair (``worker.audit.decisions``); this
    check reads it, creates nothing, and warns when the private key lies in the data dir.
    """
    from worker.audit.checkpoint import key_id
    from worker.audit.decisions import default_paths, signing_key, verifying_key
    from worker.errors import AuditError

    default_private, default_public = default_paths(settings.data_dir)
    private_path = settings.decision_key_file
    if private_path is None and default_private.exists():
        private_path = default_private
    public_path = settings.decision_public_key_file
    if public_path is None and settings.decision_key_file is None and default_public.exists():
        public_path = default_public
    try:
        private = signing_key(private_path)
        public = verifying_key(public_path)
    except AuditError as exc:
        return Check("decisions", "fail", f"a decision key cannot be read: {exc}")
    if public is None and private is not None and settings.decision_key_file is not None:
        public, public_path = private.public_key(), settings.decision_key_file  # its half
    signer = None if private is None else key_id(private.public_key())
    if signer is not None and public is not None and signer != key_id(public):
        return Check(
            "decisions",
            "fail",
            f"the private decision key {private_path} (key {signer}) is not the pair of the "
            f"public decision key {public_path} (key {key_id(public)}): approvals would be "
            "refused",
        )
    if public is None and private is None:
        return Check(
            "decisions",
            "ok",
            f"decision keys {default_private} and {default_public} are created on first use "
            "(worker, CLI, review page); unsigned approvals are refused",
            facts={"signed": True},
        )
    parts = []
    facts: dict[str, Any] = {"signed": True}
    if signer is not None:
        parts.append(f"signs decisions with key {signer}")
    if public is not None:
        parts.append(f"resumes only approvals signed by key {key_id(public)}")
    else:
        parts.append(f"{default_public} is created on first use")
    if private_path == default_private:
        parts.append(
            f"WARNING: the worker's data dir holds the private decision key {default_private}: "
            "whoever reads it can sign approvals; fine for a trial, not for production: keep "
            "it with the review service only (UMIQ_DECISION_KEY_FILE there) and give the "
            "worker UMIQ_DECISION_PUBLIC_KEY_FILE"
        )
        facts["private_key_in_data_dir"] = True
    return Check("decisions", "ok", "; ".join(parts), facts=facts)


# -- all of them ---------------------------------------------------------------------


def _timed(fn: Callable[[], Check]) -> Check:
    started = time.perf_counter()
    check = fn()
    return Check(
        check.name, check.status, check.detail, round(time.perf_counter() - started, 3), check.facts
    )


def run_checks(
    settings: Settings,
    only: Iterable[str] | None = None,
    *,
    load_model: bool = False,
    timeout: float = 5.0,
) -> list[Check]:
    """Run the checks named in ``only`` (default: all of :data:`CHECKS`), in order."""
    wanted = list(CHECKS) if only is None else list(only)
    unknown = sorted(set(wanted) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    results: dict[str, Check] = {}
    for name in CHECKS:
        if name not in wanted:
            continue
        database = results.get("database")
        database_ok = database is None or database.ok
        if name == "broker":
            run = partial(check_broker, settings, timeout)
        elif name == "database":
            run = partial(check_database, settings, timeout)
        elif name == "migrations":
            if not database_ok:
                results[name] = Check(name, "skip", "not checked: the database does not answer")
                continue
            run = partial(check_migrations, settings, timeout)
        elif name == "login":
            if not database_ok:
                results[name] = Check(name, "skip", "not checked: the database does not answer")
                continue
            run = partial(check_login, settings, timeout)
        elif name == "model":
            run = partial(check_model, settings, load=load_model)
        elif name == "engine":
            run = partial(check_engine, settings, timeout)
        elif name == "decisions":
            run = partial(check_decisions, settings)
        else:
            schema = results.get("migrations")
            usable = database_ok and (schema is None or schema.ok)
            run = partial(check_keyring, settings, timeout, database_ok=usable)
        results[name] = _timed(run)
    return [results[name] for name in CHECKS if name in results]


def healthy(checks: Sequence[Check]) -> bool:
    """True when no check failed."""
    return all(check.ok for check in checks)

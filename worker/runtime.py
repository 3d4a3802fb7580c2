"""Per-process singletons of a worker: settings, audit log, toolbox, role model.

The base model and adapters are loaded once per worker process, on first use.
"""

from __future__ import annotations

import threading
from typing import Any

from worker import metrics
from worker.settings import Settings, get_settings

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def _once(key: str, factory: Any) -> Any:
    with _lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


def settings() -> Settings:
    return get_settings()


def audit_log() -> Any:
    def make() -> Any:
        from worker.audit import AuditLog, ensure_schema
        from worker.audit.keyring import load_keyring
        from worker.audit.sealing import Sealer

        url = settings().resolved_database_url
        settings().ensure_dirs()
        ensure_schema(url)
        # Sensitive fields (raw tool requests and responses, token maps) are always sealed.
        audit = AuditLog.from_url(url, sealer=Sealer(load_keyring(settings())))
        return metrics.meter_audit(audit, settings())

    return _once("audit", make)


def toolbox() -> Any:
    def make() -> Any:
        from worker.toolbox import Toolbox

        return Toolbox.from_settings(settings().connectors)

    return _once("toolbox", make)


def role_model() -> Any:
    def make() -> Any:
        from worker.models import load_role_model

        return metrics.meter_model(load_role_model(settings()))

    return _once("model", make)


def prompt_view() -> Any:
    """The prompt view this process serves: ``UMIQ_PROMPT_VIEW``/``UMIQ_TOOL_TOP_K`` where
    set, else what the served adapters were trained on (their training record), else the
    compact view. A model set is thus shown the prompts it was trained on by default."""

    def make() -> Any:
        from worker.agent.views import COMPACT, DEFAULT_TOP_K, PromptView, parse_view
        from worker.models.adapters import trained_view

        s = settings()
        trained = trained_view(s.resolved_adapters_dir) if not s.role_checkpoints else None
        view = parse_view(trained) if trained else PromptView(COMPACT, DEFAULT_TOP_K)
        name = s.prompt_view or view.name
        return PromptView(
            name,
            s.tool_top_k if s.tool_top_k is not None else view.top_k,
            restate=view.restate and name == view.name,
        )

    return _once("prompt_view", make)


def reset() -> None:
    """Forget every singleton (tests, and after settings change)."""
    with _lock:
        _cache.clear()
    get_settings.cache_clear()

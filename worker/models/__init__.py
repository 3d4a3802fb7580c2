"""Role-model hosting: the base-model store, adapters, constrained decoding.

Importing this package is cheap: torch, transformers, peft and xgrammar load only when
:func:`load_role_model` (or a backend) is first used, so policy, connector and audit code
never pull them in. Backends are named in :data:`BACKENDS` (``"module:callable"``) and
resolved on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from worker.models.store import fetch_base, resolve_base

if TYPE_CHECKING:
    from worker.agent.roles import RoleModel
    from worker.settings import Settings

BACKENDS: dict[str, str] = {
    "hf": "worker.models.backend:from_settings",
}
"""Backend name → ``module:callable(settings) -> RoleModel``, imported on first use."""


def load_role_model(settings: Settings, backend: str = "hf", **kwargs: Any) -> RoleModel:
    """The role model that ``settings`` describes (base + adapters, or role checkpoints)."""
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown model backend {backend!r}; known: {sorted(BACKENDS)}") from None
    module, _, attr = target.partition(":")
    factory = getattr(import_module(module), attr)
    return factory(settings, **kwargs)


__all__ = ["BACKENDS", "fetch_base", "load_role_model", "resolve_base"]

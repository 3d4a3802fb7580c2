"""Role-model hosting: the base-model store, adapters, constrained decoding.

Importing this package is cheap: torch, transformers, peft and xgrammar load only when
:func:`load_role_model` (or a backend) is first used, so policy, connector and audit code
never pull them in. Backends are named in :data:`BACKENDS` (``"module:callable"``) and
resolved on first use; a plug-in named by ``settings.role_model`` (``UMIQ_ROLE_MODEL``)
replaces them.
"""

from __future__ import annotations

from importlib import import_module
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from worker.errors import ConfigError
from worker.models.store import fetch_base, resolve_base

if TYPE_CHECKING:
    from worker.agent.roles import RoleModel
    from worker.settings import Settings

BACKENDS: dict[str, str] = {
    "hf": "worker.models.backend:from_settings",
    "openai": "worker.models.engine:from_settings",
}
"""Backend name → ``module:callable(settings) -> RoleModel``, imported on first use."""


def load_role_model(settings: Settings, backend: str | None = None, **kwargs: Any) -> RoleModel:
    """The role model that ``settings`` describes (base + adapters, or role checkpoints).

    ``backend`` defaults to ``settings.model_backend`` (``UMIQ_MODEL_BACKEND``): ``hf`` in
    process, ``openai`` an inference engine (:mod:`worker.models.engine`).

    With ``settings.role_model`` set (``"package.module:factory"``) the plug-in's
    ``factory(settings, **kwargs)`` builds it instead, whatever ``backend`` says.
    """
    plugin = getattr(settings, "role_model", None)
    if plugin:
        return load_plugin(plugin, settings, **kwargs)
    if backend is None:
        backend = getattr(settings, "model_backend", "hf")
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown model backend {backend!r}; known: {sorted(BACKENDS)}") from None
    module, _, attr = target.partition(":")
    factory = getattr(import_module(module), attr)
    return factory(settings, **kwargs)


def load_plugin(target: str, settings: Settings, **kwargs: Any) -> RoleModel:
    """Import ``target`` (``"package.module:factory"``) and build the role model with it.

    Raises ConfigError saying what is wrong: a malformed name, a module that does not
    import, a missing or non-callable factory, or a result without ``generate`` and
    ``describe``.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise ConfigError(
            f"role_model {target!r} is not 'package.module:factory' "
            "(e.g. 'mybackend.remote:from_settings')"
        )
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"role_model {target!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        factory = attrgetter(attr)(module)
    except AttributeError:
        raise ConfigError(
            f"role_model {target!r}: module {module_name!r} has no attribute {attr!r}"
        ) from None
    if not callable(factory):
        raise ConfigError(
            f"role_model {target!r}: {attr!r} is a {type(factory).__name__}, not a callable "
            "factory(settings) -> RoleModel"
        )
    model = factory(settings, **kwargs)
    missing = [
        name for name in ("generate", "describe") if not callable(getattr(model, name, None))
    ]
    if missing:
        raise ConfigError(
            f"role_model {target!r} returned a {type(model).__name__} without "
            f"{' and '.join(f'{name}()' for name in missing)}: a RoleModel needs "
            "generate(requests) and describe()"
        )
    return model


__all__ = ["BACKENDS", "fetch_base", "load_plugin", "load_role_model", "resolve_base"]

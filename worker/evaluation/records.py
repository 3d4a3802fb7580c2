"""Evaluation's record of a training run: ``umiq-eval.json`` next to its model card.

``umiq eval static --card OUT`` adds its figures to ``OUT/umiq-eval.json`` under a name
(the data file and the limit); an entry of the same name is replaced. Evaluation owns
this file: training's record (``umiq-train.json``) never holds figures, and the model
card (``worker.training.card``) reads them from here to render its Evaluation section
(:func:`evaluation_lines`). A training record written before this file existed may still
carry an ``evaluation`` section; :func:`read_evaluation` reads it too, this file's
entries over it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.errors import ConfigError
from worker.evaluation.metrics import STATIC_METRICS
from worker.models.adapters import TRAIN_RECORD

EVAL_JSON = "umiq-eval.json"
VERSION = 1
"""The version of ``umiq-eval.json``'s layout: ``{"version": 1, "evaluation": {name: figures}}``."""


def record_evaluation(out: Path, name: str, figures: Mapping[str, Any]) -> Path:
    """Add evaluation ``figures`` under ``name`` to ``umiq-eval.json`` of the training run
    in ``out``; an entry of the same name is replaced. Returns the file's path."""
    out = Path(out)
    if not (out / TRAIN_RECORD).is_file():
        raise ConfigError(
            f"{out} has no model card ({TRAIN_RECORD}): pass the output folder of `umiq train`"
        )
    entries = {**_stored(out), name: dict(figures)}
    path = out / EVAL_JSON
    record = {"version": VERSION, "evaluation": entries}
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_evaluation(out: Path) -> dict[str, Any]:
    """The named figures recorded for the run in ``out`` (empty when none): an older
    training record's ``evaluation`` section, then ``umiq-eval.json``'s entries over it."""
    out = Path(out)
    legacy: Any = None
    train = out / TRAIN_RECORD
    if train.is_file():
        legacy = json.loads(train.read_text(encoding="utf-8")).get("evaluation")
    return {**(legacy if isinstance(legacy, Mapping) else {}), **_stored(out)}


def _stored(out: Path) -> dict[str, Any]:
    path = out / EVAL_JSON
    if not path.is_file():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("version") != VERSION:
        raise ConfigError(
            f"{path} is version {record.get('version')!r}; this umiq reads version {VERSION}"
        )
    return dict(record.get("evaluation") or {})


def evaluation_lines(evaluation: Mapping[str, Any]) -> list[str]:
    """Markdown of the figures: static metrics as one table (rows: where they were
    measured), anything else as JSON."""
    static = {k: v for k, v in evaluation.items() if isinstance(v, dict) and "plan_acc" in v}
    lines: list[str] = []
    if static:
        lines += [
            "| evaluated on | "
            + " | ".join(label for label, _, _ in STATIC_METRICS)
            + " | steps |",
            "|---|" + "---|" * (len(STATIC_METRICS) + 1),
        ]
        for name, m in static.items():
            cells = " | ".join(f"{m[key]:.3f}" for _, key, _ in STATIC_METRICS)
            lines.append(f"| {name} | {cells} | {m.get('steps', '–')} |")
        lines.append("")
    rest = {k: v for k, v in evaluation.items() if k not in static}
    if rest:
        lines += ["```json", json.dumps(rest, indent=2, ensure_ascii=False), "```"]
    return lines

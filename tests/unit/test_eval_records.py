"""Evaluation's own record of a training run (``umiq-eval.json``) and the model card
that shows it; a copy of the shipped run's training record stands in for a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.evaluation.records import EVAL_JSON, read_evaluation, record_evaluation
from worker.settings import SHIPPED_ADAPTERS
from worker.training.card import CARD_JSON, read_card_record, write_card, write_readme

FIGURES = {"plan_acc": 0.75, "act_em": 1.0, "hallu_rate": 0.0, "arg_f1": 0.9,
           "rouge_l": 0.31, "steps": 20}  # fmt: skip
ROW = "| static dev.json (first 8) | 0.750 | 1.000 | 0.000 | 0.900 | 0.310 | 20 |"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(SHIPPED_ADAPTERS / CARD_JSON, out / CARD_JSON)
    return out


def test_figures_go_to_evaluations_file_not_the_training_record(run: Path) -> None:
    """record_evaluation writes umiq-eval.json and leaves umiq-train.json as it was."""
    before = (run / CARD_JSON).read_bytes()
    path = record_evaluation(run, "static dev.json (first 8)", FIGURES)
    assert path == run / EVAL_JSON
    assert json.loads(path.read_text()) == {
        "version": 1,
        "evaluation": {"static dev.json (first 8)": FIGURES},
    }
    assert (run / CARD_JSON).read_bytes() == before


def test_an_entry_of_the_same_name_is_replaced(run: Path) -> None:
    """Recording under a name again replaces its figures and keeps the other names."""
    record_evaluation(run, "static dev.json (first 8)", {**FIGURES, "plan_acc": 0.5})
    record_evaluation(run, "live test", {"pass_rate": 0.15})
    record_evaluation(run, "static dev.json (first 8)", FIGURES)
    assert read_evaluation(run) == {
        "static dev.json (first 8)": FIGURES,
        "live test": {"pass_rate": 0.15},
    }


def test_the_model_card_shows_the_recorded_figures(run: Path) -> None:
    """write_readme renders static figures as a table row and other figures as JSON."""
    write_readme(run)
    assert "## Evaluation\n\nNot evaluated yet." in (run / "README.md").read_text()
    record_evaluation(run, "static dev.json (first 8)", FIGURES)
    record_evaluation(run, "live test", {"pass_rate": 0.15})
    readme = write_readme(run).read_text()
    assert ROW in readme
    assert '"pass_rate": 0.15' in readme


def test_a_rewritten_training_card_still_shows_the_figures(run: Path) -> None:
    """A resumed training run rewriting its card keeps evaluation's figures on it."""
    record_evaluation(run, "static dev.json (first 8)", FIGURES)
    write_card(run, read_card_record(run))
    assert ROW in (run / "README.md").read_text()
    assert read_evaluation(run) == {"static dev.json (first 8)": FIGURES}


def test_an_older_records_evaluation_section_is_still_read(run: Path) -> None:
    """Figures an older umiq-train.json carries are read, and kept when the card is
    rewritten; umiq-eval.json's entry of the same name wins."""
    record = read_card_record(run)
    older = {"static dev.json (first 8)": {**FIGURES, "plan_acc": 0.5}, "old": {"x": 1}}
    (run / CARD_JSON).write_text(json.dumps({**record, "evaluation": older}))
    write_card(run, record)
    assert read_card_record(run)["evaluation"] == older
    record_evaluation(run, "static dev.json (first 8)", FIGURES)
    assert read_evaluation(run) == {"static dev.json (first 8)": FIGURES, "old": {"x": 1}}
    assert ROW in write_readme(run).read_text()


def test_a_folder_without_a_training_record_is_refused(tmp_path: Path) -> None:
    """Only the output folder of `umiq train` takes evaluation figures."""
    with pytest.raises(ConfigError, match="no model card"):
        record_evaluation(tmp_path, "x", FIGURES)
    assert not (tmp_path / EVAL_JSON).exists()


def test_an_unknown_version_is_refused(run: Path) -> None:
    """A umiq-eval.json of another layout version is not misread."""
    (run / EVAL_JSON).write_text(json.dumps({"version": 2, "evaluation": {}}))
    with pytest.raises(ConfigError, match="version 2"):
        read_evaluation(run)

"""Serving shows a model set the prompts it was trained on: the view its training record
states, unless the operator sets one (``worker.runtime.prompt_view``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker import runtime
from worker.agent.views import ALPHA_UMI, COMPACT, DEFAULT_TOP_K, PromptView, parse_view, view_of
from worker.models.adapters import trained_view
from worker.training.data import data_view


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("UMIQ_PROMPT_VIEW", "UMIQ_TOOL_TOP_K", "UMIQ_ROLE_CHECKPOINTS"):
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    yield monkeypatch
    runtime.reset()


COMPACT_RS = {"name": COMPACT, "restate": True}


def _adapters(root: Path, view: object | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    record = {"umiq_train": 1, "method": "glpft"}
    if view is not None:
        record["prompt_view"] = view
    (root / "umiq-train.json").write_text(json.dumps(record))
    return root


def test_spec_round_trips_and_bad_specs_are_refused() -> None:
    for view in (PromptView(COMPACT, 3), PromptView(ALPHA_UMI)):
        assert parse_view(view.spec()) == (view if view.name == COMPACT else PromptView(ALPHA_UMI))
    assert view_of({"prompt_view": "compact"}) == PromptView(COMPACT, DEFAULT_TOP_K)
    assert view_of({}) == PromptView(ALPHA_UMI)
    with pytest.raises(ValueError, match="unknown prompt view"):
        parse_view({"name": "verbose"})
    with pytest.raises(ValueError, match="top_k"):
        parse_view({"name": COMPACT, "top_k": 0})


def test_trained_view_reads_the_record_and_ignores_what_it_cannot_read(tmp_path: Path) -> None:
    assert trained_view(_adapters(tmp_path / "a", {"name": COMPACT, "top_k": 6})) == {
        "name": COMPACT,
        "top_k": 6,
    }
    assert trained_view(_adapters(tmp_path / "b", None)) is None
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "umiq-train.json").write_text("{not json")
    assert trained_view(tmp_path / "c") is None
    assert trained_view(tmp_path / "missing") is None
    assert trained_view(None) is None


def test_the_served_view_is_the_trained_one_unless_set(fresh: pytest.MonkeyPatch, tmp_path: Path):
    adapters = _adapters(tmp_path / "run", {"name": COMPACT, "top_k": 5})
    fresh.setenv("UMIQ_ADAPTERS_DIR", str(adapters))
    assert runtime.prompt_view() == PromptView(COMPACT, 5)

    fresh.setenv("UMIQ_TOOL_TOP_K", "9")
    runtime.reset()
    assert runtime.prompt_view() == PromptView(COMPACT, 9)

    fresh.setenv("UMIQ_PROMPT_VIEW", "alpha-umi")
    runtime.reset()
    assert runtime.prompt_view().name == ALPHA_UMI

    # a model set trained on restated planner prompts is served them; another view, not
    fresh.setenv("UMIQ_ADAPTERS_DIR", str(_adapters(tmp_path / "rs", {**COMPACT_RS, "top_k": 6})))
    fresh.delenv("UMIQ_PROMPT_VIEW")
    runtime.reset()
    assert runtime.prompt_view() == PromptView(COMPACT, 9, restate=True)
    fresh.setenv("UMIQ_PROMPT_VIEW", "alpha-umi")
    runtime.reset()
    assert runtime.prompt_view() == PromptView(ALPHA_UMI, 9)

    # a record naming no view, with nothing set: the compact default
    fresh.delenv("UMIQ_PROMPT_VIEW")
    fresh.delenv("UMIQ_TOOL_TOP_K")
    fresh.setenv("UMIQ_ADAPTERS_DIR", str(_adapters(tmp_path / "old", None)))
    runtime.reset()
    assert runtime.prompt_view() == PromptView(COMPACT, DEFAULT_TOP_K)


def test_the_shipped_adapters_are_served_the_view_they_were_trained_on(
    fresh: pytest.MonkeyPatch,
) -> None:
    from worker.settings import SHIPPED_ADAPTERS

    fresh.delenv("UMIQ_ADAPTERS_DIR", raising=False)
    fresh.setenv("UMIQ_SHIPPED_ADAPTERS", "1")
    fresh.delenv("UMIQ_BASE_MODEL", raising=False)
    record = json.loads((SHIPPED_ADAPTERS / "umiq-train.json").read_text())
    assert record["prompt_view"]["name"] == COMPACT
    assert runtime.prompt_view() == parse_view(record["prompt_view"])


def test_data_view_is_the_view_every_trajectory_names(tmp_path: Path) -> None:
    one = {"tools": [], "conversations": [], "prompt_view": {"name": COMPACT, "top_k": 8}}
    (tmp_path / "same.json").write_text(json.dumps([one, one]))
    assert data_view(tmp_path / "same.json") == {"name": COMPACT, "top_k": 8}
    mixed = [one, {**one, "prompt_view": {"name": COMPACT, "top_k": 4}}]
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    assert data_view(tmp_path / "mixed.json") is None
    (tmp_path / "toolbench.json").write_text(json.dumps([{"tools": [], "conversations": []}]))
    assert data_view(tmp_path / "toolbench.json") == {"name": ALPHA_UMI}

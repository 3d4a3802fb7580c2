"""The shipped GLPFT role adapters load on the real base and change what the roles say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors import HttpConnector
from worker.agent import protocol
from worker.agent.roles import GenerationRequest
from worker.settings import SHIPPED_ADAPTERS, Settings

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def test_settings_default_to_the_shipped_adapters() -> None:
    """With nothing set and the default base, the shipped adapters are the ones in use."""
    assert SHIPPED_ADAPTERS.is_dir()
    assert Settings().resolved_adapters_dir == SHIPPED_ADAPTERS
    assert Settings(shipped_adapters=False).resolved_adapters_dir is None
    assert Settings(base_model="/some/other/checkpoint").resolved_adapters_dir is None


def test_shipped_adapters_load_and_run_each_role(model_dir: Path, erp: Any) -> None:
    """Each shipped role adapter validates against the real base and labels its output."""
    from worker.models.adapters import find_adapters
    from worker.models.backend import HFRoleModel
    from worker.models.store import resolve_base

    base = resolve_base(Settings(model_dir=model_dir))
    with HttpConnector.from_url(name="erp", base_url=erp.url) as erp_connector:
        docs = [spec.alpha_umi_doc() for spec in erp_connector.tools()]
    turns = [{"from": "user", "value": "Could you look up invoice INV-1004?"}]
    requests = [
        GenerationRequest("planner", protocol.planner_prompt(docs, turns), max_new_tokens=8),
        GenerationRequest("summarizer", protocol.summarizer_prompt(turns), max_new_tokens=8),
    ]
    model = HFRoleModel(base, find_adapters(SHIPPED_ADAPTERS))
    described = model.describe()
    outputs = model.generate(requests)
    assert [g.adapter.split("@")[0] for g in outputs if g.adapter] == ["planner", "summarizer"]
    assert all(described["adapters"][role] for role in ("planner", "caller", "summarizer"))

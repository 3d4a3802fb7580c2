"""The engine backend against a real llama.cpp server with the shipped role adapters.

Needs ``umiq models build-engine`` and ``umiq models export-gguf`` (docs/serving.md);
skipped, saying which is missing, without them. ``make test`` builds neither: compiling
llama.cpp takes long and needs a C++ toolchain.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors import HttpConnector
from connectors._schema import is_valid
from worker.agent import protocol
from worker.agent.roles import CallerConstraint, GenerationRequest
from worker.models.engine import EngineRoleModel
from worker.models.llamacpp import find_binary, gguf_files, serve_command, start_server
from worker.settings import SHIPPED_ADAPTERS, Settings

pytestmark = [pytest.mark.real_model, pytest.mark.slow]
ROLES = ("planner", "caller", "summarizer")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A llama-server on loopback with the exported base and the three role adapters."""
    data_dir = Settings().data_dir
    if find_binary("llama-server", data_dir) is None:
        pytest.skip("llama-server is not built: run `umiq models build-engine`")
    files = gguf_files(data_dir)
    missing = [name for name in ("base", *ROLES) if name not in files]
    if missing:
        pytest.skip(f"no GGUF for {missing}: run `umiq models export-gguf`")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = serve_command(data_dir, port=port, parallel=2, threads=1, ctx_per_slot=4096)
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    proc = start_server(cmd, url, timeout=300, log=log, nice=True)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def model(engine_url: str) -> Iterator[EngineRoleModel]:
    from worker.models import load_role_model

    loaded = load_role_model(
        Settings(model_backend="openai", engine_url=engine_url, engine_concurrency=2)
    )
    assert isinstance(loaded, EngineRoleModel)
    yield loaded
    loaded.close()


def test_engine_serves_the_shipped_adapter_of_each_role(model: EngineRoleModel) -> None:
    """The server loaded one LoRA per role and describe() names the shipped adapters."""
    from worker.models.adapters import find_adapters, read_adapter

    described = model.describe()
    shipped = {r: read_adapter(r, p).label for r, p in find_adapters(SHIPPED_ADAPTERS).items()}
    assert described["adapters"] == shipped
    _, handles = model.served()
    assert sorted(handles[r] for r in ROLES) == [0, 1, 2]


def test_constrained_caller_output_is_a_valid_call(model: EngineRoleModel, erp: Any) -> None:
    """Through the real engine and its GBNF grammar, the caller writes a schema-valid call."""
    with HttpConnector.from_url(name="erp", base_url=erp.url) as connector:
        specs = list(connector.tools())
    docs = [spec.alpha_umi_doc() for spec in specs]
    asks = [
        "Could you look up invoice INV-1004?",
        "Which purchase orders of vendor V-0042 are still open?",
    ]
    requests = []
    for ask in asks:
        thought = "I should look this up in the ERP. Next: caller."
        turns = [{"from": "user", "value": ask}, {"from": "assistant", "value": thought}]
        requests.append(
            GenerationRequest(
                "caller",
                protocol.caller_prompt(docs, turns, thought),
                max_new_tokens=96,
                constraint=CallerConstraint(tuple(specs)),
            )
        )
    outputs = model.generate(requests)
    by_name = {spec.name: spec for spec in specs}
    for out in outputs:
        call = protocol.parse_caller(out.text)
        assert call.tool in by_name, out.text
        assert is_valid(call.arguments, by_name[call.tool].parameters), out.text
        assert out.extra["constrained"] is True
        assert out.adapter is not None and out.adapter.startswith("caller@")


def test_planner_and_summarizer_stop_like_the_in_process_path(model: EngineRoleModel) -> None:
    """The planner ends at its marker (kept) and the summarizer never carries </s>."""
    docs = [
        {"Name": "get_invoice", "function": "Get one invoice.", "input": {"invoice_id": "string"}}
    ]
    turns = [{"from": "user", "value": "Could you look up invoice INV-1004?"}]
    plan, summary = model.generate(
        [
            GenerationRequest("planner", protocol.planner_prompt(docs, turns), max_new_tokens=96),
            GenerationRequest("summarizer", protocol.summarizer_prompt(turns), max_new_tokens=48),
        ]
    )
    markers = [m for m in protocol.MARKERS.values() if plan.text.endswith(m)]
    assert markers or plan.extra["finish"] == "length", plan.text
    assert "</s>" not in summary.text
    assert plan.prompt_tokens > 50 and plan.completion_tokens > 0


def test_repeated_prompt_is_served_from_the_prompt_cache(model: EngineRoleModel) -> None:
    """Sending the same prompt again re-evaluates almost none of it (llama.cpp's cache)."""
    turns = [{"from": "user", "value": "Please tell me the status of invoice INV-1001."}]
    prompt = protocol.summarizer_prompt(turns)
    first = model.generate([GenerationRequest("summarizer", prompt, max_new_tokens=4)])[0]
    again = model.generate([GenerationRequest("summarizer", prompt, max_new_tokens=4)])[0]
    assert again.text == first.text
    assert again.extra["cached_tokens"] >= first.prompt_tokens - 2


def test_gguf_files_come_from_the_shipped_adapters() -> None:
    """The exported adapters name the roles the shipped folder holds (export-gguf ran on it)."""
    files = gguf_files(Settings().data_dir)
    if not files:
        pytest.skip("no GGUF: run `umiq models export-gguf`")
    assert {Path(p).stem for r, p in files.items() if r != "base"} == set(ROLES)

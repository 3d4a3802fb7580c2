"""The engine backend against a real llama.cpp server with the shipped role adapters,
alone and behind a real worker running Acme tasks on RabbitMQ and Postgres.

Needs llama-server in llama.cpp's home (``UMIQ_ENGINE_HOME``) and the GGUF files of the
base and the shipped adapters (``.umiq/engines/gguf``): ``make test`` makes both first
(``make engine``; docs/serving.md). Without them the tests are skipped, saying what is
missing, and under ``UMIQ_REQUIRE_SERVICES=1`` (CI) they fail.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors import HttpConnector
from connectors._schema import is_valid
from tests.support.cli import ALLOW_PRIVILEGED_LOGIN, umiq
from tests.support.required import require_engine
from worker.agent import protocol
from worker.agent.roles import AGENT_ROLES as ROLES
from worker.agent.roles import CallerConstraint, GenerationRequest
from worker.models.engine import EngineRoleModel
from worker.models.llamacpp import input_digest, serve_command, start_server, stop_server
from worker.settings import SHIPPED_ADAPTERS, Settings, get_settings

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _shipped_labels() -> dict[str, str]:
    from worker.models.adapters import find_adapters, read_adapter

    return {r: read_adapter(r, p).label for r, p in find_adapters(SHIPPED_ADAPTERS).items()}


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A llama-server on loopback with the exported base and the three role adapters
    (two slots, two threads). Not niced: the tests wait on it, and llama.cpp's threads
    starve under a nice 0 load (a niced server took over 100 s a generation)."""
    settings = Settings()
    data_dir, home = settings.data_dir, settings.resolved_engine_home
    require_engine(data_dir, home)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = serve_command(data_dir, port=port, parallel=2, threads=2, ctx_per_slot=4096, home=home)
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    proc = start_server(cmd, url, timeout=300, log=log)
    try:
        yield url
    finally:
        stop_server(proc)


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
    described = model.describe()
    assert described["adapters"] == _shipped_labels()
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


def test_a_planner_step_after_a_caller_step_reuses_the_planners_cache(
    model: EngineRoleModel, erp: Any
) -> None:
    """The client sends a planner prompt back to the slot its planner filled, not to the
    caller's slot that shares more text (the engine would clear that one for its other
    adapter), so the planner's earlier prompt comes from the cache."""
    with HttpConnector.from_url(name="erp", base_url=erp.url) as connector:
        docs = [spec.alpha_umi_doc() for spec in connector.tools()][:6]
    thought = "First I need the details of INV-1004. I'll use get_invoice.\n Next: caller."
    turns: list[dict[str, str]] = [{"from": "user", "value": "Where does INV-1004 stand?"}]
    first = protocol.planner_prompt(docs, turns)
    turns.append({"from": "assistant", "value": thought})
    call = 'Action: get_invoice\nAction Input: {"invoice_id": "INV-1004"}'
    caller = protocol.caller_prompt(docs, turns, thought)
    turns += [
        {"from": "caller", "value": call},
        {"from": "observation", "value": '{"error": "", "response": {"id": "INV-1004"}}'},
    ]
    second = protocol.planner_prompt(docs, turns)
    outs = [
        model.generate([GenerationRequest(role, prompt, max_new_tokens=4)])[0]
        for role, prompt in (("planner", first), ("caller", caller), ("planner", second))
    ]
    assert outs[0].extra["slot"] == outs[2].extra["slot"] != outs[1].extra["slot"]
    assert outs[2].extra["slot_choice"] == "prefix"
    # the history before the first planner prompt's end is cached
    assert outs[2].extra["cached_tokens"] >= outs[0].prompt_tokens // 2


def test_no_slot_is_handed_a_cache_that_another_adapter_computed(engine_url: str) -> None:
    """A caller prompt, an unrelated planner prompt, then a planner prompt that shares
    the caller's start, in one slot: the last is computed as with no cache at all.
    llama-server's default host-memory prompt cache restores saved KV by shared tokens
    whatever adapter computed it (a planner got 269 cached tokens here and other
    probabilities); the served command turns that cache off (``--cache-ram 0``)."""
    import httpx

    from worker.data.build import split_roles

    tools = [
        {"Name": "get_invoice", "function": "Get one invoice.", "input": {"invoice_id": "id"}},
        {"Name": "get_vendor", "function": "Get one vendor.", "input": {"vendor_id": "id"}},
    ]
    call = 'Action: get_invoice\nAction Input: {\n  "invoice_id": "INV-1005"\n}'
    observation = (
        '{"error": "", "response": {"id": "INV-1005", "vendor_id": "V-0056", "amount": 812.4, '
        '"currency": "EUR", "due_date": "2025-03-04", "status": "open"}}'
    )
    turns = [
        {"from": "user", "value": "Please pay INV-1005 on 2025-03-01."},
        {"from": "assistant", "value": "I need INV-1005. I'll use get_invoice.\n Next: caller."},
        {"from": "caller", "value": call},
        {"from": "observation", "value": observation},
        {"from": "assistant", "value": "INV-1005 came back. Done.\n Next: conclusion."},
        {"from": "conclusion", "value": "Done."},
    ]
    trajectory = {"tools": tools, "prompt_view": {"name": "compact"}, "conversations": turns}
    samples = split_roles([trajectory])
    caller, planner = samples["caller"][0]["input"], samples["planner"][1]["input"]
    unrelated = protocol.summarizer_prompt([{"from": "user", "value": "Who manages E-1002?"}])
    client = httpx.Client(base_url=engine_url, timeout=300)
    ids = {Path(a["path"]).stem: int(a["id"]) for a in client.get("/lora-adapters").json()}

    def complete(prompt: str, role: str, *, slot: int = 0, cache: bool = True) -> Any:
        body = {
            "prompt": prompt,
            "max_tokens": 12,
            "temperature": 0.0,
            "top_k": 1,
            "n_probs": 1,
            "cache_prompt": cache,
            "id_slot": slot,
            "lora": [{"id": i, "scale": 1.0 if i == ids[role] else 0.0} for i in ids.values()],
        }
        answer = client.post("/completion", json=body).json()
        probs = [p["top_logprobs"][0]["logprob"] for p in answer["completion_probabilities"]]
        return answer["content"], probs

    alone = complete(planner, "planner", slot=1, cache=False)
    complete(caller, "caller")
    complete(unrelated, "planner")
    assert complete(planner, "planner") == alone


def test_gguf_files_come_from_the_shipped_adapters() -> None:
    """The served adapters are the checkout's shipped ones as they are now: export.json
    records each role's GGUF as made from the shipped adapter files (sha256)."""
    settings = Settings()
    files = require_engine(settings.data_dir, settings.resolved_engine_home)
    assert {Path(p).stem for r, p in files.items() if r != "base"} == set(ROLES)
    record = json.loads((files["base"].parent / "export.json").read_text())
    for role in ROLES:
        made_from = record["files"][role]["digest"]
        assert made_from == input_digest(SHIPPED_ADAPTERS / role), f"{role}: run `make engine`"


# -- Acme tasks through a real worker whose role models are the engine's ---------------------

#: A finance payment (an invoice read, then a write) and an HR leave decision: two
#: departments, two connectors; the shipped adapters end both by themselves (docs/results:
#: 2 of 2 passed live). Two tasks keep the module short: about a minute each on a quiet
#: machine, many more when the cores are busy.
FAMILIES = ["schedule_payment", "decide_closed_leave"]
MAX_STEPS = 6
TASK_TIMEOUT_S = 900
END_OUTCOMES = {"answered", "gave_up", "held", "awaiting_approval"}


@pytest.fixture
def engine_worker_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    engine_url: str,
    amqp_url: str,
    postgres_url: str,
) -> Iterator[str]:
    """This process's settings for ``run_live``: RabbitMQ, a fresh Postgres audit database
    at head, and the engine backend at ``engine_url`` (the worker inherits them)."""
    for name in [k for k in os.environ if k.startswith("UMIQ_")]:
        monkeypatch.delenv(name)
    settings = {
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_MODEL_BACKEND": "openai",
        "UMIQ_ENGINE_URL": engine_url,
        "UMIQ_ENGINE_CONCURRENCY": "2",  # the server's slots
        "UMIQ_DATA_DIR": str(tmp_path / "client"),
        **ALLOW_PRIVILEGED_LOGIN,  # the worker logs in as the test server's postgres
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    done = umiq(dict(os.environ), "db", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    get_settings.cache_clear()
    yield postgres_url
    get_settings.cache_clear()


@pytest.mark.integration
@pytest.mark.timeout(2 * TASK_TIMEOUT_S + 600)
def test_acme_tasks_run_through_a_real_worker_on_the_engine(
    engine_worker_env: str, tmp_path: Path
) -> None:
    """Acme tasks of two families go through a real worker on RabbitMQ and Postgres whose
    role models are the shipped adapters in llama-server: each ends by itself, every
    planner, caller and summarizer step was the engine's with its role's shipped adapter,
    and every call names an allowed tool with arguments valid for its schema."""
    from worker.agent.guard import Guard
    from worker.audit import AuditLog
    from worker.evaluation.live import LiveConfig, run_live
    from worker.world import load_world

    config = LiveConfig(
        out=tmp_path / "live",
        families=FAMILIES,
        per_family=1,
        max_steps=MAX_STEPS,
        timeout=TASK_TIMEOUT_S,
        ready_timeout=180,
    )
    result = run_live(config)
    result.write(config.out)  # live.json, for a failure's post-mortem
    tasks = result.tasks
    assert sorted(t.family for t in tasks) == sorted(FAMILIES)
    assert {t.task_id: t.outcome for t in tasks if t.outcome not in END_OUTCOMES} == {}, [
        (t.family, t.outcome, t.reason) for t in tasks
    ]

    world = load_world()
    with world.start(tmp_path / "specs", seed=0) as office:
        specs = {spec.name: spec for spec in office.systems.specs()}
    settings = Settings()
    allowed = {
        dept: {s.name for s in Guard.for_department(settings, dept).allowed_tools(specs.values())}
        for dept in {t.department for t in tasks}
    }
    shipped = _shipped_labels()
    audit = AuditLog.from_url(engine_worker_env)
    seen: set[str] = set()
    recaps = 0
    try:
        for task in tasks:
            assert task.task_id is not None
            steps = audit.steps(task.task_id)
            for step in (s for s in steps if s.role in ROLES):
                seen.add(step.role)
                assert step.model is not None and step.model.startswith("llama.cpp:"), step
                assert step.adapter == shipped[step.role], step
                if recap := step.details.get("recap"):  # given as token ids after the prompt
                    assert step.output.startswith(recap), step.output
                    recaps += 1
            for call in (s for s in steps if s.kind == "caller"):
                assert "error" not in call.details, call.output
                tool = call.details["tool"]
                assert tool in allowed[task.department], (task.department, tool)
                assert is_valid(call.details["arguments"], specs[tool].parameters), call.output
        assert seen == set(ROLES)
        assert recaps > 0  # each task observed something before its planner's next step
        assert audit.verify().ok
    finally:
        audit.close()

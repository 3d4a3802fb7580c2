"""The engine backend's requests and answers, against a fake engine (httpx MockTransport).

The real llama.cpp server is exercised in tests/integration/test_engine_llamacpp.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import ToolSpec
from worker.agent.roles import CallerConstraint, GenerationRequest
from worker.errors import ConfigError, ModelError
from worker.models.engine import EngineRoleModel
from worker.models.gbnf import caller_gbnf

TOOL = ToolSpec(
    name="get_invoice",
    description="",
    parameters={
        "type": "object",
        "properties": {"invoice_id": {"type": "string", "pattern": r"^INV-\d{4}$"}},
        "required": ["invoice_id"],
    },
)
LORAS = [
    {"id": 0, "path": "/x/gguf/planner.gguf", "scale": 0.0},
    {"id": 1, "path": "/x/gguf/caller.gguf", "scale": 0.0},
    {"id": 2, "path": "/x/gguf/summarizer.gguf", "scale": 0.0},
]
LABELS = {"planner": "planner@a", "caller": "caller@b", "summarizer": "summarizer@c"}


class FakeLlamaServer:
    """Answers like llama-server; records each completion request's JSON body."""

    def __init__(self, answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answer = answer or (lambda body: {"text": "ok", "stopping_word": ""})
        self.loras = LORAS
        self.slots = 4

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/props":
            return httpx.Response(200, json={"total_slots": self.slots})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "/x/gguf/base.gguf"}]})
        if request.url.path == "/lora-adapters":
            return httpx.Response(200, json=self.loras)
        if request.url.path == "/tokenize":  # one id per character, for the tests
            asked = json.loads(request.content)
            assert asked["add_special"] is False
            return httpx.Response(200, json={"tokens": [ord(c) for c in asked["content"]]})
        assert request.url.path == "/v1/completions"
        body = json.loads(request.content)
        self.bodies.append(body)
        out = self.answer(body)
        return httpx.Response(
            200,
            json={
                "choices": [{"text": out["text"], "index": 0, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 60},
                },
                "timings": {"prompt_ms": 12.0, "predicted_ms": 30.0, "cache_n": 60},
                "__verbose": {"stopping_word": out.get("stopping_word", "")},
            },
        )


def llama(fake: FakeLlamaServer, **kwargs: Any) -> EngineRoleModel:
    kwargs.setdefault("adapters", LABELS)
    return EngineRoleModel(
        "http://engine.test", "llama.cpp", transport=httpx.MockTransport(fake), **kwargs
    )


def test_llama_request_selects_the_roles_adapter_and_decodes_greedily() -> None:
    """A summarizer request scales the summarizer's LoRA to 1, the others to 0, at temperature 0."""
    fake = FakeLlamaServer()
    llama(fake).generate([GenerationRequest("summarizer", "history", max_new_tokens=50)])
    (body,) = fake.bodies
    assert body["lora"] == [
        {"id": 0, "scale": 0.0},
        {"id": 1, "scale": 0.0},
        {"id": 2, "scale": 1.0},
    ]
    assert body["temperature"] == 0.0 and body["top_k"] == 1
    assert body["prompt"] == "history" and body["max_tokens"] == 50
    assert body["stop"] == ["</s>"] and body["cache_prompt"] is True
    assert "grammar" not in body


def test_a_given_output_start_follows_the_prompt_as_its_own_tokens() -> None:
    """A request's ``prefix`` goes as token ids after the prompt string (llama.cpp
    tokenizes the string alone), so the boundary tokenizes as in training."""
    fake = FakeLlamaServer()
    request = GenerationRequest("planner", "history assistant: ", prefix="ok.")
    llama(fake).generate([request, GenerationRequest("planner", "history")])
    with_prefix, without = fake.bodies
    assert with_prefix["prompt"] == ["history assistant: ", ord("o"), ord("k"), ord(".")]
    assert without["prompt"] == "history"


def test_token_budget_is_capped_by_max_new_tokens() -> None:
    """settings.max_new_tokens caps a request's own budget, as in process."""
    fake = FakeLlamaServer()
    llama(fake, max_new_tokens=32).generate([GenerationRequest("planner", "p", 160)])
    assert fake.bodies[0]["max_tokens"] == 32


def test_planner_keeps_the_marker_that_stopped_it() -> None:
    """The engine cuts the stop string; the planner's routing marker is put back."""
    fake = FakeLlamaServer(
        lambda b: {"text": "Thought: pay it.\n", "stopping_word": "Next: caller."}
    )
    (out,) = llama(fake).generate([GenerationRequest("planner", "p")])
    assert fake.bodies[0]["stop"] == [
        "</s>",
        "Next: caller.",
        "Next: conclusion.",
        "Next: give up.",
    ]
    assert out.text == "Thought: pay it.\nNext: caller."
    assert out.extra["finish"] == "stop"


def test_turn_end_is_not_put_back() -> None:
    """A summary stopped by </s> comes back without it."""
    fake = FakeLlamaServer(lambda b: {"text": "Paid.", "stopping_word": "</s>"})
    (out,) = llama(fake).generate([GenerationRequest("summarizer", "p")])
    assert out.text == "Paid."


def test_constrained_caller_sends_the_gbnf_grammar_and_no_stops() -> None:
    """A caller constraint goes as llama.cpp's grammar, generated from the tool schemas."""
    fake = FakeLlamaServer()
    request = GenerationRequest("caller", "p", constraint=CallerConstraint((TOOL,)))
    (out,) = llama(fake).generate([request])
    body = fake.bodies[0]
    assert body["grammar"] == caller_gbnf([TOOL])
    assert body["stop"] == []
    assert body["lora"][1] == {"id": 1, "scale": 1.0}
    assert out.extra["constrained"] is True


def test_answer_reports_tokens_cache_and_adapter() -> None:
    """Usage, the prompt-cache hit and the adapter label come back on the Generation."""
    (out,) = llama(FakeLlamaServer()).generate([GenerationRequest("caller", "p")])
    assert (out.prompt_tokens, out.completion_tokens) == (100, 7)
    assert out.extra["cached_tokens"] == 60
    assert out.adapter == "caller@b"
    assert out.model == "llama.cpp:base.gguf"


def test_requests_of_one_batch_are_in_flight_together() -> None:
    """Four requests reach the engine at the same time (each waits for the other three)."""
    barrier = threading.Barrier(4, timeout=10)

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        barrier.wait()  # BrokenBarrierError if the client sent them one by one
        return {"text": body["prompt"].upper()}

    model = llama(FakeLlamaServer(answer), concurrency=4)
    outs = model.generate([GenerationRequest("summarizer", p) for p in "abcd"])
    assert [o.text for o in outs] == ["A", "B", "C", "D"]


def test_engine_without_a_roles_adapter_is_refused() -> None:
    """An engine started without the caller's LoRA is an error, not a silent base model."""
    fake = FakeLlamaServer()
    fake.loras = [LORAS[0], LORAS[2]]
    with pytest.raises(ModelError, match=r"no adapter for \['caller'\]"):
        llama(fake).generate([GenerationRequest("planner", "p")])


def test_unreachable_engine_says_how_to_start_it() -> None:
    """A refused connection becomes a ModelError that names the URL and the serve command."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    model = EngineRoleModel("http://engine.test", transport=httpx.MockTransport(refuse))
    with pytest.raises(ModelError, match="umiq models serve"):
        model.generate([GenerationRequest("planner", "p")])


def test_engine_error_status_is_a_model_error() -> None:
    """A 400 from the engine (a grammar it cannot read) is reported with its message."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/completions":
            return httpx.Response(400, json={"error": {"message": "failed to parse grammar"}})
        return FakeLlamaServer()(request)

    model = EngineRoleModel("http://engine.test", transport=httpx.MockTransport(handler))
    with pytest.raises(ModelError, match="failed to parse grammar"):
        model.generate([GenerationRequest("caller", "p")])


def test_describe_names_engine_base_and_adapters() -> None:
    """describe() reports the engine, its base and the adapter labels; the version hashes them."""
    described = llama(FakeLlamaServer()).describe()
    assert described["backend"] == "openai" and described["engine"] == "llama.cpp"
    assert described["adapters"] == LABELS
    other = EngineRoleModel(
        "http://engine.test",
        transport=httpx.MockTransport(FakeLlamaServer()),
        adapters={**LABELS, "caller": "caller@z"},
    ).describe()
    assert other["version"] != described["version"]


def test_vllm_names_the_adapter_as_model_and_strips_the_stop_string() -> None:
    """vLLM: the role's LoRA is the request's model, the grammar is structured output."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            data = [{"id": "smollm2", "parent": None}]
            data += [{"id": r, "parent": "smollm2"} for r in ("planner", "caller", "summarizer")]
            return httpx.Response(200, json={"data": data})
        body = json.loads(request.content)
        bodies.append(body)
        text = "Thought: done.\nNext: conclusion." if body["model"] == "planner" else '{"a"'
        reason = "Next: conclusion." if body["model"] == "planner" else None
        return httpx.Response(
            200,
            json={"choices": [{"text": text, "finish_reason": "stop", "stop_reason": reason}]},
        )

    model = EngineRoleModel(
        "http://vllm.test/", "vllm", transport=httpx.MockTransport(handler), adapters=LABELS
    )
    constrained = GenerationRequest("caller", "p", constraint=CallerConstraint((TOOL,)))
    plan, _ = model.generate([GenerationRequest("planner", "p"), constrained])
    assert plan.text == "Thought: done.\nNext: conclusion."
    by_model = {b["model"]: b for b in bodies}
    assert by_model["planner"]["include_stop_str_in_output"] is True
    assert by_model["caller"]["structured_outputs"] == {"grammar": caller_gbnf([TOOL])}


def test_settings_choose_the_engine_backend(tmp_path: Path) -> None:
    """UMIQ_MODEL_BACKEND=openai loads the engine backend with the shipped adapters' labels."""
    from worker.models import load_role_model
    from worker.settings import Settings

    settings = Settings(
        data_dir=tmp_path, model_backend="openai", engine_url="http://127.0.0.1:9", role_model=None
    )
    model = load_role_model(settings)
    assert isinstance(model, EngineRoleModel)
    assert model.base_url == "http://127.0.0.1:9"
    assert set(model.expected) == {"planner", "caller", "summarizer"}


def test_prompt_window_is_refused_on_the_engine_backend(tmp_path: Path) -> None:
    """The engine takes prompts whole, so a prompt window is a configuration error."""
    from worker.models import load_role_model
    from worker.settings import Settings

    settings = Settings(data_dir=tmp_path, model_backend="openai", prompt_window=512)
    with pytest.raises(ConfigError, match="prompt_window"):
        load_role_model(settings)

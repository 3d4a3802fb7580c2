"""The HF role-model backend on tiny random LLaMA models built in code."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("xgrammar")

from peft import LoraConfig, get_peft_model  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from connectors import ToolSpec  # noqa: E402
from tests.support import threads  # noqa: E402
from worker.agent.roles import AGENT_ROLES, CallerConstraint, GenerationRequest  # noqa: E402
from worker.errors import AdapterError, ConfigError, ModelError  # noqa: E402
from worker.models.backend import HFRoleModel  # noqa: E402

CORPUS = [
    'Action: get_invoice\nAction Input: {"invoice_id": "INV-1001", "amount": 12}',
    "user: check the invoice and pay the vendor</s> assistant: Next: caller.</s> caller: ",
    'observation: {"error": "", "response": [1, 2, 3]} conclusion: done, give up.',
    'The quick brown fox jumps over the lazy dog 0123456789 {}[]:,"\\ true false null',
]

TOOLS = (
    ToolSpec(
        "get_invoice",
        "Fetch an invoice",
        {
            "type": "object",
            "properties": {
                "invoice_id": {"type": "string", "maxLength": 8},
                "amount": {"type": "integer", "minimum": 0, "maximum": 999},
            },
            "required": ["invoice_id", "amount"],
        },
    ),
    ToolSpec(
        "list_vendors",
        "List vendors",
        {
            "type": "object",
            "properties": {"active": {"type": "boolean"}, "region": {"enum": ["eu", "us"]}},
            "required": ["active"],
        },
    ),
    ToolSpec("ping", "Liveness"),
)

PROMPTS = {
    "planner": "user: check invoice INV-1001 and pay it</s> assistant: ",
    "caller": "user: check the invoice</s> assistant: Next: caller.</s> caller: ",
    "summarizer": "user: pay</s> observation: {} conclusion: ",
}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of a few hundred tokens, trained in milliseconds."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )


CONFIGS = {
    # peft-style matrix of tiny LLaMA shapes: grouped-query attention, and tied embeddings.
    "gqa": {"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2},
    "tied": {
        "hidden_size": 48,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "tie_word_embeddings": True,
    },
}


def save_tiny_base(path: Path, tokenizer: Any, seed: int = 0, **shape: Any) -> Path:
    """A random 2-layer LLaMA with ``shape`` overrides, saved as an HF checkpoint."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        intermediate_size=64,
        num_hidden_layers=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_adapter(base_path: Path, out: Path, seed: int) -> Path:
    """A random (non-zero) LoRA adapter on all linear layers of the base at ``base_path``."""
    base = LlamaForCausalLM.from_pretrained(base_path)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules="all-linear",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(base, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def tiny(
    request: pytest.FixtureRequest, tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A tiny base checkpoint and one random adapter per role."""
    root = tmp_path_factory.mktemp(request.param)
    base = save_tiny_base(root / "tiny-llama", tokenizer, **CONFIGS[request.param])
    adapters = {
        role: save_adapter(base, root / "adapters" / role, seed=i + 1)
        for i, role in enumerate(AGENT_ROLES)
    }
    return {"name": request.param, "base": base, "adapters": adapters, "root": root}


ADAPTER_SETS = {"base_only": (), "caller_only": ("caller",), "three": AGENT_ROLES}


@pytest.fixture(scope="module", params=sorted(ADAPTER_SETS))
def role_model(request: pytest.FixtureRequest, tiny: dict[str, Any]) -> HFRoleModel:
    roles = ADAPTER_SETS[request.param]
    return HFRoleModel(tiny["base"], {r: tiny["adapters"][r] for r in roles})


def mixed_requests() -> list[GenerationRequest]:
    constraint = CallerConstraint(TOOLS)
    return [
        GenerationRequest("planner", PROMPTS["planner"], max_new_tokens=12),
        GenerationRequest("caller", PROMPTS["caller"], max_new_tokens=60, constraint=constraint),
        GenerationRequest("summarizer", PROMPTS["summarizer"], max_new_tokens=7),
        GenerationRequest("caller", PROMPTS["caller"] + "x", max_new_tokens=5),
        GenerationRequest("planner", "user: hi</s> assistant: ", max_new_tokens=9),
    ]


# --- a minimal JSON-schema check (jsonschema is not a dependency) -----------------------


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """What makes ``value`` violate ``schema`` (the subset of keywords the tools use)."""
    if "enum" in schema:
        return [] if value in schema["enum"] else [f"{where}: {value!r} not in enum"]
    kind = schema.get("type")
    checks = {"object": dict, "string": str, "boolean": bool, "array": list}
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{where}: not an integer"]
        low, high = schema.get("minimum", -float("inf")), schema.get("maximum", float("inf"))
        return [] if low <= value <= high else [f"{where}: {value} out of range"]
    if kind in checks and not isinstance(value, checks[kind]):
        return [f"{where}: not a {kind}"]
    if kind == "string" and len(value) > schema.get("maxLength", len(value)):
        return [f"{where}: longer than maxLength"]
    errors: list[str] = []
    if kind == "object":
        props = schema.get("properties", {})
        errors += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        errors += [f"{where}: extra {k}" for k in value if k not in props]
        for key, sub in props.items():
            if key in value:
                errors += schema_errors(value[key], sub, f"{where}.{key}")
    return errors


def parse_call(text: str) -> tuple[str, Any]:
    match = re.fullmatch(r"Action: (\w+)\nAction Input: (.*)", text, re.DOTALL)
    assert match, f"not an α-UMi call: {text!r}"
    return match.group(1), json.loads(match.group(2))


# --- behaviour ---------------------------------------------------------------------------


def test_generation_reports_text_tokens_and_provenance(role_model: HFRoleModel) -> None:
    """Each request gets text, token counts, the base revision and its role's adapter label."""
    out = role_model.generate(mixed_requests())
    assert len(out) == 5
    for req, gen in zip(mixed_requests(), out, strict=True):
        assert isinstance(gen.text, str)
        assert 0 < gen.completion_tokens <= req.max_new_tokens
        assert gen.prompt_tokens > 0
        assert gen.model.startswith("tiny-llama@")
        if req.role in role_model.adapters:
            assert gen.adapter == role_model.adapters[req.role].label
        else:
            assert gen.adapter is None
    assert "</s>" not in "".join(g.text for g in out)


def test_a_given_output_start_is_tokenized_on_its_own_after_the_prompt(
    role_model: HFRoleModel,
) -> None:
    """``prefix`` tokens follow the prompt's, each tokenized alone (as a training sample's
    target follows its input), and the text returned is what the model wrote after it."""
    tok = role_model.engine.tokenizer
    prompt, prefix = "planner: ", "ok then."
    ids = role_model.engine.encode([prompt], [prefix])["input_ids"][0].tolist()
    assert ids == tok(prompt)["input_ids"] + tok(prefix, add_special_tokens=False)["input_ids"]
    given = GenerationRequest("planner", prompt, max_new_tokens=6, prefix=prefix)
    (out,) = role_model.generate([given])
    assert out.prompt_tokens == len(ids)
    assert not out.text.startswith(prefix)


def test_generations_report_their_batch_time_to_first_token_and_decode(
    tiny: dict[str, Any],
) -> None:
    """Each generation reports its batch's size, time to the first token and decode time."""
    model = HFRoleModel(tiny["base"], tiny["adapters"])
    out = model.generate(mixed_requests())
    for gen in out:
        assert gen.extra["batch"] == 5
        assert gen.extra["prompt_ms"] > 0
        assert gen.extra["decode_ms"] >= 0
        assert gen.extra["queue_ms"] >= 0
    assert len({(g.extra["prompt_ms"], g.extra["decode_ms"]) for g in out}) == 1


def test_a_request_waits_for_the_batch_in_progress(tiny: dict[str, Any]) -> None:
    """A request made while a batch runs waits for it, runs in the next batch, and reports
    the wait as queue_ms."""
    model = HFRoleModel(tiny["base"], tiny["adapters"], batch_wait_ms=0)
    request = GenerationRequest("planner", PROMPTS["planner"], max_new_tokens=3)
    running, run = threading.Event(), model.engine.run

    def slow_run(rows: Any, **kwargs: Any) -> Any:
        if not running.is_set():  # another episode's batch
            running.set()
            time.sleep(0.3)
        return run(rows, **kwargs)

    model.engine.run = slow_run  # type: ignore[method-assign]
    other = threading.Thread(target=model.generate, args=([request],))
    other.start()
    running.wait()
    (gen,) = model.generate([request])
    other.join()
    assert gen.extra["queue_ms"] >= 200
    assert gen.extra["batch"] == 1


def same(gen: Any) -> tuple[Any, ...]:
    """What a generation says, less its costs."""
    return (gen.text, gen.prompt_tokens, gen.completion_tokens, gen.adapter, gen.extra["finish"])


def at_once(model: Any, requests: list[GenerationRequest]) -> list[Any]:
    """Each request's generation (or exception), each asked by its own thread at once."""
    calls = [lambda req=req: model.generate([req])[0] for req in requests]
    return threads.at_once(calls, timeout=300)


def one_by_one(model: Any, requests: list[GenerationRequest]) -> list[Any]:
    """Each request's generation, run by itself with no gather window (a model built with
    a long window would otherwise wait it out for each lone request)."""
    window, model._batcher.wait_s = model._batcher.wait_s, 0
    try:
        return [model.generate([req])[0] for req in requests]
    finally:
        model._batcher.wait_s = window


def counting_runs(model: Any, engine: Any | None = None) -> list[int]:
    """Record the rows of each batch that ``engine`` (the model's) runs."""
    engine = engine or model.engine
    sizes: list[int] = []
    run = engine.run

    def counted(rows: Any, **kwargs: Any) -> Any:
        sizes.append(len(rows))
        return run(rows, **kwargs)

    engine.run = counted
    return sizes


def test_concurrent_callers_share_a_batch_and_get_what_they_get_alone(
    tiny: dict[str, Any],
) -> None:
    """Requests of concurrent callers (mixed roles, a constrained caller) run as one batch,
    and each caller gets what its request gives when run alone."""
    model = HFRoleModel(tiny["base"], tiny["adapters"], max_batch_size=5, batch_wait_ms=60_000)
    requests = mixed_requests()
    alone = one_by_one(model, requests)
    sizes = counting_runs(model)
    together = at_once(model, requests)
    assert sizes == [5]  # full at 5 rows: it did not wait out the window
    assert [g.extra["batch"] for g in together] == [5] * 5
    assert [same(g) for g in together] == [same(g) for g in alone]


def test_without_a_gather_window_requests_queued_during_a_batch_share_the_next(
    tiny: dict[str, Any],
) -> None:
    """With batch_wait_ms=0 a lone request runs at once, and the requests that queue while
    it runs share the next batch, each getting what it gets alone."""
    model = HFRoleModel(tiny["base"], tiny["adapters"], batch_wait_ms=0)
    first, *rest = mixed_requests()
    alone = one_by_one(model, rest)
    sizes, release, run = [], threading.Event(), model.engine.run

    def held_run(rows: Any, **kwargs: Any) -> Any:
        sizes.append(len(rows))
        if len(sizes) == 1:
            release.wait(timeout=60)
        return run(rows, **kwargs)

    model.engine.run = held_run  # type: ignore[method-assign]
    leader = threading.Thread(target=model.generate, args=([first],))
    leader.start()
    while not sizes:
        time.sleep(0.01)
    followers: list[Any] = []
    asking = threading.Thread(target=lambda: followers.extend(at_once(model, rest)))
    asking.start()
    while len(model._batcher._queue) < len(rest):
        time.sleep(0.01)
    release.set()
    leader.join(timeout=300)
    asking.join(timeout=300)
    assert sizes == [1, 4]
    assert [same(g) for g in followers] == [same(g) for g in alone]


def test_a_failing_batch_raises_in_every_caller_of_it(tiny: dict[str, Any]) -> None:
    """An exception in a batch reaches each caller with a request in it; none hangs, and
    the model serves the next batch."""
    model = HFRoleModel(tiny["base"], {}, max_batch_size=4, batch_wait_ms=60_000)
    run = model.engine.run

    def broken(rows: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    model.engine.run = broken  # type: ignore[method-assign]
    requests = [GenerationRequest("planner", PROMPTS["planner"], max_new_tokens=2)] * 4
    errors = at_once(model, requests)
    assert all(isinstance(e, RuntimeError) and str(e) == "out of memory" for e in errors)
    model.engine.run = run  # type: ignore[method-assign]
    assert [g.completion_tokens for g in model.generate(requests)] == [2] * 4


def test_a_bad_request_fails_only_its_caller(tiny: dict[str, Any]) -> None:
    """A request with an unknown role is refused in its caller's thread; the batch of the
    others runs."""
    model = HFRoleModel(tiny["base"], {}, max_batch_size=2, batch_wait_ms=60_000)
    good = GenerationRequest("planner", PROMPTS["planner"], max_new_tokens=2)
    out = at_once(model, [good, GenerationRequest("nobody", "hi", max_new_tokens=2), good])
    assert isinstance(out[1], ModelError)
    assert [g.extra["batch"] for g in (out[0], out[2])] == [2, 2]


def test_a_constrained_row_with_a_smaller_budget_leaves_its_batch_running(
    tiny: dict[str, Any],
) -> None:
    """A constrained row cut by its own budget before the batch's longest row ends is left
    alone by its grammar; both rows get what they get alone."""
    model = HFRoleModel(tiny["base"], {"caller": tiny["adapters"]["caller"]})
    requests = [
        GenerationRequest(
            "caller", PROMPTS["caller"], max_new_tokens=4, constraint=CallerConstraint(TOOLS)
        ),
        GenerationRequest("planner", PROMPTS["planner"], max_new_tokens=12),
    ]
    batched = model.generate(requests)
    assert [same(g) for g in batched] == [same(model.generate([r])[0]) for r in requests]
    assert batched[0].completion_tokens == 4


def test_a_row_stopped_by_its_stop_string_counts_no_padding(
    tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row that stops at a stop string while its batch goes on reports the tokens it
    produced, not the padding after them (a pad token that is not the EOS token)."""
    from worker.models import backend

    model = HFRoleModel(tiny["base"], {})
    planner = GenerationRequest("planner", PROMPTS["planner"], max_new_tokens=12)
    free = model.generate([planner])[0].text
    monkeypatch.setattr(backend, "PLANNER_MARKERS", (free[2:4],))  # it stops early
    model.engine.pad_id = model.engine.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    requests = [planner, GenerationRequest("summarizer", PROMPTS["summarizer"], max_new_tokens=12)]
    batched = model.generate(requests)
    alone = one_by_one(model, requests)
    assert batched[0].completion_tokens < 12
    assert [same(g) for g in batched] == [same(g) for g in alone]


def test_mixed_role_batch_equals_single_generations(role_model: HFRoleModel) -> None:
    """A batch mixing roles (and adapters) gives each row what it gets when run alone."""
    requests = mixed_requests()
    batched = [g.text for g in role_model.generate(requests)]
    alone = [role_model.generate([req])[0].text for req in requests]
    assert batched == alone


def test_each_row_runs_through_its_own_adapter(tiny: dict[str, Any]) -> None:
    """In a batch mixing three adapters, each row matches a model holding only its adapter."""
    mixed = HFRoleModel(tiny["base"], tiny["adapters"])
    requests = mixed_requests()
    batched = mixed.generate(requests)
    for req, gen in zip(requests, batched, strict=True):
        alone = HFRoleModel(tiny["base"], {req.role: tiny["adapters"][req.role]})
        assert alone.generate([req])[0].text == gen.text


def test_adapters_change_what_a_role_generates(tiny: dict[str, Any]) -> None:
    """A role with an adapter does not generate what the bare base does."""
    base = HFRoleModel(tiny["base"])
    tuned = HFRoleModel(tiny["base"], {"planner": tiny["adapters"]["planner"]})
    req = [
        GenerationRequest("planner", PROMPTS["planner"], max_new_tokens=12),
        GenerationRequest("summarizer", PROMPTS["summarizer"], max_new_tokens=12),
    ]
    plain, adapted = base.generate(req), tuned.generate(req)
    assert plain[0].text != adapted[0].text
    assert plain[1].text == adapted[1].text  # the summarizer has no adapter: runs on the base


@pytest.mark.parametrize("whitespace", ["bounded", "compact"])
def test_constrained_caller_names_an_allowed_tool_with_valid_arguments(
    tiny: dict[str, Any], whitespace: str
) -> None:
    """Under the grammar every caller answer parses to an allowed tool and schema-valid JSON."""
    model = HFRoleModel(tiny["base"], {"caller": tiny["adapters"]["caller"]}, whitespace=whitespace)  # type: ignore[arg-type]
    by_name = {t.name: t for t in TOOLS}
    prompts = [PROMPTS["caller"] + suffix for suffix in ("", "a", "INV", "0 1", "{", "</s>")]
    for tools in (TOOLS, TOOLS[:1], TOOLS[1:]):
        reqs = [
            GenerationRequest("caller", p, max_new_tokens=120, constraint=CallerConstraint(tools))
            for p in prompts
        ]
        for gen in model.generate(reqs):
            assert gen.extra["finish"] == "stop", gen.text
            name, args = parse_call(gen.text)
            assert name in {t.name for t in tools}
            assert schema_errors(args, dict(by_name[name].parameters)) == []


def test_describe_records_base_and_adapter_versions(tiny: dict[str, Any]) -> None:
    """describe() names the base revision and a version per loaded adapter."""
    model = HFRoleModel(tiny["base"], {"caller": tiny["adapters"]["caller"]})
    info = model.describe()
    assert info["base"].startswith("tiny-llama@")
    assert info["adapters"]["caller"].startswith("caller@")
    assert info["adapters"]["planner"] is None


def test_adapter_version_is_what_the_adapter_is_not_where_it_was_made(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    """The same weights and LoRA config keep their version whatever order peft wrote the
    target modules in and wherever the base lay; other weights or rank change it."""
    from worker.models.adapters import read_adapter

    original = read_adapter("caller", tiny["adapters"]["caller"])
    copy = shutil.copytree(tiny["adapters"]["caller"], tmp_path / "caller")
    config = json.loads((copy / "adapter_config.json").read_text())
    config["target_modules"] = list(reversed(sorted(config["target_modules"])))
    config["base_model_name_or_path"] = "/elsewhere/tiny-llama"
    (copy / "adapter_config.json").write_text(json.dumps(config))
    assert read_adapter("caller", copy).version == original.version

    config["r"] = config["r"] * 2
    (copy / "adapter_config.json").write_text(json.dumps(config))
    assert read_adapter("caller", copy).version != original.version

    other = read_adapter("planner", tiny["adapters"]["planner"])
    assert other.version != original.version


def test_corrupt_adapter_file_is_refused(tiny: dict[str, Any], tmp_path: Path) -> None:
    """An adapter whose weights file is not valid safetensors raises AdapterError."""
    bad = shutil.copytree(tiny["adapters"]["caller"], tmp_path / "caller")
    weights = bad / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(AdapterError, match="corrupt"):
        HFRoleModel(tiny["base"], {"caller": bad})


def test_unparseable_adapter_config_is_refused(tiny: dict[str, Any], tmp_path: Path) -> None:
    """An adapter whose adapter_config.json is not JSON raises AdapterError."""
    bad = shutil.copytree(tiny["adapters"]["planner"], tmp_path / "planner")
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not valid JSON"):
        HFRoleModel(tiny["base"], {"planner": bad})


def test_adapter_with_wrong_shapes_is_refused(
    tiny: dict[str, Any], tokenizer: Any, tmp_path: Path
) -> None:
    """An adapter trained on a base of another width raises AdapterError naming the layer."""
    other = save_tiny_base(
        tmp_path / "tiny-llama",
        tokenizer,
        hidden_size=24,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    adapter = save_adapter(other, tmp_path / "caller", seed=9)
    with pytest.raises(AdapterError, match=r"does not fit the base: .*proj"):
        HFRoleModel(tiny["base"], {"caller": adapter})


def test_adapter_for_another_base_is_refused(tiny: dict[str, Any], tmp_path: Path) -> None:
    """An adapter whose config declares a different base model raises AdapterError."""
    bad = shutil.copytree(tiny["adapters"]["caller"], tmp_path / "caller")
    config = json.loads((bad / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "meta-llama/Llama-2-7b-hf"
    (bad / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match="Llama-2-7b-hf"):
        HFRoleModel(tiny["base"], {"caller": bad})


def test_adapter_missing_weights_for_a_target_is_refused(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    """An adapter file lacking tensors its config targets raises AdapterError."""
    from safetensors.torch import load_file, save_file

    bad = shutil.copytree(tiny["adapters"]["caller"], tmp_path / "caller")
    weights = bad / "adapter_model.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if ".layers.1." not in k}, weights)
    with pytest.raises(AdapterError, match=r"no weights for it"):
        HFRoleModel(tiny["base"], {"caller": bad})


def test_planner_stops_at_its_marker_and_others_at_the_turn_end(tokenizer: Any) -> None:
    """The planner row stops after "Next: caller."; every row stops at "</s>"."""
    from worker.models.backend import _rows_for, _StopCriteria

    class NoGrammar:
        grammars = None

    reqs = [GenerationRequest(role, "p: ", max_new_tokens=50) for role in AGENT_ROLES]
    rows = _rows_for(reqs, NoGrammar(), None, {})  # type: ignore[arg-type]
    prompt = tokenizer("p: ").input_ids
    stop = _StopCriteria(tokenizer, rows, len(prompt))

    def done(text: str) -> list[bool]:
        ids = torch.tensor([prompt + tokenizer(text).input_ids] * len(rows))
        return stop(ids, torch.zeros(1)).tolist()

    assert done("I check the invoice. Next: caller.") == [True, False, False]
    assert done("I check the invoice. Next: conclusion.") == [True, False, False]
    assert done("the answer</s>") == [True, True, True]
    assert done("the answer is") == [False, False, False]


def test_checkpoint_per_role_form(tiny: dict[str, Any]) -> None:
    """Three full checkpoints, one per role, each answer its role's rows."""
    from worker.models.backend import CheckpointRoleModel

    model = CheckpointRoleModel({role: tiny["base"] for role in AGENT_ROLES})
    single = HFRoleModel(tiny["base"])
    requests = mixed_requests()
    assert [g.text for g in model.generate(requests)] == [g.text for g in single.generate(requests)]
    assert set(model.describe()["roles"]) == set(AGENT_ROLES)


def test_checkpoint_per_role_form_batches_concurrent_callers_per_role(
    tiny: dict[str, Any],
) -> None:
    """Concurrent callers' requests share one batch per role's model, each getting what
    it gets alone."""
    from worker.models.backend import CheckpointRoleModel

    model = CheckpointRoleModel(
        {role: tiny["base"] for role in AGENT_ROLES}, max_batch_size=5, batch_wait_ms=60_000
    )
    requests = mixed_requests()
    alone = one_by_one(model, requests)
    together = at_once(model, requests)
    assert [g.extra["batch"] for g in together] == [2, 2, 1, 2, 2]
    assert [same(g) for g in together] == [same(g) for g in alone]


def test_load_role_model_reads_base_and_adapters_from_settings(tiny: dict[str, Any]) -> None:
    """load_role_model builds the base + adapters that the settings name."""
    from worker.models import load_role_model
    from worker.settings import Settings

    settings = Settings(base_model=str(tiny["base"]), adapters_dir=tiny["root"] / "adapters")
    model = load_role_model(settings)
    assert set(model.describe()["adapters"].values()) != {None}
    assert model.describe()["base"].startswith("tiny-llama@")


def test_batching_settings_reach_the_role_model(
    tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """UMIQ_MODEL_MAX_BATCH and UMIQ_MODEL_BATCH_WAIT_MS set the in-process batches."""
    from worker.models import load_role_model
    from worker.settings import Settings

    monkeypatch.setenv("UMIQ_MODEL_MAX_BATCH", "3")
    monkeypatch.setenv("UMIQ_MODEL_BATCH_WAIT_MS", "0")
    model = load_role_model(Settings(base_model=str(tiny["base"]), shipped_adapters=False))
    assert (model._batcher.max_batch_size, model._batcher.wait_s) == (3, 0)


def test_models_show_prints_the_version_a_loaded_worker_reports(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`umiq models show` reads the model version from the files (no weights loaded) and
    it is the version the loaded role model reports, the one a department pins."""
    from typer.testing import CliRunner

    from worker import runtime
    from worker.cli import app
    from worker.models import load_role_model
    from worker.settings import get_settings

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UMIQ_BASE_MODEL", str(tiny["base"]))
    monkeypatch.setenv("UMIQ_ADAPTERS_DIR", str(tiny["root"] / "adapters"))
    runtime.reset()
    try:
        shown = CliRunner().invoke(app, ["models", "show"])
        described = load_role_model(get_settings()).describe()
    finally:
        runtime.reset()
    assert shown.exit_code == 0, shown.output
    assert f"model version: {described['version']}" in shown.output
    assert described["adapters"]["planner"] in shown.output


def test_a_prompt_window_keeps_the_tail_as_training_cuts_it(tiny: dict[str, Any]) -> None:
    """Served with ``prompt_window``, a long prompt keeps its last tokens (what a training
    example of that length keeps), a short one stays whole, and the window is recorded."""
    from worker.training.data import IGNORE, tokenize

    window = 24
    model = HFRoleModel(tiny["base"], {}, prompt_window=window)
    engine = model.engine
    long_prompt = PROMPTS["planner"] * 6
    whole = engine.tokenizer(long_prompt)["input_ids"]
    assert len(whole) > window
    enc = engine.encode([long_prompt, PROMPTS["summarizer"]])
    mask = enc["attention_mask"]
    assert enc["input_ids"][0].tolist() == whole[-window:]
    assert int(mask[1].sum()) == len(engine.tokenizer(PROMPTS["summarizer"])["input_ids"])
    # the training example's prompt, for a target that leaves the same room, is the same
    target = "thought\n Next: caller."
    n_target = len(engine.tokenizer(target, add_special_tokens=False)["input_ids"]) + 1
    example = tokenize(
        {"input": long_prompt, "target": target},
        engine.tokenizer,
        window + n_target,
        engine.eos_ids[0],
    )
    assert [
        t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab == IGNORE
    ] == whole[-window:]
    gen = model.generate([GenerationRequest("planner", long_prompt, max_new_tokens=4)])[0]
    assert gen.prompt_tokens == window
    assert model.describe()["prompt_window"] == window
    assert HFRoleModel(tiny["base"], {}).describe()["prompt_window"] is None


def test_a_prompt_window_below_16_tokens_is_refused(tiny: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="prompt_window must be at least 16"):
        HFRoleModel(tiny["base"], {}, prompt_window=8)

"""Role models on Hugging Face transformers + peft.

Two forms, one protocol (:class:`worker.agent.roles.RoleModel`):

- :class:`HFRoleModel`: one base model in memory and up to three LoRA adapters named
  ``planner``, ``caller``, ``summarizer`` (GLPFT). A batch may mix roles: peft's
  mixed-batch forward (``generate(..., adapter_names=[...])``, ``"__base__"`` for a role
  without an adapter) runs every row through its own adapter in one pass.
- :class:`CheckpointRoleModel`: three full checkpoints, one per role (the form α-UMi
  publishes); each role's rows run as one batch on its own model.

Decoding is greedy with left padding. A row stops at the end-of-sequence token, at the
text ``</s>`` (the α-UMi turn separator, plain text for most tokenizers) and, for the
planner, right after ``Next: caller.`` / ``Next: conclusion.`` / ``Next: give up.``. A
caller request with a :class:`CallerConstraint` is decoded under the grammar of
:mod:`worker.models.constrain`, a request with a :class:`ChoiceConstraint` under the
grammar of its options.

The episodes of a worker's threads each ask for one request at a time; concurrent
``generate`` calls share batches (:mod:`worker.models.batching`): one batch runs at a time
per model, holding up to ``max_batch_size`` rows of whichever callers queued them, after
a gather window of ``batch_wait_ms``. A row's prompt is cut, its grammar compiled and its
role checked in its caller's thread, so a bad request fails only its caller. Each
generation's ``extra`` says what it cost: ``queue_ms`` (from the call to its batch's
start), ``prompt_ms`` (its batch's time to the first new token: the prompt's forward
pass), ``decode_ms`` (the rest of the batch's ``generate``) and ``batch`` (its rows).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from worker.agent import protocol
from worker.agent.roles import (
    AGENT_ROLES,
    ALL_ROLES,
    ChoiceConstraint,
    Generation,
    GenerationRequest,
)
from worker.errors import AdapterError, ConfigError, ModelError
from worker.models import adapters as _adapters
from worker.models.batching import Batcher
from worker.models.constrain import GrammarCache, GrammarLogitsProcessor, Whitespace
from worker.models.store import checkpoint_name, read_stamp
from worker.prompt_window import cut_prompt

log = logging.getLogger(__name__)

TURN_END = "</s>"
PLANNER_MARKERS = tuple(protocol.MARKERS.values())
"""Where a planner's output ends: its routing marker (the α-UMi protocol defines them)."""
BASE = "__base__"


def _dtype_for(device: str, dtype: torch.dtype | str | None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        return getattr(torch, dtype)
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


@dataclass
class _Row:
    prompt: str
    max_new_tokens: int
    stops: tuple[str, ...]
    grammar: Any | None
    adapter: str | None
    prefix: str = ""  # the given start of the output (GenerationRequest.prefix)


class _StopCriteria(StoppingCriteria):
    """Per-row stop: a row's own token budget, or one of its stop strings in its tail."""

    def __init__(self, tokenizer: Any, rows: Sequence[_Row], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.rows = rows
        self.prompt_len = prompt_len
        self.tail = 1 + max((len(s) for r in rows for s in r.stops), default=0)
        self.ended: dict[int, int] = {}
        """Row → the new tokens it had when it stopped; generate pads it from there on."""

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **_: Any
    ) -> torch.BoolTensor:
        produced = input_ids.shape[1] - self.prompt_len
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for i, row in enumerate(self.rows):
            if produced >= row.max_new_tokens:
                done[i] = True
            elif row.stops:
                # Every token holds at least one character, so the last `tail` tokens
                # cover any stop string that the newest token completed.
                start = max(self.prompt_len, input_ids.shape[1] - self.tail)
                text = self.tokenizer.decode(input_ids[i, start:], skip_special_tokens=True)
                done[i] = any(stop in text for stop in row.stops)
            if done[i]:
                self.ended.setdefault(i, produced)
        return done


class _FirstToken(StoppingCriteria):
    """Stops nothing; notes when the first new token exists (the prompt's pass is done)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **_: Any
    ) -> torch.BoolTensor:
        if self.at is None:
            self.at = time.perf_counter()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


Result = tuple[str, int, int, str]
"""One row's text, prompt tokens, completion tokens and finish reason."""


class _Engine:
    """One model + tokenizer on one device, generating batches of rows."""

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype | str | None = None,
        whitespace: Whitespace = "bounded",
    ) -> None:
        self.path = Path(path)
        self.device = device
        self.whitespace: Whitespace = whitespace
        self.prompt_window: int | None = None
        """Prompt tokens kept (the last ones, after a leading BOS); None keeps them all."""
        if (self.path / "adapter_config.json").is_file():
            raise ModelError(
                f"{self.path} holds a LoRA adapter, not a full checkpoint; put it under "
                "adapters_dir/<role>/ instead"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            self.model = AutoModelForCausalLM.from_pretrained(
                str(self.path), dtype=_dtype_for(device, dtype)
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the checkpoint at {self.path}: {exc}") from exc
        self.model.to(device).eval()
        self.tokenizer.padding_side = "left"
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids: list[int] = [eos] if isinstance(eos, int) else list(eos or [])
        if not self.eos_ids:
            raise ModelError(f"{self.path}: neither the model nor the tokenizer names an EOS token")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.convert_ids_to_tokens(self.eos_ids[0])
        self.pad_id: int = self.tokenizer.pad_token_id
        self.vocab_size: int = self.model.get_output_embeddings().weight.shape[0]
        self._grammars: GrammarCache | None = None
        self._grammars_lock = threading.Lock()
        stamp = read_stamp(self.path)
        self.name = checkpoint_name(self.path)
        self.revision = _adapters.checkpoint_digest(self.path)
        self.source = stamp.get("source") if stamp else None

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.revision}"

    @property
    def grammars(self) -> GrammarCache:
        with self._grammars_lock:  # callers' threads compile their rows' grammars
            if self._grammars is None:
                self._grammars = GrammarCache(self.tokenizer, self.vocab_size, self.eos_ids)
            return self._grammars

    def encode(self, prompts: Sequence[str], prefixes: Sequence[str] = ()) -> Any:
        """Tokenize and left-pad ``prompts``; with a ``prompt_window`` each keeps its
        leading BOS and its last tokens, as training cuts a prompt that does not fit.
        A prompt's prefix (``prefixes``, aligned; "" for none) is tokenized on its own
        and follows the prompt's tokens, as a training target follows its input."""
        prefixes = list(prefixes) or [""] * len(prompts)
        if self.prompt_window is None and not any(prefixes):
            return self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        rows = []
        for prompt, prefix in zip(prompts, prefixes, strict=True):
            ids = list(self.tokenizer(prompt)["input_ids"])
            if prefix:
                ids += self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
            if self.prompt_window is not None:
                ids = cut_prompt(ids, self.prompt_window, self.tokenizer.bos_token_id)
            rows.append(ids)
        return self.tokenizer.pad({"input_ids": rows}, return_tensors="pt", padding=True)

    def run(
        self, rows: Sequence[_Row], *, mixed_adapters: bool
    ) -> tuple[list[Result], dict[str, float]]:
        """Generate every row in one batch: each row's (text, prompt tokens, completion
        tokens, finish), and the batch's ``prompt_ms`` (to the first new token) and
        ``decode_ms`` (the rest)."""
        enc = {
            k: v.to(self.device)
            for k, v in self.encode([r.prompt for r in rows], [r.prefix for r in rows]).items()
        }
        prompt_len = enc["input_ids"].shape[1]
        budget = max(r.max_new_tokens for r in rows)
        config = GenerationConfig(
            max_new_tokens=budget,
            do_sample=False,
            num_beams=1,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            bos_token_id=self.model.generation_config.bos_token_id,
        )
        kwargs: dict[str, Any] = {}
        if mixed_adapters:
            kwargs["adapter_names"] = [r.adapter or BASE for r in rows]
        processors = LogitsProcessorList()
        if any(r.grammar is not None for r in rows):
            processors.append(
                GrammarLogitsProcessor(
                    [r.grammar for r in rows],
                    self.vocab_size,
                    [r.max_new_tokens for r in rows],
                )
            )
        first = _FirstToken()
        stop = _StopCriteria(self.tokenizer, rows, prompt_len)
        stopping = StoppingCriteriaList([first, stop])
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=stopping,
                **kwargs,
            )
        ended = time.perf_counter()
        first_at = first.at if first.at is not None else ended
        timing = {"prompt_ms": _ms(first_at - started), "decode_ms": _ms(ended - first_at)}
        results = []
        for i, row in enumerate(rows):
            # What follows a row's stop is padding, as when the row runs alone.
            end = stop.ended.get(i, row.max_new_tokens)
            new = out[i, prompt_len : prompt_len + end].tolist()
            finish = "length"
            for j, tok in enumerate(new):
                if tok in self.eos_ids:
                    new, finish = new[:j], "stop"
                    break
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if TURN_END in text:
                text, finish = text.split(TURN_END, 1)[0], "stop"
            elif any(m in text for m in row.stops):
                finish = "stop"
            prompt_tokens = int(enc["attention_mask"][i].sum())
            results.append((text, prompt_tokens, len(new), finish))
        return results, timing


def _window(tokens: int | None) -> int | None:
    if tokens is not None and tokens < 16:
        raise ConfigError(f"prompt_window must be at least 16 tokens or unset, got {tokens}")
    return tokens


def _rows_for(
    requests: Sequence[GenerationRequest],
    engine: _Engine,
    cap: int | None,
    adapter_of: Mapping[str, str],
) -> list[_Row]:
    rows = []
    for req in requests:
        if req.role not in ALL_ROLES:
            raise ModelError(f"unknown role {req.role!r}; expected one of {ALL_ROLES}")
        grammar = None
        if isinstance(req.constraint, ChoiceConstraint):
            grammar = engine.grammars.choice(req.constraint.options, req.constraint.suffix)
        elif req.constraint is not None:
            grammar = engine.grammars.caller(req.constraint.tools, whitespace=engine.whitespace)
        stops = (TURN_END, *PLANNER_MARKERS) if req.role == "planner" else (TURN_END,)
        if grammar is not None:
            stops = ()  # the grammar decides where a constrained answer ends
        budget = req.max_new_tokens if cap is None else min(req.max_new_tokens, cap)
        adapter = adapter_of.get(req.role)
        rows.append(_Row(req.prompt, max(1, budget), stops, grammar, adapter, req.prefix))
    return rows


_Pending = tuple[GenerationRequest, _Row]
"""A request and its row, prepared in the caller's thread, waiting for a batch."""


def _generation(
    req: GenerationRequest,
    result: Result,
    engine: _Engine,
    adapter: str | None,
    costs: Mapping[str, float],
) -> Generation:
    text, prompt_tokens, completion_tokens, finish = result
    return Generation(
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=engine.model_id,
        adapter=adapter,
        extra={"finish": finish, "constrained": req.constraint is not None, **costs},
    )


class HFRoleModel:
    """One base model plus optional LoRA adapters per role; batches may mix roles."""

    def __init__(
        self,
        base: Path | str,
        adapters: Mapping[str, Path] | None = None,
        *,
        device: str = "cpu",
        dtype: torch.dtype | str | None = None,
        max_new_tokens: int | None = None,
        max_batch_size: int = 16,
        batch_wait_ms: float = 5.0,
        whitespace: Whitespace = "bounded",
        prompt_window: int | None = None,
    ) -> None:
        started = time.monotonic()
        self.engine = _Engine(Path(base), device=device, dtype=dtype, whitespace=whitespace)
        self.engine.prompt_window = _window(prompt_window)
        self.max_new_tokens = max_new_tokens
        self.max_batch_size = max_batch_size
        self.adapters: dict[str, _adapters.AdapterInfo] = {}
        self._batcher: Batcher[_Pending, Generation] = Batcher(
            self._run_batch, max_batch_size=max_batch_size, wait_s=batch_wait_ms / 1000
        )
        if adapters:
            self._load_adapters(adapters)
        self.load_seconds = round(time.monotonic() - started, 2)

    def _base_names(self) -> list[str]:
        names = [self.engine.name, self.engine.path.name, str(self.engine.path)]
        names.append(getattr(self.engine.model.config, "name_or_path", "") or "")
        if self.engine.name == "smollm2-135m-instruct":
            names.append("HuggingFaceTB/SmolLM2-135M-Instruct")
        return names

    def _load_adapters(self, adapters: Mapping[str, Path]) -> None:
        from peft import PeftModel

        unknown = set(adapters) - set(ALL_ROLES)
        if unknown:
            raise AdapterError(
                f"adapters for unknown roles {sorted(unknown)}; roles are {ALL_ROLES}"
            )
        infos = [_adapters.read_adapter(role, Path(path)) for role, path in adapters.items()]
        base = self.engine.model
        for info in infos:
            _adapters.check_base_name(info, self._base_names())
            _adapters.check_shapes(info, base)
        model = None
        for info in infos:
            try:
                if model is None:
                    model = PeftModel.from_pretrained(base, str(info.path), adapter_name=info.role)
                    result = None
                else:
                    result = model.load_adapter(str(info.path), adapter_name=info.role)
            except AdapterError:
                raise
            except Exception as exc:  # peft raises ValueError, RuntimeError, KeyError, ...
                raise AdapterError(
                    f"adapter {info.role!r} at {info.path} cannot be loaded: {exc}"
                ) from exc
            unexpected = getattr(result, "unexpected_keys", None) or []
            if unexpected:
                raise AdapterError(
                    f"adapter {info.role!r}: tensors the model has no place for: {unexpected[:3]}"
                )
            self.adapters[info.role] = info
        assert model is not None
        self._check_complete(model)
        model.eval()
        self.engine.model = model

    def _check_complete(self, model: Any) -> None:
        """Every LoRA layer peft created for an adapter got weights from its file."""
        from peft.tuners.lora import LoraLayer

        for role, info in self.adapters.items():
            stored = {k.removeprefix("base_model.model.") for k in _adapters.adapter_shapes(info)}
            for name, module in model.named_modules():
                if not isinstance(module, LoraLayer) or role not in module.lora_A:
                    continue
                inner = name.removeprefix("base_model.model.")
                if not any(k.startswith(inner + ".lora_") for k in stored):
                    raise AdapterError(
                        f"adapter {role!r}: its config targets {inner}, but {info.weights.name} "
                        "has no weights for it (an incomplete or mismatched adapter)"
                    )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate for every request; rows of any roles, and of concurrent calls, share
        batches."""
        adapter_of = {role: role for role in self.adapters}
        rows = _rows_for(requests, self.engine, self.max_new_tokens, adapter_of)
        return self._batcher(list(zip(requests, rows, strict=True)))

    def _run_batch(self, batch: Sequence[_Pending], waited: Sequence[float]) -> list[Generation]:
        results, timing = self.engine.run(
            [row for _, row in batch], mixed_adapters=bool(self.adapters)
        )
        out = []
        for (req, _), queued, result in zip(batch, waited, results, strict=True):
            info = self.adapters.get(req.role)
            costs = {"queue_ms": _ms(queued), "batch": len(batch), **timing}
            out.append(_generation(req, result, self.engine, info.label if info else None, costs))
        return out

    def describe(self) -> dict[str, Any]:
        """Base id and revision, adapter versions: stored with every decision."""
        labels = _adapters.adapter_labels(self.adapters, AGENT_ROLES)
        return {
            "backend": "hf",
            "base": self.engine.model_id,
            "base_path": str(self.engine.path),
            "base_source": self.engine.source,
            "device": self.engine.device,
            "dtype": str(self.engine.model.dtype).removeprefix("torch."),
            "adapters": labels,
            "version": _adapters.model_version(self.engine.model_id, labels),
            "constrained_json_whitespace": self.engine.whitespace,
            "prompt_window": self.engine.prompt_window,
        }


class CheckpointRoleModel:
    """Three full checkpoints, one per role (α-UMi's published form)."""

    def __init__(
        self,
        checkpoints: Mapping[str, Path | str],
        *,
        device: str = "cpu",
        dtype: torch.dtype | str | None = None,
        max_new_tokens: int | None = None,
        max_batch_size: int = 16,
        batch_wait_ms: float = 5.0,
        whitespace: Whitespace = "bounded",
        prompt_window: int | None = None,
    ) -> None:
        missing = [r for r in AGENT_ROLES if r not in checkpoints]
        unknown = sorted(set(checkpoints) - set(AGENT_ROLES))
        if missing or unknown:
            raise ConfigError(
                f"role_checkpoints needs exactly {', '.join(AGENT_ROLES)}; missing {missing}, "
                f"unknown {unknown}"
            )
        self.engines = {
            role: _Engine(
                Path(checkpoints[role]), device=device, dtype=dtype, whitespace=whitespace
            )
            for role in AGENT_ROLES
        }
        for engine in self.engines.values():
            engine.prompt_window = _window(prompt_window)
        self.max_new_tokens = max_new_tokens
        self.max_batch_size = max_batch_size
        self._batcher: Batcher[_Pending, Generation] = Batcher(
            self._run_batch, max_batch_size=max_batch_size, wait_s=batch_wait_ms / 1000
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate per role, each role's rows (of this and concurrent calls) batched on its
        own model."""
        bad = sorted({r.role for r in requests if r.role not in self.engines})
        if bad:
            raise ModelError(f"unknown roles {bad}; expected one of {AGENT_ROLES}")
        pending = [
            (req, _rows_for([req], self.engines[req.role], self.max_new_tokens, {})[0])
            for req in requests
        ]
        return self._batcher(pending)

    def _run_batch(self, batch: Sequence[_Pending], waited: Sequence[float]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(batch)
        for role, engine in self.engines.items():
            part = [i for i, (req, _) in enumerate(batch) if req.role == role]
            if not part:
                continue
            results, timing = engine.run([batch[i][1] for i in part], mixed_adapters=False)
            for i, result in zip(part, results, strict=True):
                costs = {"queue_ms": _ms(waited[i]), "batch": len(part), **timing}
                out[i] = _generation(batch[i][0], result, engine, None, costs)
        return [g for g in out if g is not None]

    def describe(self) -> dict[str, Any]:
        """Each role's checkpoint id and revision."""
        roles = {role: e.model_id for role, e in self.engines.items()}
        return {
            "backend": "hf-checkpoints",
            "roles": roles,
            "device": next(iter(self.engines.values())).device,
            "adapters": dict.fromkeys(AGENT_ROLES),
            "version": _adapters.model_version(json.dumps(roles, sort_keys=True), {}),
            "prompt_window": next(iter(self.engines.values())).prompt_window,
        }


def _batching(settings: Any) -> dict[str, Any]:
    return {
        "max_batch_size": getattr(settings, "model_max_batch", 16),
        "batch_wait_ms": getattr(settings, "model_batch_wait_ms", 5.0),
    }


def from_settings(settings: Any) -> HFRoleModel | CheckpointRoleModel:
    """Build the role model that ``settings`` describes (fetching the base if needed)."""
    from worker.models.store import resolve_base

    if settings.role_checkpoints:
        if settings.adapters_dir:
            raise ConfigError("set either role_checkpoints or adapters_dir, not both")
        return CheckpointRoleModel(
            settings.role_checkpoints,
            device=settings.device,
            max_new_tokens=settings.max_new_tokens,
            prompt_window=settings.prompt_window,
            **_batching(settings),
        )
    base = resolve_base(settings, progress=log.info)
    return HFRoleModel(
        base,
        _adapters.find_adapters(
            settings.resolved_adapters_dir, agent=getattr(settings, "agent", "multi")
        ),
        device=settings.device,
        max_new_tokens=settings.max_new_tokens,
        prompt_window=settings.prompt_window,
        **_batching(settings),
    )

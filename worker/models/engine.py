"""Role models served by an inference engine over its OpenAI-compatible completions API.

``UMIQ_MODEL_BACKEND=openai`` sends every role request to ``POST <engine_url>/v1/completions``
instead of running the model in the worker process. One base model and the role
adapters live in the engine (llama.cpp's ``llama-server``: ``umiq models serve``; vLLM
with ``--enable-lora``); the request names the role's adapter. Decoding is greedy, with
the in-process backend's stop strings and token budget, and a constrained caller
request carries the caller grammar as GBNF (:mod:`worker.models.gbnf`).

One client serves every engine; what differs (how a request picks an adapter, where the
grammar goes, how the engine says which stop string ended a completion) lives in a small
:class:`Dialect` per engine. Requests of all the episodes of a process go out at the same
time, up to ``engine_concurrency`` in flight, so that the engine batches them.

This module imports httpx only: a worker on this backend never loads torch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from worker.agent import protocol
from worker.agent.roles import (
    AGENT_ROLES,
    ALL_ROLES,
    ChoiceConstraint,
    Generation,
    GenerationRequest,
)
from worker.errors import ConfigError, ModelError
from worker.models import adapters as _adapters
from worker.models.gbnf import Whitespace, caller_gbnf, choice_gbnf

TURN_END = "</s>"
PLANNER_MARKERS = tuple(protocol.MARKERS.values())


@dataclass(frozen=True)
class Completion:
    """What an engine answered to one request, in the engine-neutral form."""

    text: str
    """The completion without the stop string that ended it."""
    stop: str | None
    """The stop string that ended it (None: end of sequence, grammar end or budget)."""
    finish: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Dialect:
    """How one engine takes the fields that the OpenAI completions API lacks."""

    name: ClassVar[str] = ""

    def discover(self, client: httpx.Client) -> tuple[str, dict[str, Any]]:
        """The base model's id and each role's adapter handle, asked of the engine."""
        raise NotImplementedError

    def body(
        self,
        base: str,
        adapters: Mapping[str, Any],
        *,
        role: str,
        prompt: str,
        max_tokens: int,
        stop: Sequence[str],
        grammar: str | None,
        prefix: Sequence[int] | str = (),
    ) -> dict[str, Any]:
        """The JSON body of one completion request. ``prefix`` is the given start of the
        output (``GenerationRequest.prefix``): token ids where the dialect asked for them
        (:meth:`prefix_tokens`), else its text."""
        raise NotImplementedError

    def prefix_tokens(self, client: httpx.Client, prefix: str) -> Sequence[int] | str:
        """``prefix`` as the body takes it; by default its text, appended to the prompt
        (tokenized with it, so the boundary may merge differently than in training)."""
        return prefix

    def completion(self, answer: Mapping[str, Any], stop: Sequence[str]) -> Completion:
        """The engine's JSON answer as a :class:`Completion`."""
        raise NotImplementedError


def _usage(answer: Mapping[str, Any]) -> tuple[int, int, int | None]:
    usage = answer.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return (
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        details.get("cached_tokens"),
    )


def _choice(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = answer.get("choices") or []
    if not choices:
        raise ModelError(f"the engine answered without choices: {str(answer)[:300]}")
    return choices[0]


class LlamaCpp(Dialect):
    """llama.cpp's ``llama-server``.

    Adapters are the ``--lora`` files, numbered in the order given; a request lists every
    one with its scale (1 for the role's, 0 for the rest), ``grammar`` takes GBNF, and
    ``"verbose": true`` makes the answer name the stop string that ended it.
    """

    name = "llama.cpp"

    def discover(self, client: httpx.Client) -> tuple[str, dict[str, Any]]:
        models = _get(client, "/v1/models")
        base = str((models.get("data") or [{}])[0].get("id", "llama.cpp"))
        loras = _get(client, "/lora-adapters")
        found: dict[str, Any] = {"__ids__": [int(a["id"]) for a in loras]}
        for adapter in loras:
            stem = Path(str(adapter.get("path", ""))).stem
            if stem in ALL_ROLES:
                found[stem] = int(adapter["id"])
        return Path(base).name, found

    def body(
        self,
        base: str,
        adapters: Mapping[str, Any],
        *,
        role: str,
        prompt: str,
        max_tokens: int,
        stop: Sequence[str],
        grammar: str | None,
        prefix: Sequence[int] | str = (),
    ) -> dict[str, Any]:
        chosen = adapters.get(role)
        body: dict[str, Any] = {
            # a prompt string followed by token ids is one prompt, the string tokenized
            # alone: the prefix's tokens follow the prompt's as a training target's do
            "prompt": [prompt, *prefix] if prefix else prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "top_k": 1,
            "stop": list(stop),
            "cache_prompt": True,
            "verbose": True,
            "lora": [
                {"id": i, "scale": 1.0 if i == chosen else 0.0} for i in adapters.get("__ids__", [])
            ],
        }
        if grammar is not None:
            body["grammar"] = grammar
        return body

    def prefix_tokens(self, client: httpx.Client, prefix: str) -> Sequence[int] | str:
        """The prefix's token ids, tokenized alone by the engine (``POST /tokenize``)."""
        response = client.post("/tokenize", json={"content": prefix, "add_special": False})
        if response.status_code >= 400:
            raise ModelError(f"the engine refused to tokenize a prefix: {response.text[:200]}")
        return [int(t) for t in response.json().get("tokens", [])]

    def completion(self, answer: Mapping[str, Any], stop: Sequence[str]) -> Completion:
        choice = _choice(answer)
        verbose = answer.get("__verbose") or {}
        word = verbose.get("stopping_word") or None
        prompt_tokens, completion_tokens, cached = _usage(answer)
        timings = answer.get("timings") or {}
        return Completion(
            text=str(choice.get("text") or ""),
            stop=word if word in stop else None,
            finish=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            extra={
                "cached_tokens": cached if cached is not None else timings.get("cache_n"),
                "prompt_ms": timings.get("prompt_ms"),
                "decode_ms": timings.get("predicted_ms"),
            },
        )


class VLLM(Dialect):
    """vLLM's OpenAI server started with ``--enable-lora --lora-modules planner=… …``.

    A request names its role's adapter as ``model`` (the base's name for a role without
    one), the grammar goes in ``structured_outputs.grammar``, and
    ``include_stop_str_in_output`` keeps the stop string, which is then cut off here.
    """

    name = "vllm"

    def discover(self, client: httpx.Client) -> tuple[str, dict[str, Any]]:
        data = _get(client, "/v1/models").get("data") or []
        ids = {str(m.get("id")) for m in data}
        roots = [str(m["id"]) for m in data if not m.get("parent")]
        if not roots:
            raise ModelError("the engine serves no base model (/v1/models lists none)")
        return roots[0], {role: role for role in ALL_ROLES if role in ids}

    def body(
        self,
        base: str,
        adapters: Mapping[str, Any],
        *,
        role: str,
        prompt: str,
        max_tokens: int,
        stop: Sequence[str],
        grammar: str | None,
        prefix: Sequence[int] | str = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": adapters.get(role) or base,
            "prompt": prompt + prefix if isinstance(prefix, str) else prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stop": list(stop),
            "include_stop_str_in_output": True,
        }
        if grammar is not None:
            body["structured_outputs"] = {"grammar": grammar}
        return body

    def completion(self, answer: Mapping[str, Any], stop: Sequence[str]) -> Completion:
        choice = _choice(answer)
        text = str(choice.get("text") or "")
        word = choice.get("stop_reason")
        word = word if isinstance(word, str) and word in stop else None
        if word is None and choice.get("finish_reason") == "stop":
            word = next((s for s in stop if text.endswith(s)), None)
        if word is not None and text.endswith(word):
            text = text[: -len(word)]
        prompt_tokens, completion_tokens, cached = _usage(answer)
        return Completion(
            text=text,
            stop=word,
            finish=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            extra={"cached_tokens": cached},
        )


DIALECTS: dict[str, type[Dialect]] = {"llama.cpp": LlamaCpp, "vllm": VLLM}


def _get(client: httpx.Client, path: str) -> Any:
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        raise _translate(exc, client) from exc
    if response.status_code >= 400:
        raise ModelError(
            f"the engine at {client.base_url} answered {response.status_code} to GET {path}: "
            f"{response.text[:300]}"
        )
    return response.json()


def _translate(exc: httpx.HTTPError, client: httpx.Client) -> ModelError:
    url = str(client.base_url)
    if isinstance(exc, httpx.TimeoutException):
        return ModelError(f"the engine at {url} did not answer in time ({exc!r})")
    if isinstance(exc, httpx.ConnectError):
        return ModelError(
            f"cannot reach the engine at {url} ({exc}); start it (`umiq models serve`) or "
            "set UMIQ_ENGINE_URL"
        )
    return ModelError(f"request to the engine at {url} failed: {exc!r}")


class EngineRoleModel:
    """A :class:`~worker.agent.roles.RoleModel` whose model runs in an inference engine."""

    def __init__(
        self,
        base_url: str,
        dialect: Dialect | str = "llama.cpp",
        *,
        timeout: float = 300.0,
        connect_timeout: float = 5.0,
        concurrency: int = 16,
        max_new_tokens: int | None = None,
        whitespace: Whitespace = "bounded",
        adapters: Mapping[str, str | None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if isinstance(dialect, str):
            try:
                dialect = DIALECTS[dialect]()
            except KeyError:
                raise ConfigError(
                    f"unknown engine dialect {dialect!r}; known: {sorted(DIALECTS)}"
                ) from None
        if concurrency < 1:
            raise ConfigError(f"engine_concurrency must be at least 1, got {concurrency}")
        self.dialect = dialect
        self.base_url = base_url.rstrip("/")
        self.max_new_tokens = max_new_tokens
        self.whitespace: Whitespace = whitespace
        self.expected = dict(adapters or {})
        """Role → label of the adapter the engine must serve for it (local files' labels)."""
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="umiq-engine")
        self._lock = threading.Lock()
        self._served: tuple[str, dict[str, Any]] | None = None
        self._grammars: dict[str, str] = {}

    def served(self) -> tuple[str, dict[str, Any]]:
        """The engine's base id and adapter handles (asked once; refuses a missing role)."""
        with self._lock:
            if self._served is None:
                base, handles = self.dialect.discover(self.client)
                missing = [r for r, label in self.expected.items() if label and r not in handles]
                if missing:
                    raise ModelError(
                        f"the engine at {self.base_url} serves no adapter for {missing}; start "
                        "it with one per role (`umiq models serve` loads <role>.gguf)"
                    )
                self._served = (base, handles)
            return self._served

    def grammar(self, request: GenerationRequest) -> str | None:
        constraint = request.constraint
        if constraint is None:
            return None
        if isinstance(constraint, ChoiceConstraint):
            return choice_gbnf(constraint.options, constraint.suffix)
        tools = constraint.tools
        key = json.dumps(
            [self.whitespace, [[t.name, t.parameters] for t in tools]], sort_keys=True, default=str
        )
        with self._lock:
            if key not in self._grammars:
                self._grammars[key] = caller_gbnf(tools, whitespace=self.whitespace)
            return self._grammars[key]

    def _prefix(self, prefix: str) -> Sequence[int] | str:
        if not prefix:
            return ()
        try:
            return self.dialect.prefix_tokens(self.client, prefix)
        except httpx.HTTPError as exc:
            raise _translate(exc, self.client) from exc

    def _one(self, request: GenerationRequest) -> Generation:
        if request.role not in ALL_ROLES:
            raise ModelError(f"unknown role {request.role!r}; expected one of {ALL_ROLES}")
        base, handles = self.served()
        grammar = self.grammar(request)
        stop: tuple[str, ...] = (TURN_END,)
        if request.role == "planner":
            stop = (TURN_END, *PLANNER_MARKERS)
        if grammar is not None:
            stop = ()  # the grammar decides where a constrained answer ends
        budget = request.max_new_tokens
        if self.max_new_tokens is not None:
            budget = min(budget, self.max_new_tokens)
        body = self.dialect.body(
            base,
            handles,
            role=request.role,
            prompt=request.prompt,
            max_tokens=max(1, budget),
            stop=stop,
            grammar=grammar,
            prefix=self._prefix(request.prefix),
        )
        try:
            response = self.client.post("/v1/completions", json=body)
        except httpx.HTTPError as exc:
            raise _translate(exc, self.client) from exc
        if response.status_code >= 400:
            raise ModelError(
                f"the engine at {self.base_url} refused a {request.role} request "
                f"({response.status_code}): {response.text[:300]}"
            )
        done = self.dialect.completion(response.json(), stop)
        text = done.text.split(TURN_END, 1)[0]
        if done.stop in PLANNER_MARKERS:
            text += done.stop  # the in-process path keeps the marker; the protocol cuts there
        return Generation(
            text=text,
            prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens,
            model=f"{self.dialect.name}:{base}",
            adapter=self.expected.get(request.role) if request.role in handles else None,
            extra={
                "finish": "stop" if done.stop else done.finish,
                "constrained": grammar is not None,
                **{k: v for k, v in done.extra.items() if v is not None},
            },
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Send every request at once; answers come back in the requests' order."""
        if len(requests) == 1:
            return [self._one(requests[0])]
        futures = [self._pool.submit(self._one, r) for r in requests]
        return [f.result() for f in futures]

    def describe(self) -> dict[str, Any]:
        """The engine, its base model and the adapters that serve the roles."""
        base, handles = self.served()
        roles = (*AGENT_ROLES, *(r for r in self.expected if r not in AGENT_ROLES))
        labels = {r: (self.expected.get(r) if r in handles else None) for r in roles}
        base_id = f"{self.dialect.name}:{base}"
        return {
            "backend": "openai",
            "engine": self.dialect.name,
            "url": self.base_url,
            "base": base_id,
            "adapters": labels,
            "version": _adapters.model_version(base_id, labels),
            "constrained_json_whitespace": self.whitespace,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()


def from_settings(settings: Any) -> EngineRoleModel:
    """The engine backend that ``settings`` describe (``UMIQ_ENGINE_URL`` and friends)."""
    if settings.prompt_window is not None:
        raise ConfigError(
            "prompt_window is not supported with model_backend=openai: the engine gets the "
            "prompt text whole; unset UMIQ_PROMPT_WINDOW"
        )
    found = _adapters.find_adapters(
        settings.resolved_adapters_dir, agent=getattr(settings, "agent", "multi")
    )
    labels = {role: _adapters.read_adapter(role, path).label for role, path in found.items()}
    return EngineRoleModel(
        settings.engine_url,
        settings.engine_dialect,
        timeout=settings.engine_timeout_s,
        concurrency=settings.engine_concurrency,
        max_new_tokens=settings.max_new_tokens,
        adapters=labels,
    )


__all__ = ["DIALECTS", "VLLM", "Completion", "Dialect", "EngineRoleModel", "LlamaCpp"]

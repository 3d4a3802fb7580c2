"""Role models served by an inference engine over its OpenAI-compatible completions API.

``UMIQ_MODEL_BACKEND=openai`` sends every role request to ``POST <engine_url>/v1/completions``
instead of running the model in the worker process. One base model and the role
adapters live in the engine (llama.cpp's ``llama-server``: ``umiq models serve``; vLLM
with ``--enable-lora``); the request names the role's adapter. Decoding is greedy, with
the in-process backend's stop strings and token budget, and a constrained caller
request carries the caller grammar as GBNF (:mod:`worker.models.gbnf`).

One client serves every engine; what differs (how a request picks an adapter, where the
grammar goes, how the engine says which stop string ended a completion) lives in a small
dialect per engine (``worker.models.dialects``). Requests of all the episodes of a process
go out at the same time, up to ``engine_concurrency`` in flight, so that the engine
batches them. On llama.cpp the client also chooses each request's slot
(``worker.models.slots``), so that a slot's prompt cache stays with one role.

This module imports httpx only: a worker on this backend never loads torch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
from worker.models.dialects import DIALECTS, Dialect, transport_error
from worker.models.gbnf import Whitespace, caller_gbnf, choice_gbnf
from worker.models.slots import SlotTable, slot_ids

TURN_END = "</s>"
PLANNER_MARKERS = tuple(protocol.MARKERS.values())


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
        slots: str = "all",
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
        self.timeout = timeout
        self.slot_spec = slots
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
        self._slots: SlotTable | None = None

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
                count = self.dialect.slot_count(self.client) if self.slot_spec != "off" else None
                ids = slot_ids(self.slot_spec, count) if count else None
                self._slots = SlotTable(ids) if ids else None
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
            raise transport_error(exc, self.client) from exc

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
        prefix = self._prefix(request.prefix)
        sent = request.prompt + request.prefix
        slots = self._slots
        choice = slots.acquire(request.role, sent, timeout=self.timeout) if slots else None
        body = self.dialect.body(
            base,
            handles,
            role=request.role,
            prompt=request.prompt,
            max_tokens=max(1, budget),
            stop=stop,
            grammar=grammar,
            prefix=prefix,
            slot=choice.slot if choice else None,
        )
        cached: str | None = None  # what the slot holds after this request (None: unknown)
        try:
            answer = self._post(request.role, body)
            done = self.dialect.completion(answer, stop)
            cached = sent + done.text + (done.stop or "")
        finally:
            if choice is not None and slots is not None:
                slots.release(choice.slot, request.role, cached)
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
                **({"slot": choice.slot, "slot_choice": choice.reason} if choice else {}),
                **{k: v for k, v in done.extra.items() if v is not None},
            },
        )

    def _post(self, role: str, body: dict[str, Any]) -> Any:
        try:
            response = self.client.post("/v1/completions", json=body)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.client) from exc
        if response.status_code >= 400:
            raise ModelError(
                f"the engine at {self.base_url} refused a {role} request "
                f"({response.status_code}): {response.text[:300]}"
            )
        return response.json()

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
        slots=settings.engine_slots,
    )


__all__ = ["EngineRoleModel", "from_settings"]

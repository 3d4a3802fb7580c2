"""The engines' dialects: how each takes what the OpenAI completions API lacks.

One :class:`Dialect` per engine says how a request picks its role's adapter, where the
caller's grammar goes, how a given output start (``GenerationRequest.prefix``) is sent,
and how the engine says which stop string ended a completion. The client that sends the
requests is ``worker.models.engine``. Imports httpx only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from worker.agent.roles import ALL_ROLES
from worker.errors import ModelError


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
        slot: int | None = None,
    ) -> dict[str, Any]:
        """The JSON body of one completion request. ``prefix`` is the given start of the
        output (``GenerationRequest.prefix``): token ids where the dialect asked for them
        (:meth:`prefix_tokens`), else its text. ``slot``: the engine slot the client chose
        (only where :meth:`slot_count` gave a count)."""
        raise NotImplementedError

    def slot_count(self, client: httpx.Client) -> int | None:
        """How many slots the engine has, where a request can name its slot (None: the
        engine places requests itself)."""
        return None

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
    one with its scale (1 for the role's, 0 for the rest), ``grammar`` takes GBNF,
    ``"verbose": true`` makes the answer name the stop string that ended it, and
    ``id_slot`` the slot the client chose (``worker.models.slots``).
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
        slot: int | None = None,
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
        if slot is not None:
            body["id_slot"] = slot
        return body

    def slot_count(self, client: httpx.Client) -> int | None:
        """``total_slots`` of ``GET /props`` (the server's ``--parallel``)."""
        slots = _get(client, "/props").get("total_slots")
        return int(slots) if slots else None

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
    vLLM's prefix cache is shared by all its sequences and keyed by adapter, so the client
    does not choose slots.
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
        slot: int | None = None,
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
        raise transport_error(exc, client) from exc
    if response.status_code >= 400:
        raise ModelError(
            f"the engine at {client.base_url} answered {response.status_code} to GET {path}: "
            f"{response.text[:300]}"
        )
    return response.json()


def transport_error(exc: httpx.HTTPError, client: httpx.Client) -> ModelError:
    url = str(client.base_url)
    if isinstance(exc, httpx.TimeoutException):
        return ModelError(f"the engine at {url} did not answer in time ({exc!r})")
    if isinstance(exc, httpx.ConnectError):
        return ModelError(
            f"cannot reach the engine at {url} ({exc}); start it (`umiq models serve`) or "
            "set UMIQ_ENGINE_URL"
        )
    return ModelError(f"request to the engine at {url} failed: {exc!r}")


__all__ = ["DIALECTS", "VLLM", "Completion", "Dialect", "LlamaCpp", "transport_error"]

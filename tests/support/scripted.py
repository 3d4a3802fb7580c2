"""Deterministic role models for tests that run the real worker, and a recording wrapper.

Plug them in with ``UMIQ_ROLE_MODEL``:

- ``tests.support.scripted:factory`` — a :class:`ScriptedRoleModel` that follows the
  current task's script: the envelope's ``context["script"]``, or the entry for the task
  id in the JSON file that ``UMIQ_TEST_SCRIPTS`` names (``{task_id: script}``);
- ``tests.support.scripted:recording_factory`` — the real role model the settings
  describe, wrapped so that it records what it is asked.

A script is a list of calls ``{"tool": name, "arguments": {...}}``. The planner says
``Next: caller.`` while calls remain, then ``Next: conclusion.``; the caller writes the
next call as ``Action: <tool>\\nAction Input: {json}``, with every ``$EMAIL``, ``$NAME``,
``$IBAN``, ``$PHONE``, ``$NATIONAL_ID`` or ``$CARD`` in an argument replaced by a token of
that kind from its prompt (``$EMAIL`` the first seen, ``$EMAIL[1]`` the second,
``$EMAIL[-1]`` the last), so it acts on the tokens it can see as a real model would; the
summarizer repeats the last observation, or says the script's ``{"answer": text}``.
Every prompt and answer is appended to the JSONL file that ``UMIQ_TEST_PROMPT_LOG``
names, when set; ``UMIQ_TEST_GENERATION_DELAY``
seconds (default 0) make each generation as slow as a real model's on a CPU.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from policies import PiiKind
from worker.agent.roles import Generation, GenerationRequest, RoleModel

PROMPT_LOG_ENV = "UMIQ_TEST_PROMPT_LOG"
SCRIPTS_ENV = "UMIQ_TEST_SCRIPTS"
DELAY_ENV = "UMIQ_TEST_GENERATION_DELAY"

Script = Sequence[Mapping[str, Any]]

_KINDS = "|".join(sorted((kind.value for kind in PiiKind), key=len, reverse=True))
#: A token as the pseudonymizer writes it: ``<EMAIL_1>``.
TOKEN = re.compile(rf"<({_KINDS})_\d+>")
#: A placeholder in a script's argument: ``$EMAIL``, ``$NAME[1]``, ``$IBAN[-1]``.
PLACEHOLDER = re.compile(rf"\$({_KINDS})(?:\[(-?\d+)\])?(?![A-Z_])")
_CALLER_TURN = "</s>caller: "
_OBSERVATION = "observation: "


def tokens_in(text: str) -> dict[str, list[str]]:
    """The distinct tokens in ``text`` by kind, in order of first appearance."""
    found: dict[str, list[str]] = {}
    for match in TOKEN.finditer(text):
        seen = found.setdefault(match.group(1), [])
        if match.group() not in seen:
            seen.append(match.group())
    return found


def fill(arguments: Any, prompt: str) -> Any:
    """``arguments`` with each placeholder replaced by the token of its kind in ``prompt``.

    A placeholder with no such token in the prompt is left as written (the call then
    fails its schema, as a model's guess would).
    """
    found = tokens_in(prompt)

    def token(match: re.Match[str]) -> str:
        options = found.get(match.group(1), [])
        index = int(match.group(2) or 0)
        return options[index] if -len(options) <= index < len(options) else match.group()

    if isinstance(arguments, str):
        return PLACEHOLDER.sub(token, arguments)
    if isinstance(arguments, Mapping):
        return {key: fill(value, prompt) for key, value in arguments.items()}
    if isinstance(arguments, list | tuple):
        return [fill(value, prompt) for value in arguments]
    return arguments


def calls_made(prompt: str) -> int:
    """How many caller turns the history in ``prompt`` holds."""
    return prompt.count(_CALLER_TURN)


def last_observation(prompt: str) -> str:
    """The text of the last observation turn in ``prompt`` (empty when there is none)."""
    start = prompt.rfind(_OBSERVATION)
    if start < 0:
        return ""
    text = prompt[start + len(_OBSERVATION) :]
    end = text.find("assistant: ")
    return text if end < 0 else text[:end]


def current_task_id() -> str | None:
    """The task id the worker bound to this thread's log context, if any."""
    value = structlog.contextvars.get_contextvars().get("task_id")
    return value if isinstance(value, str) else None


def answer(request: GenerationRequest, script: Script) -> str:
    """What a role following ``script`` says to ``request``."""
    said = next((str(step["answer"]) for step in script if "answer" in step), None)
    script = [step for step in script if "tool" in step]
    done = calls_made(request.prompt)
    if request.role == "planner":
        lead = " " if request.prefix else ""  # it goes on after the recap it was given
        if done < len(script):
            return f"{lead}Next step: {script[done]['tool']}.\n Next: caller."
        return f"{lead}Every step of the script is done.\n Next: conclusion."
    if request.role == "caller":
        if done >= len(script):
            return "The script has no step left."
        step = script[done]
        arguments = fill(dict(step.get("arguments") or {}), request.prompt)
        return f"Action: {step['tool']}\nAction Input: {json.dumps(arguments, ensure_ascii=False)}"
    if request.role == "summarizer":
        return said or last_observation(request.prompt) or "Nothing was looked up."
    raise ValueError(f"the scripted model plays planner, caller and summarizer, not {request.role}")


class PromptLog:
    """Appends ``{"task_id", "role", "prompt", "text"}`` lines to a JSONL file."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def write(self, request: GenerationRequest, text: str) -> None:
        if self.path is None:
            return
        line = json.dumps(
            {
                "task_id": current_task_id(),
                "role": request.role,
                "prompt": request.prompt,
                "text": text,
            },
            ensure_ascii=False,
        )
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


class ScriptedRoleModel:
    """A RoleModel that plays every role from the current task's script and logs prompts."""

    def __init__(
        self,
        script_for: Callable[[], Script],
        prompt_log: str | Path | None = None,
        delay: float = 0.0,
    ) -> None:
        self.script_for = script_for
        self.log = PromptLog(prompt_log)
        self.delay = delay

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if self.delay:
            # Blocks the calling thread as a CPU-bound generation does.
            time.sleep(self.delay)
        out = []
        for request in requests:
            text = answer(request, self.script_for())
            self.log.write(request, text)
            out.append(Generation(text, len(request.prompt.split()), len(text.split()), "scripted"))
        return out

    def describe(self) -> dict[str, Any]:
        return {"base": "scripted", "adapters": {}}


class RecordingRoleModel:
    """Wraps a RoleModel and logs every prompt it is given and what it answered."""

    def __init__(self, inner: RoleModel, prompt_log: str | Path | None) -> None:
        self.inner = inner
        self.log = PromptLog(prompt_log)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out = self.inner.generate(requests)
        for request, generation in zip(requests, out, strict=True):
            self.log.write(request, generation.text)
        return out

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


class ForcedFirstCalls:
    """Wraps a RoleModel: the first planner and caller turns follow ``script``, the rest is
    the wrapped model's (so a test can be sure a tool output reaches the real model)."""

    def __init__(self, inner: RoleModel, script: Script) -> None:
        self.inner = inner
        self.script = list(script)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(requests)
        passed = []
        for position, request in enumerate(requests):
            forced = request.role in ("planner", "caller") and calls_made(request.prompt) < len(
                self.script
            )
            if forced:
                out[position] = Generation(answer(request, self.script), model="forced")
            else:
                passed.append(position)
        if passed:
            for position, generation in zip(
                passed, self.inner.generate([requests[p] for p in passed]), strict=True
            ):
                out[position] = generation
        return [g for g in out if g is not None]

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def _task_script() -> Script:
    task_id = current_task_id()
    if task_id is None:
        raise LookupError("the scripted model runs outside a task: no task_id is bound")
    path = os.environ.get(SCRIPTS_ENV)
    if path:
        scripts = json.loads(Path(path).read_text(encoding="utf-8"))
        if task_id in scripts:
            return list(scripts[task_id])
    from worker import runtime

    task = runtime.audit_log().task(task_id)
    script = (task.context if task is not None else {}).get("script")
    if script is None:
        raise LookupError(f"task {task_id!r} has no script (context['script'] or {SCRIPTS_ENV})")
    return list(script)


def factory(settings: Any) -> ScriptedRoleModel:
    """``UMIQ_ROLE_MODEL=tests.support.scripted:factory``: the scripted model of each task."""
    return ScriptedRoleModel(
        _task_script, os.environ.get(PROMPT_LOG_ENV), float(os.environ.get(DELAY_ENV) or 0)
    )


def recording_factory(settings: Any) -> RecordingRoleModel:
    """``UMIQ_ROLE_MODEL=tests.support.scripted:recording_factory``: the real role model
    the settings describe (base + adapters), recording its prompts."""
    from worker.models import load_role_model

    real = load_role_model(settings.model_copy(update={"role_model": None}))
    return RecordingRoleModel(real, os.environ.get(PROMPT_LOG_ENV))


class RoleScripts:
    """A RoleModel for unit tests of one episode: each role answers from its own list, in
    order, and every request is kept (``requests``) to read the prompts and constraints."""

    def __init__(self, **scripts: list[str]) -> None:
        self.scripts = {role: list(texts) for role, texts in scripts.items()}
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.requests.extend(requests)
        return [Generation(self.scripts[r.role].pop(0), 10, 5, "scripted") for r in requests]

    def describe(self) -> dict[str, Any]:
        return {"base": "scripted"}

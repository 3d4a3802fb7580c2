"""The agent loop: planner → caller → connector → … → summarizer, in the α-UMi protocol.

Each step is appended to the audit log before the next starts. The caller is offered,
and constrained to, the tools the department may use; every call passes the access
policy and the tool's schema before a connector runs it, and carries the idempotency
key ``task_id:step`` so that a write already committed is never made twice.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from connectors import ConnectorError, InvalidArguments, ToolCall, ToolResult, ToolSpec
from connectors._schema import validate_arguments
from policies import AccessRule, check_access
from worker.agent import protocol
from worker.agent.roles import CallerConstraint, Generation, GenerationRequest, RoleModel
from worker.envelope import Envelope
from worker.errors import ProtocolError
from worker.toolbox import Toolbox

Outcome = Literal["answered", "gave_up", "step_limit", "refused", "failed"]
log = structlog.get_logger("umiq.agent")


@dataclass
class EpisodeStep:
    """One step as the CLI shows it."""

    index: int
    kind: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeResult:
    """How a task ended, its answer and the steps that led there."""

    task_id: str
    outcome: Outcome
    answer: str
    reason: str
    steps: list[EpisodeStep]
    tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "outcome": self.outcome,
            "answer": self.answer,
            "reason": self.reason,
            "tokens": self.tokens,
            "steps": [s.__dict__ for s in self.steps],
        }


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Episode:
    """Runs one task to its end; the audit log receives every step as it happens."""

    def __init__(
        self,
        envelope: Envelope,
        *,
        model: RoleModel,
        toolbox: Toolbox,
        access: AccessRule | None,
        audit: Any,
        max_steps: int = 12,
        max_new_tokens: int = 160,
        agent: str = "multi",
    ) -> None:
        if agent not in ("multi", "single"):
            raise ValueError(f"agent must be 'multi' or 'single', got {agent!r}")
        self.envelope = envelope
        self.model = model
        self.toolbox = toolbox
        self.access = access
        self.audit = audit
        self.max_steps = max_steps
        self.max_new_tokens = max_new_tokens
        self.agent = agent
        self.turns: list[dict[str, str]] = [{"from": "user", "value": envelope.query}]
        self.steps: list[EpisodeStep] = []
        self.tokens = 0
        self._index = 0
        self.allowed: list[ToolSpec] = [
            spec
            for spec in toolbox.specs()
            if check_access(access, spec.name, spec.effect, spec.connector).allowed
        ]
        self.docs = [spec.alpha_umi_doc() for spec in self.allowed]

    # -- the loop -----------------------------------------------------------------

    def run(self) -> EpisodeResult:
        task_id = self.envelope.task_id
        if not self.allowed:
            return self._finish("refused", "", "the department may use no tools")
        if self.agent == "single":
            return self._run_single()
        for _ in range(self.max_steps):
            plan_text = self._generate("planner", protocol.planner_prompt(self.docs, self.turns))
            plan = protocol.parse_planner(plan_text)
            self.turns.append({"from": "assistant", "value": plan.thought})
            self._record("planner", "planner", plan.thought, {"next": plan.next})
            if plan.next == "give up":
                return self._finish("gave_up", "", "the planner gave up")
            if plan.next == "conclusion":
                answer = self._generate("summarizer", protocol.summarizer_prompt(self.turns))
                self.turns.append({"from": "conclusion", "value": answer})
                self._record("summarizer", "summarizer", answer, {})
                return self._finish("answered", answer, "the summarizer answered")
            self._call_step(plan.thought)
        log.info("episode.step_limit", task_id=task_id, max_steps=self.max_steps)
        return self._finish("step_limit", "", f"no conclusion within {self.max_steps} steps")

    def _run_single(self) -> EpisodeResult:
        """The single-LLM baseline: one backbone output per step, split into the roles'
        turns so that the history (and the audit trail) reads as in the multi-LLM loop."""
        for _ in range(self.max_steps):
            text = self._generate("backbone", protocol.backbone_prompt(self.docs, self.turns))
            out = protocol.parse_backbone(text)
            self.turns.append({"from": "assistant", "value": out.planner_thought()})
            self._record("planner", "backbone", out.planner_thought(), {"next": out.next})
            if out.next == "give up":
                return self._finish("gave_up", "", "the model gave up")
            if out.next == "conclusion":
                self.turns.append({"from": "conclusion", "value": out.answer})
                self._record("summarizer", "backbone", out.answer, {})
                return self._finish("answered", out.answer, "the model answered")
            self._handle_call(out.call, role="backbone")
        log.info("episode.step_limit", task_id=self.envelope.task_id, max_steps=self.max_steps)
        return self._finish("step_limit", "", f"no conclusion within {self.max_steps} steps")

    def _call_step(self, thought: str) -> None:
        text = self._generate(
            "caller",
            protocol.caller_prompt(self.docs, self.turns, thought),
            constraint=CallerConstraint(tuple(self.allowed)),
        )
        self._handle_call(text, role="caller")

    def _handle_call(self, text: str, *, role: str) -> None:
        """Parse a call, run it through the policies and the connector, observe the result."""
        self.turns.append({"from": "caller", "value": text})
        try:
            parsed = protocol.parse_caller(text)
        except ProtocolError as exc:
            self._record("caller", role, text, {"error": str(exc)})
            self._observe(ToolResult(ok=False, error=f"unparseable call: {exc}"))
            return
        call = ToolCall(parsed.tool, parsed.arguments)
        self._record("caller", role, text, {"tool": call.tool, "arguments": call.arguments})
        self._observe(self._execute(call))

    def _execute(self, call: ToolCall) -> ToolResult:
        """Policy, schema, idempotency, then the connector. Refusals become observations."""
        caller_step = self._index  # the key names the caller step, stable across replays
        try:
            spec = self.toolbox.spec(call.tool)
        except ConnectorError as exc:
            self._record_policy(False, "access", [str(exc)], call)
            return ToolResult(ok=False, error=f"refused: {exc}")
        decision = check_access(self.access, spec.name, spec.effect, spec.connector)
        self._record_policy(decision.allowed, decision.policy, list(decision.reasons), call)
        if not decision.allowed:
            return ToolResult(ok=False, error="refused: " + "; ".join(decision.reasons))
        try:
            validate_arguments(spec.parameters, call.arguments)
        except InvalidArguments as exc:
            self._record_policy(False, "schema", [str(exc)], call)
            return ToolResult(ok=False, error=f"invalid arguments: {exc}")

        key = f"{self.envelope.task_id}:{caller_step}"
        committed = self.audit.tool_call_by_key(key)
        if committed is not None:  # a redelivery: the call already happened
            return ToolResult(ok=committed.ok, data=committed.response, error=committed.error)
        started = time.perf_counter()
        try:
            result = self.toolbox.connector_for(spec.name).invoke(call, key)
        except ConnectorError as exc:
            result = ToolResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        self.audit.append_tool_call(
            task_id=self.envelope.task_id,
            step=caller_step,
            idempotency_key=key,
            tool=spec.name,
            effect=spec.effect,
            request=dict(call.arguments),
            response=result.data,
            ok=result.ok,
            error=result.error,
        )
        log.info(
            "tool.called",
            tool=spec.name,
            ok=result.ok,
            latency_ms=round((time.perf_counter() - started) * 1000),
        )
        return result

    def _observe(self, result: ToolResult) -> None:
        observation = result.observation()
        self.turns.append({"from": "observation", "value": observation})
        self._record("tool", None, observation, {"ok": result.ok})

    # -- model and audit helpers ---------------------------------------------------

    def _generate(self, role: str, prompt: str, constraint: CallerConstraint | None = None) -> str:
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(role=role):
            request = GenerationRequest(
                role=role,  # type: ignore[arg-type]
                prompt=prompt,
                max_new_tokens=self.max_new_tokens,
                constraint=constraint,
            )
            gen: Generation = self.model.generate([request])[0]
            latency_ms = round((time.perf_counter() - started) * 1000)
            log.info("role.generated", tokens=gen.completion_tokens, latency_ms=latency_ms)
        self.tokens += gen.prompt_tokens + gen.completion_tokens
        self._last = (digest(prompt), latency_ms, gen)
        return gen.text

    def _record(self, kind: str, role: str | None, output: str, details: dict[str, Any]) -> None:
        self._index += 1
        prompt_digest, latency_ms, gen = (None, None, None)
        if role is not None:
            prompt_digest, latency_ms, gen = self._last
        self.audit.append_step(
            task_id=self.envelope.task_id,
            index=self._index,
            kind=kind,
            role=role,
            prompt_digest=prompt_digest,
            output=output,
            details=details,
            latency_ms=latency_ms,
            model=gen.model if gen else None,
            adapter=gen.adapter if gen else None,
        )
        self.steps.append(EpisodeStep(self._index, kind, output, details))

    def _record_policy(
        self, allowed: bool, policy: str, reasons: list[str], call: ToolCall
    ) -> None:
        self._record(
            "policy",
            None,
            "allowed" if allowed else "denied",
            {"policy": policy, "allowed": allowed, "reasons": reasons, "tool": call.tool},
        )
        if not allowed:
            log.warning("policy.denied", policy=policy, tool=call.tool, reasons=reasons)

    def _finish(self, outcome: Outcome, answer: str, reason: str) -> EpisodeResult:
        self._record("outcome", None, answer, {"outcome": outcome, "reason": reason})
        return EpisodeResult(
            task_id=self.envelope.task_id,
            outcome=outcome,
            answer=answer,
            reason=reason,
            steps=self.steps,
            tokens=self.tokens,
        )

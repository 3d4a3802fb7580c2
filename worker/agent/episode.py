"""The agent loop: planner → caller → connector → … → summarizer, in the α-UMi protocol.

Each step is appended to the audit log before the next starts. The caller is offered,
and constrained to, the tools the department may use; every call then passes, in
order, the access policy, token resolution, the tool's schema, the approval policy and
the idempotency check (key ``task_id:caller-step``) before a connector runs it, and the
response passes minimization before the model sees it. Every policy decision is a
``policy`` step with its reasons.

Personal data: the model only ever sees this task's tokens (``<EMAIL_1>``). The token
map is sealed into the audit log whenever it grows; raw tool requests and responses
are sealed by the audit log's sealer.

Approval: a call that needs a human ends the episode as ``awaiting_approval`` (the
request is a ``policy`` step naming the call's key). ``Episode.resume`` rebuilds the
history from the audit log, runs the approved call and goes on.

Crashes and outages: ``Episode.recover`` goes on with a task whose run was cut off,
replaying its recorded steps (``worker.agent.replay``); a committed call is replayed only
to the same call. A system that is down (``ConnectorUnavailable`` after the connector's
retries, or its open circuit) is a denied ``connector`` policy step and the error goes up
for the task to be retried; the model never reads an outage.

Shutdown: when ``should_stop`` says so (the worker is shutting down, ``worker.shutdown``),
the episode stops before its next model step: a ``shutdown`` policy step records where,
and ``Checkpointed`` goes up for the task to go back to the queue and resume by replay.

Claims: an answer that states a change (*scheduled*, *paid*, *sent*, …) no successful
call of the task made or read is not delivered as done: the ``claims`` policy step
records why and the episode ends ``held``, for a human to read.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from connectors import (
    ConnectorError,
    ConnectorUnavailable,
    InvalidArguments,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from connectors._schema import validate_arguments
from policies import AccessRule, Decision, check_claims
from policies._claims import check_form
from worker.agent import grounding, protocol, replay
from worker.agent.guard import Guard
from worker.agent.roles import CallerConstraint, Generation, GenerationRequest, RoleModel
from worker.agent.views import ALPHA_UMI, PromptView
from worker.envelope import Envelope
from worker.errors import AuditError, Checkpointed, ProtocolError
from worker.toolbox import Toolbox

Outcome = Literal[
    "answered",
    "held",
    "gave_up",
    "step_limit",
    "refused",
    "failed",
    "awaiting_approval",
    "rejected",
]
log = structlog.get_logger("umiq.agent")

#: How the repeat guard's observations start (a call it refused is not a call made).
_NOT_RUN = "not run:"

#: ``details.status`` of the policy step that asks a human to approve a call.
APPROVAL_REQUESTED = "requested"


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


def claims_evidence(
    turns: Sequence[dict[str, str]], write_tools: Collection[str]
) -> tuple[list[str], list[str]]:
    """What backs an answer's claims: the successful write calls' tools and the
    successful observations, read from an α-UMi history (a failed call backs nothing)."""
    done = [call for call in protocol.calls_seen(turns) if call.ok]
    return [c.tool for c in done if c.tool in write_tools], [c.text for c in done]


class _AwaitingApproval(Exception):
    def __init__(self, key: str, reasons: Sequence[str]) -> None:
        super().__init__(key)
        self.key = key
        self.reasons = list(reasons)


class _ReplayMismatch(Exception):
    """A committed call under this step's key is not the call being replayed."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


class Episode:
    """Runs one task to its end; the audit log receives every step as it happens."""

    def __init__(
        self,
        envelope: Envelope,
        *,
        model: RoleModel,
        toolbox: Toolbox,
        access: AccessRule | None = None,
        audit: Any,
        max_steps: int = 12,
        max_new_tokens: int = 160,
        agent: str = "multi",
        guard: Guard | None = None,
        view: PromptView | None = None,
        ground_arguments: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        if agent not in ("multi", "single"):
            raise ValueError(f"agent must be 'multi' or 'single', got {agent!r}")
        self.envelope = envelope
        self.model = model
        self.toolbox = toolbox
        self.guard = guard or Guard.permissive_minimization(access)
        self.audit = audit
        self.max_steps = max_steps
        self.max_new_tokens = max_new_tokens
        self.agent = agent
        self.view = view if view is not None else PromptView(ALPHA_UMI)
        self.should_stop = should_stop
        self.ground_arguments = ground_arguments
        self.query = self.guard.tokenize(envelope.query)
        self.guard.set_request(envelope.query)  # writes must follow from it (scope check)
        self.turns: list[dict[str, str]] = [{"from": "user", "value": self.query}]
        self.steps: list[EpisodeStep] = []
        self.tokens = 0
        self._repeats = 0
        self._index = 0
        self._sealed_tokens = 0
        self.allowed: list[ToolSpec] = self.guard.allowed_tools(toolbox.specs())
        self.docs = [spec.alpha_umi_doc() for spec in self.allowed]

    # -- the loop -----------------------------------------------------------------

    def run(self) -> EpisodeResult:
        """Run the task from its start."""
        if self.query != self.envelope.query:
            self._record_decisions(
                [Decision(True, "minimization", ("personal data in the task pseudonymized",))],
                None,
                sealed={"query": self.envelope.query},
            )
        if not self.allowed:
            return self._finish("refused", "", "the department may use no tools")
        return self._loop(self.max_steps)

    def resume(self, recorded: Sequence[Any], approved_key: str) -> EpisodeResult:
        """Go on after a human approved the call ``approved_key``.

        ``recorded`` are the task's audit steps so far: the history is rebuilt from
        them (nothing is generated or called again), the approved call runs, and the
        loop continues with the steps left.
        """
        pending = self._replay(recorded, approved_key)
        self.guard.approve(approved_key)
        used = sum(1 for s in recorded if s.kind == "planner")
        try:
            self._observe(self._execute(pending[0], pending[1]))
        except _AwaitingApproval as wait:  # another rule still holds it
            return self._await(wait)
        except _ReplayMismatch as stop:
            return self._stop_for_human(stop)
        return self._loop(max(0, self.max_steps - used))

    def recover(self, recorded: Sequence[Any]) -> EpisodeResult:
        """Go on with a task whose run was cut off (its worker died): resume by replay.

        ``recorded`` are the task's audit steps so far. The history is rebuilt from them
        byte for byte, nothing is generated or called for a recorded step, a ``resume``
        policy step records how many steps were replayed, and the episode goes on at the
        first missing step. A call left without its observation passes the policies
        again; its committed result (if the call was made) is replayed only when it is
        that call's (same tool and arguments), else the task stops for a human.
        """
        state = replay.rebuild(recorded)
        self.turns = [{"from": "user", "value": self.query}, *state.turns]
        self.steps = [EpisodeStep(s.index, s.kind, s.output, dict(s.details)) for s in state.steps]
        self._index = state.last_index
        self._repeats = state.repeats
        self._sealed_tokens = len(self.guard.mapping())
        reason = (
            f"resumed (a run cut off or retried): {len(state.steps)} recorded steps replayed "
            f"(no model or connector call repeated for them); going on after step "
            f"{state.last_index} ({state.stopped})"
        )
        self._record_decisions(
            [Decision(True, "resume", (reason,))],
            None,
            extra={"replayed": len(state.steps), "stopped": state.stopped},
        )
        log.info("episode.resumed", replayed=len(state.steps), stopped=state.stopped)
        if not self.allowed:
            return self._finish("refused", "", "the department may use no tools")
        try:
            result = self._go_on(state)
        except _AwaitingApproval as wait:
            return self._await(wait)
        except _ReplayMismatch as stop:
            return self._stop_for_human(stop)
        if result is not None:
            return result
        return self._loop(max(0, self.max_steps - state.planner_steps))

    def _go_on(self, state: replay.Replayed) -> EpisodeResult | None:
        """Finish the step the interrupted run was in, from where ``state`` stopped."""
        last = state.last
        details = last.details if last is not None else {}
        if state.stopped == "planned" and self.agent == "multi":
            return self._act_on_plan(str(details.get("next") or "caller"), last.output)
        if state.stopped == "called":
            if any(p.get("policy") == "repeat" for p in state.policies_after_last):
                return self._after_repeat()
            if "tool" not in details:  # the call did not parse: its observation says so
                error = details.get("error", "no call")
                self._observe(ToolResult(ok=False, error=f"unparseable call: {error}"))
                return None
            call = ToolCall(str(details["tool"]), dict(details.get("arguments") or {}))
            self._observe(self._execute(call, int(last.index)))
            return None
        if state.stopped == "concluded":
            return self._conclude(last.output, "the summarizer answered")
        # start, observed, or a backbone plan whose call was not recorded: plan (again)
        return None

    def _loop(self, budget: int) -> EpisodeResult:
        try:
            for _ in range(budget):
                step = self._single_step if self.agent == "single" else self._multi_step
                result = step()
                if result is not None:
                    return result
        except _AwaitingApproval as wait:
            return self._await(wait)
        except _ReplayMismatch as stop:
            return self._stop_for_human(stop)
        log.info("episode.step_limit", task_id=self.envelope.task_id, max_steps=self.max_steps)
        return self._finish("step_limit", "", f"no conclusion within {self.max_steps} steps")

    def _multi_step(self) -> EpisodeResult | None:
        shown = self._shown()
        plan_text = self._generate("planner", self.view.planner(self.docs, self.turns))
        plan = protocol.parse_planner(plan_text)
        self.turns.append({"from": "assistant", "value": plan.thought})
        self._record("planner", "planner", plan.thought, {"next": plan.next, **shown})
        return self._act_on_plan(plan.next, plan.thought)

    def _act_on_plan(self, next_: str, thought: str) -> EpisodeResult | None:
        """What follows a plan: give up, conclude, or write and make the next call."""
        if next_ == "give up":
            return self._finish("gave_up", "", "the planner gave up")
        if next_ == "conclusion":
            answer = self._generate("summarizer", self.view.summarizer(self.turns))
            self.turns.append({"from": "conclusion", "value": answer})
            self._record("summarizer", "summarizer", answer, {})
            return self._conclude(answer, "the summarizer answered")
        callable_ = self._callable()
        grounded = (
            grounding.ground(callable_, self.turns, self.allowed)
            if self.ground_arguments
            else callable_
        )
        text = self._generate(
            "caller",
            self.view.caller(self.docs, self.turns, thought),
            constraint=CallerConstraint(grounded),
        )
        repeated = self._repeated_call(text)
        if repeated is not None:
            return self._refuse_repeat(text, repeated)
        self._handle_call(text, role="caller", extra=grounding.audit_details(grounded, callable_))
        return None

    def _repeated_call(self, text: str) -> protocol.CallerOutput | None:
        """The call ``text`` names when it is exactly the task's last call (same tool,
        same arguments) and that call succeeded: its response is already in the history."""
        seen = [
            c for c in protocol.calls_seen(self.turns) if not (c.error or "").startswith(_NOT_RUN)
        ]
        if not seen or not seen[-1].ok or seen[-1].arguments is None:
            return None
        try:
            call = protocol.parse_caller(text)
        except ProtocolError:
            return None
        same = call.tool == seen[-1].tool and dict(call.arguments) == dict(seen[-1].arguments)
        return call if same else None

    def _refuse_repeat(self, text: str, call: protocol.CallerOutput) -> EpisodeResult | None:
        """The repeat guard: a call that repeats the last successful one is not made.

        The first time, the planner is asked again with the refusal as the observation
        (a small planner that missed the answer in the history reads it there); a second
        repeat in the same task hands the history to the summarizer, since everything a
        repeated read could return is already there.
        """
        self.turns.append({"from": "caller", "value": text})
        self._record("caller", "caller", text, {"tool": call.tool, "arguments": call.arguments})
        self._repeats += 1
        reason = f"{call.tool} with these arguments was the last call and succeeded; not run again"
        self._record_decisions([Decision(False, "repeat", (reason,))], call.tool)
        return self._after_repeat()

    def _after_repeat(self) -> EpisodeResult | None:
        """After the repeat guard refused a call: observe the refusal, and on a second
        repeat hand the history to the summarizer."""
        if self._repeats == 1:
            self._observe(
                ToolResult(
                    ok=False,
                    error=f"{_NOT_RUN} this exact call was just made; its response is above",
                )
            )
            return None
        self._observe(ToolResult(ok=False, error=f"{_NOT_RUN} the same call again"))
        thought = "The answer is already in the history.\n " + protocol.CONCLUSION
        self.turns.append({"from": "assistant", "value": thought})
        self._record("planner", None, thought, {"next": "conclusion", "forced": "repeat"})
        answer = self._generate("summarizer", self.view.summarizer(self.turns))
        self.turns.append({"from": "conclusion", "value": answer})
        self._record("summarizer", "summarizer", answer, {})
        return self._conclude(answer, "the summarizer answered after a repeated call")

    def _single_step(self) -> EpisodeResult | None:
        """The single-LLM baseline: one backbone output per step, split into the roles'
        turns so that the history (and the audit trail) reads as in the multi-LLM loop."""
        shown = self._shown()
        text = self._generate("backbone", self.view.backbone(self.docs, self.turns))
        out = protocol.parse_backbone(text)
        self.turns.append({"from": "assistant", "value": out.planner_thought()})
        self._record("planner", "backbone", out.planner_thought(), {"next": out.next, **shown})
        if out.next == "give up":
            return self._finish("gave_up", "", "the model gave up")
        if out.next == "conclusion":
            self.turns.append({"from": "conclusion", "value": out.answer})
            self._record("summarizer", "backbone", out.answer, {})
            return self._conclude(out.answer, "the model answered")
        self._handle_call(out.call, role="backbone")
        return None

    def _callable(self) -> tuple[ToolSpec, ...]:
        """The tools the caller's grammar admits: the allowed tools its prompt shows.

        The caller is told only of the tools its prompt shows (every allowed tool in the
        α-UMi view, the retrieved ones in the compact view), so its grammar admits only
        those: a small caller cannot reach for a tool it was shown no document of (a
        write in a read-only task, say), and a retrieval miss never widens access, since
        the shown tools are drawn from the allowed ones."""
        shown = {t["Name"] for t in self.view.shown(self.docs, self.turns)}
        return tuple(spec for spec in self.allowed if spec.name in shown) or tuple(self.allowed)

    def _shown(self) -> dict[str, Any]:
        """The tools this step's prompts show, for the audit (compact view only: the
        α-UMi view shows every allowed tool)."""
        if self.view.name == ALPHA_UMI:
            return {}
        return {"tools_shown": [t["Name"] for t in self.view.shown(self.docs, self.turns)]}

    def _handle_call(self, text: str, *, role: str, extra: dict[str, Any] | None = None) -> None:
        """Parse a call, run it through the policies and the connector, observe the result.
        ``extra`` joins the caller step's details (the ids grounding admitted)."""
        self.turns.append({"from": "caller", "value": text})
        try:
            parsed = protocol.parse_caller(text)
        except ProtocolError as exc:
            self._record("caller", role, text, {"error": str(exc), **(extra or {})})
            self._observe(ToolResult(ok=False, error=f"unparseable call: {exc}"))
            return
        call = ToolCall(parsed.tool, parsed.arguments)
        details = {"tool": call.tool, "arguments": call.arguments, **(extra or {})}
        self._record("caller", role, text, details)
        self._observe(self._execute(call, self._index))

    # -- one call through the policies -----------------------------------------------

    def _execute(self, call: ToolCall, caller_step: int) -> ToolResult:
        """Access, tokens, schema, idempotency, approval, connector, minimization.

        Refusals become observations the planner can read; the caller step's index
        makes the idempotency key, stable across redeliveries and resumes.
        """
        key = f"{self.envelope.task_id}:{caller_step}"
        try:
            spec = self.toolbox.spec(call.tool)
        except ConnectorError as exc:
            self._record_decisions([Decision(False, "access", (str(exc),))], call.tool)
            return ToolResult(ok=False, error=f"refused: {exc}")
        decisions = [self.guard.check_access(spec)]
        raw: dict[str, Any] | None = None
        if decisions[-1].allowed:
            raw, resolved = self.guard.resolve(call.arguments)
            decisions.append(resolved)
        if raw is not None:
            try:
                validate_arguments(spec.parameters, raw)
                decisions.append(Decision(True, "schema", ("arguments match the tool's schema",)))
            except InvalidArguments as exc:
                message = str(self.guard.tokenize(str(exc)))  # it may quote raw values
                decisions.append(Decision(False, "schema", (message,)))
        if raw is None or not decisions[-1].allowed:
            self._record_decisions(decisions, spec.name)
            denied = decisions[-1]
            prefix = "invalid arguments" if denied.policy == "schema" else "refused"
            return ToolResult(ok=False, error=f"{prefix}: " + "; ".join(denied.reasons))

        committed = self.audit.tool_call_by_key(key)
        if committed is not None:  # a redelivery: the call already happened
            committed = self._open(committed)
            mismatch = replay.call_mismatch(
                key, (committed.tool, committed.request), (spec.name, raw)
            )
            if mismatch is not None:  # never another call's response, never a new write
                mismatch = str(self.guard.tokenize(mismatch))  # the requests hold raw values
                decisions.append(Decision(False, "replay", (mismatch,)))
                self._record_decisions(
                    decisions, spec.name, extra={"key": key, "committed_tool": committed.tool}
                )
                raise _ReplayMismatch(key, mismatch)
            decisions.append(Decision(True, "idempotency", (f"call {key} already made: replayed",)))
            self._record_decisions(decisions, spec.name)
            result = ToolResult(ok=committed.ok, data=committed.response, error=committed.error)
            return self._minimized(spec, result)
        decisions.append(self.guard.check_approval(spec, raw, key))
        if not decisions[-1].allowed:
            self._record_decisions(
                decisions,
                spec.name,
                extra={
                    "status": APPROVAL_REQUESTED,
                    "key": key,
                    "caller_step": caller_step,
                    "effect": spec.effect,
                    "arguments": dict(call.arguments),
                },
            )
            raise _AwaitingApproval(key, decisions[-1].reasons)
        self._record_decisions(decisions, spec.name)
        started = time.perf_counter()
        try:
            result = self.toolbox.connector_for(spec.name).invoke(ToolCall(spec.name, raw), key)
        except ConnectorUnavailable as exc:
            # The system is down (retries spent, or its circuit is open): nothing is
            # committed under the key and the task is retried later, when a resume replays
            # up to this call and makes it then. The model never reads an outage.
            why = str(self.guard.tokenize(str(exc)))
            self._record_decisions(
                [Decision(False, "connector", (why,))],
                spec.name,
                extra={"key": key, "retryable": True, "error": type(exc).__name__},
            )
            raise
        except ConnectorError as exc:
            result = ToolResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        self.audit.append_tool_call(
            task_id=self.envelope.task_id,
            step=caller_step,
            idempotency_key=key,
            tool=spec.name,
            effect=spec.effect,
            request=dict(raw),
            response=result.data,
            ok=result.ok,
            error=None if result.error is None else str(self.guard.tokenize(result.error)),
        )
        log.info(
            "tool.called",
            tool=spec.name,
            ok=result.ok,
            latency_ms=round((time.perf_counter() - started) * 1000),
        )
        return self._minimized(spec, result)

    def _minimized(self, spec: ToolSpec, result: ToolResult) -> ToolResult:
        """What the model may see of a connector's result; the decision is recorded."""
        visible, decision = self.guard.visible(spec, result)
        if decision is not None:
            self._record_decisions([decision], spec.name)
        return visible

    def _open(self, value: Any) -> Any:
        unseal = getattr(self.audit, "unseal", None)
        return unseal(value) if unseal is not None else value

    def _observe(self, result: ToolResult) -> None:
        observation = result.observation()
        self.turns.append({"from": "observation", "value": observation})
        self._record("tool", None, observation, {"ok": result.ok})

    # -- resume ------------------------------------------------------------------------

    def _replay(self, recorded: Sequence[Any], key: str) -> tuple[ToolCall, int]:
        """Rebuild turns, steps and the step counter from the audit; the pending call."""
        request = None
        for step in recorded:
            if step.kind in replay.TURN_OF_STEP:
                self.turns.append({"from": replay.TURN_OF_STEP[step.kind], "value": step.output})
            details = step.details
            if details.get("key") == key and details.get("status") == APPROVAL_REQUESTED:
                request = step
            self.steps.append(EpisodeStep(step.index, step.kind, step.output, dict(step.details)))
            self._index = max(self._index, step.index)
        if request is None:
            raise AuditError(
                f"task {self.envelope.task_id!r} has no approval request for call {key!r}"
            )
        caller_step = int(request.details["caller_step"])
        caller = next((s for s in recorded if s.kind == "caller" and s.index == caller_step), None)
        if caller is None or "tool" not in caller.details:
            raise AuditError(
                f"task {self.envelope.task_id!r}: the call {key!r} awaiting approval has no "
                f"recorded caller step {caller_step}"
            )
        self._sealed_tokens = len(self.guard.mapping())
        call = ToolCall(caller.details["tool"], dict(caller.details.get("arguments") or {}))
        return call, caller_step

    # -- model and audit helpers ---------------------------------------------------

    def _checkpoint_if_asked(self) -> None:
        """Stop here, before a model step, when the worker is shutting down.

        Every step so far is committed; the ``shutdown`` policy step says where the
        episode stopped, and a redelivery resumes after it by replay.
        """
        if self.should_stop is None or not self.should_stop():
            return
        after = self._index
        reason = (
            f"the worker is shutting down: stopped after step {after}, before the next "
            "model step; the task goes back to the queue and resumes by replay"
        )
        self._record_decisions([Decision(True, "shutdown", (reason,))], None)
        log.info("episode.checkpointed", task_id=self.envelope.task_id, after_step=after)
        raise Checkpointed(self.envelope.task_id, after)

    def _generate(self, role: str, prompt: str, constraint: CallerConstraint | None = None) -> str:
        self._checkpoint_if_asked()
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

    def _record(
        self,
        kind: str,
        role: str | None,
        output: str,
        details: dict[str, Any],
        sealed: dict[str, Any] | None = None,
    ) -> None:
        self._index += 1
        prompt_digest, latency_ms, gen = (None, None, None)
        if role is not None:
            prompt_digest, latency_ms, gen = self._last
        extra = {"sealed": sealed} if sealed else {}
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
            **extra,
        )
        self.steps.append(EpisodeStep(self._index, kind, output, details))

    def _record_decisions(
        self,
        decisions: Sequence[Decision],
        tool: str | None,
        *,
        extra: dict[str, Any] | None = None,
        sealed: dict[str, Any] | None = None,
    ) -> None:
        """One policy step for the decisions taken together, each with its reasons.

        ``policy`` and ``allowed`` are those of the deciding (last) decision; the token
        map rides along, sealed, whenever it has grown.
        """
        sealed = dict(sealed or {})
        mapping = self.guard.mapping()
        if len(mapping) > self._sealed_tokens:
            sealed["tokens"] = mapping
            self._sealed_tokens = len(mapping)
        last = decisions[-1]
        details = {
            "policy": last.policy,
            "allowed": last.allowed,
            "reasons": [r for d in decisions for r in d.reasons],
            "decisions": [d.as_dict() for d in decisions],
            "tool": tool,
            **(extra or {}),
        }
        waiting = extra is not None and extra.get("status") == APPROVAL_REQUESTED
        output = "awaiting approval" if waiting else "allowed" if last.allowed else "denied"
        self._record("policy", None, output, details, sealed or None)
        if not last.allowed:
            log.warning("policy.denied", policy=last.policy, tool=tool, reasons=list(last.reasons))

    def _conclude(self, answer: str, reason: str) -> EpisodeResult:
        """``answered``, unless the answer states a change the task's calls do not back."""
        writes = {spec.name for spec in self.allowed if spec.effect == "write"}
        done, seen = claims_evidence(self.turns, writes)
        decision = check_claims(answer, writes=done, responses=seen)
        if decision.allowed and not (form := check_form(answer)).allowed:
            decision = form
        self._record_decisions([decision], None)
        if not decision.allowed:
            return self._finish("held", answer, "; ".join(decision.reasons))
        return self._finish("answered", answer, reason)

    def _stop_for_human(self, stop: _ReplayMismatch) -> EpisodeResult:
        """End ``held`` for a person: the replayed call was not the committed one."""
        log.warning("episode.replay_mismatch", key=stop.key)
        return self._finish("held", "", stop.reason, extra={"key": stop.key})

    def _await(self, wait: _AwaitingApproval) -> EpisodeResult:
        return self._finish(
            "awaiting_approval", "", "; ".join(wait.reasons), extra={"key": wait.key}
        )

    def _finish(
        self, outcome: Outcome, answer: str, reason: str, extra: dict[str, Any] | None = None
    ) -> EpisodeResult:
        self._record(
            "outcome", None, answer, {"outcome": outcome, "reason": reason, **(extra or {})}
        )
        return EpisodeResult(
            task_id=self.envelope.task_id,
            outcome=outcome,
            answer=answer,
            reason=reason,
            steps=self.steps,
            tokens=self.tokens,
        )

"""The agent loop: planner → caller → connector → … → summarizer, in the α-UMi protocol.

Each step is appended to the audit log before the next starts (``worker.agent.trail``).
The caller is offered, and constrained to, the tools the department may use; every call
then passes the policies before a connector runs it, and the response passes
minimization before the model sees it (``worker.agent.calls``). Every policy decision is
a ``policy`` step with its reasons.

Personal data: the model only ever sees this task's tokens (``<EMAIL_1>``). The task's
request is tokenized once, by its guard (``Guard.open_request``: the task row and the
model's user turn hold the same text); the token map is sealed into the audit log
whenever it grows; raw tool requests and responses are sealed by the audit log's sealer.

Start and resume are the episode's: :meth:`Episode.start` runs a task from its start, or
goes on by replay when steps of an earlier run are recorded; :meth:`Episode.resume` goes
on after a human approved a call (``worker.agent.resumption``). A system that is down
(``ConnectorUnavailable``) is a denied ``connector`` policy step and the error goes up
for the task to be retried.

Shutdown: when ``should_stop`` says so (the worker is shutting down, ``worker.shutdown``),
the episode stops before its next model step: a ``shutdown`` policy step records where,
and ``Checkpointed`` goes up for the task to go back to the queue and resume by replay.

Repeats: a call whose answer the history already holds (the same successful call, with
no write since for a read) is not made (``worker.agent.repeat``).

Recap: serving a model trained on umiq's own data (the compact view), the planner's
thought after an observation starts with its recap (``umiq_protocol.recap_of``: "INV-1008
came back.", "That call failed.") as every training thought does; the model writes the
rest (``recap``, ``Settings.planner_recap``).

Claims: an answer that states a change (*scheduled*, *paid*, *sent*, …) no successful
call of the task made or read is not delivered as done: the ``claims`` policy step
records why and the episode ends ``held``, for a human to read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import structlog

from connectors import ToolCall, ToolResult, ToolSpec
from policies import AccessRule, Decision, check_claims, check_form
from worker.agent import grounding, named, protocol, repeat
from worker.agent.calls import AwaitingApproval, Calls, ReplayMismatch
from worker.agent.guard import Guard
from worker.agent.result import EpisodeResult, EpisodeStep, Outcome
from worker.agent.resumption import Resumption
from worker.agent.roles import (
    CallerConstraint,
    ChoiceConstraint,
    Constraint,
    Generation,
    GenerationRequest,
    RoleModel,
)
from worker.agent.trail import Trail, digest
from worker.agent.views import ALPHA_UMI, COMPACT, PromptView
from worker.audit.events import APPROVAL_REQUESTED
from worker.audit.protocol import AuditLogProtocol
from worker.envelope import Envelope
from worker.errors import Checkpointed, ProtocolError
from worker.toolbox import Toolbox

__all__ = ["APPROVAL_REQUESTED", "Episode", "EpisodeResult", "EpisodeStep", "Outcome", "digest"]

log = structlog.get_logger("umiq.agent")


def claims_evidence(
    turns: Sequence[dict[str, str]], write_tools: Collection[str]
) -> tuple[list[str], list[str]]:
    """What backs an answer's claims: the successful write calls' tools and the
    successful observations, read from an α-UMi history (a failed call backs nothing)."""
    done = [call for call in protocol.calls_seen(turns) if call.ok]
    return [c.tool for c in done if c.tool in write_tools], [c.text for c in done]


class Episode(Resumption):
    """Runs one task to its end; the audit log receives every step as it happens."""

    def __init__(
        self,
        envelope: Envelope,
        *,
        model: RoleModel,
        toolbox: Toolbox,
        access: AccessRule | None = None,
        audit: AuditLogProtocol,
        max_steps: int = 12,
        max_new_tokens: int = 160,
        agent: str = "multi",
        guard: Guard | None = None,
        view: PromptView | None = None,
        ground_arguments: bool = True,
        follow_named_tool: bool = False,
        recap: bool = False,
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
        self.follow_named_tool = follow_named_tool  # worker.agent.named
        self.recap = recap and self.view.name == COMPACT  # ToolBench thoughts have none
        # the request in this task's tokens, as the task row holds it (tokenized once)
        self.query = self.guard.open_request(envelope.query)
        self.turns: list[dict[str, str]] = [{"from": "user", "value": self.query}]
        self.tokens = 0
        self._repeats = 0
        self.trail = Trail(audit, envelope.task_id, self.guard)
        self.calls = Calls(
            envelope.task_id, toolbox=toolbox, guard=self.guard, audit=audit, trail=self.trail
        )
        self.allowed: list[ToolSpec] = self.guard.allowed_tools(toolbox.specs())
        self.docs = [spec.alpha_umi_doc() for spec in self.allowed]
        self.writes = {spec.name for spec in self.allowed if spec.effect == "write"}

    # -- start and resume ---------------------------------------------------------

    @property
    def steps(self) -> list[EpisodeStep]:
        """The episode's steps so far (replayed ones included)."""
        return self.trail.steps

    def start(self, recorded: Sequence[Any] = ()) -> EpisodeResult:
        """Run the task: from its start, or by replay when ``recorded`` (the task's audit
        steps so far) holds steps of an earlier run that was cut off (:meth:`recover`).
        ``rejected`` steps (refused copies of its message) are no run of it."""
        if any(step.kind != "rejected" for step in recorded):
            return self.recover(recorded)
        return self.run()

    def run(self) -> EpisodeResult:
        """Run the task from its start."""
        if self.query != self.envelope.query:
            self.trail.decisions(
                [Decision(True, "minimization", ("personal data in the task pseudonymized",))],
                None,
                sealed={"query": self.envelope.query},
            )
        if not self.allowed:
            return self._finish("refused", "", "the department may use no tools")
        return self._loop(self.max_steps)

    def _until_stop(self, go: Callable[[], EpisodeResult | None]) -> EpisodeResult | None:
        """``go()``, ending the episode where a call waits for a human or a replayed call
        is not the committed one."""
        try:
            return go()
        except AwaitingApproval as wait:
            return self._await(wait)
        except ReplayMismatch as stop:
            return self._stop_for_human(stop)

    # -- the loop -----------------------------------------------------------------

    def _loop(self, budget: int) -> EpisodeResult:
        def steps() -> EpisodeResult | None:
            for _ in range(budget):
                step = self._single_step if self.agent == "single" else self._multi_step
                result = step()
                if result is not None:
                    return result
            return None

        result = self._until_stop(steps)
        if result is not None:
            return result
        log.info("episode.step_limit", task_id=self.envelope.task_id, max_steps=self.max_steps)
        return self._finish("step_limit", "", f"no conclusion within {self.max_steps} steps")

    def _multi_step(self) -> EpisodeResult | None:
        shown = self._shown()
        prompt = self.view.planner(self.docs, self.turns)
        recap = protocol.recap_of(self.turns, self.writes) if self.recap else ""
        plan = protocol.parse_planner(recap + self._generate("planner", prompt, prefix=recap))
        self.turns.append({"from": "assistant", "value": plan.thought})
        again = plan.next == "caller" and self.follow_named_tool
        chosen = self._name_an_offered_tool(prompt) if again else {}
        thought = self.turns[-1]["value"]
        details = {"next": plan.next, **shown, **chosen, **({"recap": recap} if recap else {})}
        self.trail.step("planner", "planner", thought, details)
        return self._act_on_plan(plan.next, thought)

    def _name_an_offered_tool(self, prompt: str) -> dict[str, Any]:
        """A thought that ends naming a tool this step does not offer is continued from
        "I'll use" under the offered names (``worker.agent.named``); the audit keeps what
        the planner wrote."""
        wrote = self.turns[-1]["value"]
        _, _, grounded = self._offered()
        offered = [tool.name for tool in grounded]
        again = named.to_choose_again(wrote, offered)
        if again is None:
            return {}
        prefix, name = again
        options = tuple(f" {tool}" for tool in offered)
        if len(options) > 1:
            choice = ChoiceConstraint(options, named.CHOSEN_SUFFIX)
            text = self._generate("planner", prompt, choice, prefix=prefix)
        else:  # one option: the grammar would write it
            text = options[0] + named.CHOSEN_SUFFIX
        self.turns[-1]["value"] = prefix + text
        return {"named": {"planner_wrote": wrote, "not_offered": name, "offered": offered}}

    def _offered(self) -> tuple[tuple[ToolSpec, ...], list[str], tuple[ToolSpec, ...]]:
        """The tools the caller's prompt shows, the writes the request does not ask for
        among them, and the tools the caller is offered (grounded, no repeat)."""
        callable_, unasked, grounded = self._grounded()
        if not self.ground_arguments:
            return callable_, unasked, grounded
        return callable_, unasked, repeat.without_repeat(grounded, self.turns, self.writes)

    def _grounded(self) -> tuple[tuple[ToolSpec, ...], list[str], tuple[ToolSpec, ...]]:
        """As :meth:`_offered`, with the repeats still in (the asked tools, grounded
        unless grounding is off)."""
        callable_ = self._callable()
        unasked = self.guard.unasked_writes(callable_)
        asked = tuple(t for t in callable_ if t.name not in unasked) or callable_
        if not self.ground_arguments:
            return callable_, unasked, asked
        return callable_, unasked, grounding.ground(asked, self.turns, self.allowed)

    def _act_on_plan(self, next_: str, thought: str) -> EpisodeResult | None:
        """What follows a plan: give up, conclude, or write and make the next call."""
        if next_ == "give up":
            return self._finish("gave_up", "", "the planner gave up")
        if next_ == "conclusion":
            answer = self._summarize()
            self.turns.append({"from": "conclusion", "value": answer})
            self.trail.step("summarizer", "summarizer", answer, {})
            return self._conclude(answer, "the summarizer answered")
        callable_, unasked, grounded = self._grounded()
        planned = repeat.planned_repeat(thought, grounded, self.turns, self.writes)
        if planned is not None:  # the only call the named tool admits is a repeat
            text = protocol.format_caller(planned.tool, planned.arguments)
            return self._refuse_repeat(text, planned, written_by=None)
        if self.ground_arguments:
            grounded = repeat.without_repeat(grounded, self.turns, self.writes)
        if self.follow_named_tool:
            grounded = named.follow(grounded, callable_, thought)
        text = self._generate(
            "caller",
            self.view.caller(self.docs, self.turns, thought),
            constraint=CallerConstraint(grounded),
        )
        repeated = repeat.repeated_call(self.turns, text, self.writes)
        if repeated is not None:
            return self._refuse_repeat(text, repeated)
        extra = grounding.audit_details(grounded, callable_)
        if unasked and len(unasked) < len(callable_):
            extra["unasked"] = unasked  # writes the request does not ask for: not offered
        self._handle_call(text, role="caller", extra=extra)
        return None

    def _refuse_repeat(
        self, text: str, call: protocol.CallerOutput, written_by: str | None = "caller"
    ) -> EpisodeResult | None:
        """The repeat guard (``worker.agent.repeat``): the call is recorded, not made.
        ``written_by`` None: the plan named it and no caller ran (the only call it admits)."""
        self.turns.append({"from": "caller", "value": text})
        details = {"tool": call.tool, "arguments": call.arguments}
        if written_by is None:
            details["planned_repeat"] = True
        self.trail.step("caller", written_by, text, details)
        self._repeats += 1
        self.trail.decisions([Decision(False, "repeat", (repeat.refusal(call),))], call.tool)
        return self._after_repeat()

    def _after_repeat(self) -> EpisodeResult | None:
        """After the repeat guard refused a call: observe the refusal, and on a second
        repeat hand the history to the summarizer."""
        self._observe(repeat.observation(self._repeats))
        if self._repeats == 1:
            return None
        thought = repeat.FORCED_THOUGHT
        self.turns.append({"from": "assistant", "value": thought})
        self.trail.step("planner", None, thought, {"next": "conclusion", "forced": "repeat"})
        answer = self._summarize()
        self.turns.append({"from": "conclusion", "value": answer})
        self.trail.step("summarizer", "summarizer", answer, {})
        return self._conclude(answer, "the summarizer answered after a repeated call")

    def _summarize(self) -> str:
        """The summarizer's answer to the history (less the refused repeats)."""
        return self._generate("summarizer", self.view.summarizer(repeat.for_summarizer(self.turns)))

    def _single_step(self) -> EpisodeResult | None:
        """The single-LLM baseline: one backbone output per step, split into the roles'
        turns so that the history (and the audit trail) reads as in the multi-LLM loop."""
        shown = self._shown()
        text = self._generate("backbone", self.view.backbone(self.docs, self.turns))
        out = protocol.parse_backbone(text)
        self.turns.append({"from": "assistant", "value": out.planner_thought()})
        self.trail.step("planner", "backbone", out.planner_thought(), {"next": out.next, **shown})
        if out.next == "give up":
            return self._finish("gave_up", "", "the model gave up")
        if out.next == "conclusion":
            self.turns.append({"from": "conclusion", "value": out.answer})
            self.trail.step("summarizer", "backbone", out.answer, {})
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
            self.trail.step("caller", role, text, {"error": str(exc), **(extra or {})})
            self._observe(ToolResult(ok=False, error=f"unparseable call: {exc}"))
            return
        call = ToolCall(parsed.tool, parsed.arguments)
        details = {"tool": call.tool, "arguments": call.arguments, **(extra or {})}
        self.trail.step("caller", role, text, details)
        self._observe(self.calls.execute(call, self.trail.index))

    def _observe(self, result: ToolResult) -> None:
        observation = result.observation()
        self.turns.append({"from": "observation", "value": observation})
        self.trail.step("tool", None, observation, {"ok": result.ok})

    # -- model and audit helpers ---------------------------------------------------

    def _checkpoint_if_asked(self) -> None:
        """Stop here, before a model step, when the worker is shutting down.

        Every step so far is committed; the ``shutdown`` policy step says where the
        episode stopped, and a redelivery resumes after it by replay.
        """
        if self.should_stop is None or not self.should_stop():
            return
        after = self.trail.index
        reason = (
            f"the worker is shutting down: stopped after step {after}, before the next "
            "model step; the task goes back to the queue and resumes by replay"
        )
        self.trail.decisions([Decision(True, "shutdown", (reason,))], None)
        log.info("episode.checkpointed", task_id=self.envelope.task_id, after_step=after)
        raise Checkpointed(self.envelope.task_id, after)

    def _generate(
        self, role: str, prompt: str, constraint: Constraint | None = None, prefix: str = ""
    ) -> str:
        self._checkpoint_if_asked()
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(role=role):
            request = GenerationRequest(
                role=role,  # type: ignore[arg-type]
                prompt=prompt,
                max_new_tokens=self.max_new_tokens,
                constraint=constraint,
                prefix=prefix,
            )
            gen: Generation = self.model.generate([request])[0]
            latency_ms = round((time.perf_counter() - started) * 1000)
            log.info("role.generated", tokens=gen.completion_tokens, latency_ms=latency_ms)
        self.tokens += gen.prompt_tokens + gen.completion_tokens
        self.trail.generated(prompt, latency_ms, gen)
        return gen.text

    def _conclude(self, answer: str, reason: str) -> EpisodeResult:
        """``answered``, unless the answer states a change the task's calls do not back."""
        done, seen = claims_evidence(self.turns, self.writes)
        decision = check_claims(answer, writes=done, responses=seen)
        if decision.allowed and not (form := check_form(answer)).allowed:
            decision = form
        self.trail.decisions([decision], None)
        if not decision.allowed:
            return self._finish("held", answer, "; ".join(decision.reasons))
        return self._finish("answered", answer, reason)

    def _stop_for_human(self, stop: ReplayMismatch) -> EpisodeResult:
        """End ``held`` for a person: the replayed call was not the committed one."""
        log.warning("episode.replay_mismatch", key=stop.key)
        return self._finish("held", "", stop.reason, extra={"key": stop.key})

    def _await(self, wait: AwaitingApproval) -> EpisodeResult:
        return self._finish(
            "awaiting_approval", "", "; ".join(wait.reasons), extra={"key": wait.key}
        )

    def _finish(
        self, outcome: Outcome, answer: str, reason: str, extra: dict[str, Any] | None = None
    ) -> EpisodeResult:
        self.trail.step(
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

"""How an episode goes on from recorded steps: after a cut-off run, or after an approval.

:meth:`Resumption.recover`: when steps of an earlier run of the task are recorded (its
worker died, or it went back to the queue at a shutdown), the history is rebuilt from
them byte for byte and the episode goes on by replay (``worker.agent.replay``); a
committed call is replayed only to the same call. :meth:`Resumption.resume` goes on after
a human approved a call that ended the episode ``awaiting_approval``, also when such a
resume was itself cut off.

A mixin of :class:`worker.agent.episode.Episode`: it uses the episode's history, trail,
calls and loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from connectors import ToolCall, ToolResult
from policies import Decision
from worker.agent import replay
from worker.agent.result import EpisodeResult, EpisodeStep
from worker.audit.events import CallerDetails, PlannerDetails, PolicyDetails

log = structlog.get_logger("umiq.agent")


class Resumption:
    """Resume and recover (see the module); the rest of the loop is the episode's."""

    # The episode's, used here (worker.agent.episode.Episode).
    turns: list[dict[str, str]]
    query: str
    guard: Any
    trail: Any
    calls: Any
    agent: str
    envelope: Any
    allowed: list[Any]
    max_steps: int
    _repeats: int

    def resume(self, recorded: Sequence[Any], approved_key: str) -> EpisodeResult:
        """Go on after a human approved the call ``approved_key``.

        ``recorded`` are the task's audit steps so far: the history is rebuilt from
        them (nothing is generated or called again), the approved call runs, and the
        loop continues with the steps left. A resume of the same approval that was cut
        off before it ended (``replay.cut_off_after_approval``) goes on by replay, the
        approval kept, the approved call made once.
        """
        if replay.cut_off_after_approval(recorded, approved_key):
            self.guard.approve(approved_key)  # a human approved it: not held again
            return self.recover(recorded)
        waiting = replay.awaiting(recorded, approved_key, self.envelope.task_id)
        self.turns.extend(waiting.turns)
        steps = [EpisodeStep(s.index, s.kind, s.output, dict(s.details)) for s in waiting.steps]
        self.trail.replayed(steps, waiting.last_index)
        self.guard.approve(approved_key)
        used = sum(1 for s in recorded if s.kind == "planner")
        stopped = self._until_stop(
            lambda: self._observe(self.calls.execute(waiting.call, waiting.caller_step))
        )
        if stopped is not None:  # another rule still holds it, or a replay mismatch
            return stopped
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
        steps = [EpisodeStep(s.index, s.kind, s.output, dict(s.details)) for s in state.steps]
        self.trail.replayed(steps, state.last_index)
        self._repeats = state.repeats
        reason = (
            f"resumed (a run cut off or retried): {len(state.steps)} recorded steps replayed "
            f"(no model or connector call repeated for them); going on after step "
            f"{state.last_index} ({state.stopped})"
        )
        self.trail.decisions(
            [Decision(True, "resume", (reason,))],
            None,
            extra={"replayed": len(state.steps), "stopped": state.stopped},
        )
        log.info("episode.resumed", replayed=len(state.steps), stopped=state.stopped)
        if not self.allowed:
            return self._finish("refused", "", "the department may use no tools")
        result = self._until_stop(lambda: self._go_on(state))
        if result is not None:
            return result
        return self._loop(max(0, self.max_steps - state.planner_steps))

    def _go_on(self, state: replay.Replayed) -> EpisodeResult | None:
        """Finish the step the interrupted run was in, from where ``state`` stopped."""
        last = state.last
        details = last.details if last is not None else {}
        if state.stopped == "planned" and self.agent == "multi":
            plan = PlannerDetails.from_details(details)
            return self._act_on_plan(str(plan.next or "caller"), last.output)
        if state.stopped == "called":
            policies = [PolicyDetails.from_details(p) for p in state.policies_after_last]
            if any(p.policy == "repeat" for p in policies):
                return self._after_repeat()
            called = CallerDetails.from_details(details)
            if called.tool is None:  # the call did not parse: its observation says so
                error = called.error if "error" in called.present else "no call"
                self._observe(ToolResult(ok=False, error=f"unparseable call: {error}"))
                return None
            call = ToolCall(str(called.tool), dict(called.arguments or {}))
            self._observe(self.calls.execute(call, int(last.index)))
            return None
        if state.stopped == "concluded":
            return self._conclude(last.output, "the summarizer answered")
        # start, observed, or a backbone plan whose call was not recorded: plan (again)
        return None

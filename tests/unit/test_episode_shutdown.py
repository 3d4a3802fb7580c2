"""Warm shutdown: an episode told to stop halts before a model step and resumes by replay."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_episode import ENV, Scripted
from tests.unit.test_episode_replay import episode, erp, make_audit, prompts, script
from worker import shutdown
from worker.agent.roles import Generation, GenerationRequest
from worker.errors import AgentError, Checkpointed


class StopsBefore(Scripted):
    """A scripted model whose worker starts shutting down after its ``after``-th
    generation: the flag is raised while that generation runs (``after`` 0: before the
    episode starts)."""

    def __init__(self, after: int, **scripts: list[str]) -> None:
        super().__init__(**scripts)
        self.after = after
        self.count = 0
        self.stop = after == 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.count += 1
        if self.count == self.after:
            self.stop = True
        return super().generate(requests)


def stoppable(model: StopsBefore, connector: Any, audit: Any) -> Any:
    run = episode(model, connector, audit)
    run.should_stop = lambda: model.stop
    return run


@pytest.fixture(autouse=True)
def _no_shutdown() -> Any:
    shutdown.reset()
    yield
    shutdown.reset()


@pytest.mark.parametrize("after", [0, 1, 2, 3, 4, 5])
def test_a_stopped_episode_resumes_as_an_unbroken_run(tmp_path: Path, after: int) -> None:
    """Stopped after any generation, the episode records where it stopped, raises
    Checkpointed, and its resume asks the model what an unbroken run asks, each call once."""
    reference = Scripted(**script())
    episode(reference, erp(), make_audit(tmp_path / "ref")).run()

    audit = make_audit(tmp_path / "cut")
    connector = erp()
    first = StopsBefore(after, **script())
    with pytest.raises(Checkpointed) as stopped:
        stoppable(first, connector, audit).run()
    assert first.count == after  # no generation after the flag was raised
    steps = audit.steps("t-1")
    last = steps[-1]
    assert last.kind == "policy" and last.details["policy"] == "shutdown", last
    assert last.details["allowed"] is True
    assert stopped.value.after_step == last.index - 1
    assert not any(s.kind == "outcome" for s in steps)

    second = Scripted(**{role: texts for role, texts in first.scripts.items()})
    result = episode(second, connector, audit).recover(audit.steps("t-1"))
    assert result.outcome == "answered", result.reason
    assert prompts(first) + prompts(second) == prompts(reference)
    assert [call.tool for call, _ in connector.calls] == ["get_invoice", "schedule_payment"]
    assert audit.verify().ok


def test_an_episode_not_told_to_stop_runs_to_its_end(tmp_path: Path) -> None:
    """With should_stop always false the episode ends answered and records no shutdown."""
    audit = make_audit(tmp_path)
    run = episode(Scripted(**script()), erp(), audit)
    run.should_stop = lambda: False
    assert run.run().outcome == "answered"
    assert not [s for s in audit.steps("t-1") if s.details.get("policy") == "shutdown"]


def test_checkpointed_is_an_agent_error_naming_the_task() -> None:
    """Checkpointed sits under AgentError and names the task and the step."""
    error = Checkpointed(ENV.task_id, 4)
    assert isinstance(error, AgentError)
    assert "t-1" in str(error) and "after step 4" in str(error)


def test_a_shutdown_is_due_only_after_the_finish_window() -> None:
    """due() is false before any shutdown, and after one only once finish_s has passed."""
    assert not shutdown.due(0.0)
    shutdown.request(now=100.0)
    shutdown.request(now=150.0)  # the first mark counts
    assert shutdown.requested()
    assert not shutdown.due(30.0, now=129.9)
    assert shutdown.due(30.0, now=130.0)
    assert shutdown.due(0.0, now=100.0)


def test_celery_s_shutting_down_signal_marks_the_shutdown() -> None:
    """The worker_shutting_down signal (sent on SIGTERM) makes a zero window due."""
    from celery.signals import worker_shutting_down

    assert not shutdown.checker(0.0)()
    worker_shutting_down.send(sender="test@host", sig="SIGTERM", how="Warm", exitcode=0)
    assert shutdown.checker(0.0)()


def test_a_resume_after_approval_stopped_by_shutdown_goes_on_once(tmp_path: Path) -> None:
    """A resumed episode stopped after the approved call is recognised as a cut-off
    resume (what umiq.resume_task checks on redelivery) and ends with the call made once."""
    from connectors import ToolCall
    from tests.unit.test_approvals import episode as approval_episode
    from tests.unit.test_approvals import waiting
    from tests.unit.test_episode import erp as approval_erp
    from worker.agent.replay import cut_off_after_approval
    from worker.gates.calls import decide

    audit = make_audit(tmp_path)
    connector = approval_erp()
    waiting(audit, connector)
    decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=lambda t, k: None)

    resumed = approval_episode(Scripted(), connector, audit)
    resumed.should_stop = lambda: True
    with pytest.raises(Checkpointed):
        resumed.resume(audit.steps("t-1"), "t-1:2")
    steps = audit.steps("t-1")
    assert [s.kind for s in steps[-2:]] == ["tool", "policy"]
    assert steps[-1].details["policy"] == "shutdown"
    assert cut_off_after_approval(steps, "t-1:2")

    model = Scripted(planner=["Paid.\n Next: conclusion."], summarizer=["INV-1 is scheduled."])
    again = approval_episode(model, connector, audit)
    again.guard.approve("t-1:2")
    assert again.recover(steps).outcome == "answered"
    assert connector.calls == [
        (ToolCall("schedule_payment", {"invoice_id": "INV-1", "amount": 12500}), "t-1:2")
    ]
    assert audit.verify().ok

"""Resume by replay: an episode cut off mid-run goes on from its audit steps (SQLite audit).

A run is "killed" by a model or audit log that raises at a chosen point, as a worker
killed there would leave the chain; ``Episode.recover`` then goes on from the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors import ToolCall, ToolResult
from connectors.testing import FunctionConnector
from policies import AccessRule
from tests.unit.test_episode import ENV, GET_INVOICE, PAY, Scripted
from worker.agent.episode import Episode
from worker.agent.replay import call_mismatch, rebuild
from worker.agent.roles import Generation, GenerationRequest
from worker.audit import AuditLog, ensure_schema
from worker.toolbox import Toolbox

PLANS = ["Fetch it.\n Next: caller.", "Pay it.\n Next: caller.", "Done.\n Next: conclusion."]
CALLS = [
    'Action: get_invoice\nAction Input: {"invoice_id": "INV-1"}',
    'Action: schedule_payment\nAction Input: {"invoice_id": "INV-1", "amount": 5}',
]


class Killed(Exception):
    """The worker died here."""


class Dies(Scripted):
    """A scripted model whose worker dies at its ``at``-th generation (1-based)."""

    def __init__(self, at: int, **scripts: list[str]) -> None:
        super().__init__(**scripts)
        self.at = at
        self.count = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.count += 1
        if self.count == self.at:
            raise Killed(f"generation {self.at}")
        return super().generate(requests)


def make_audit(path: Path) -> AuditLog:
    path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url)


def erp() -> FunctionConnector:
    def handler(call: ToolCall, key: str) -> ToolResult:
        if call.tool == "schedule_payment":
            return ToolResult(ok=True, data={"payment": "PAY-1", "amount": 5})
        # keys deliberately not in sorted order: the model must see them as the ERP sent them
        return ToolResult(ok=True, data={"status": "open", "id": "INV-1", "amount": 5})

    return FunctionConnector("erp", [GET_INVOICE, PAY], handler)


def episode(model: Any, connector: FunctionConnector, audit: Any) -> Episode:
    rule = AccessRule("finance", tools=("*",), may_write=True)
    return Episode(
        ENV, model=model, toolbox=Toolbox([connector]), access=rule, audit=audit, max_steps=6
    )


def script() -> dict[str, list[str]]:
    return {"planner": list(PLANS), "caller": list(CALLS), "summarizer": ["INV-1 is paid."]}


def prompts(model: Scripted) -> list[tuple[str, str]]:
    return [(r.role, r.prompt) for r in model.requests]


@pytest.mark.parametrize("dies_at", [2, 3, 4, 5, 6])
def test_a_resumed_run_asks_the_model_exactly_what_an_unbroken_run_asks(
    tmp_path: Path, dies_at: int
) -> None:
    """Cut off at any generation, the prompts before and after the resume are those of an
    unbroken run, byte for byte, and every call is made once."""
    reference = Scripted(**script())
    episode(reference, erp(), make_audit(tmp_path / "ref")).run()

    audit = make_audit(tmp_path / "cut")
    connector = erp()
    first = Dies(dies_at, **script())
    with pytest.raises(Killed):
        episode(first, connector, audit).run()
    second = Scripted(**{role: texts for role, texts in first.scripts.items()})
    result = episode(second, connector, audit).recover(audit.steps("t-1"))

    assert result.outcome == "answered", result.reason
    assert prompts(first) + prompts(second) == prompts(reference)
    assert [call.tool for call, _ in connector.calls] == ["get_invoice", "schedule_payment"]
    assert sorted(key for _, key in connector.calls) == [
        c.idempotency_key for c in audit.tool_calls("t-1")
    ]
    assert audit.verify().ok


def test_start_runs_a_new_task_from_its_start_and_a_cut_off_one_by_replay(
    tmp_path: Path,
) -> None:
    """``Episode.start`` decides how a delivered task goes: with no run recorded (a refused
    copy of its message is none) from its start; after a cut-off run by replay, asking the
    model exactly what an unbroken run asks and making each call once."""
    reference = Scripted(**script())
    unrun = make_audit(tmp_path / "ref")
    unrun.append_step(task_id="t-1", index=0, kind="rejected", output="a refused copy")
    assert episode(reference, erp(), unrun).start(unrun.steps("t-1")).outcome == "answered"
    assert not [s for s in unrun.steps("t-1") if s.details.get("policy") == "resume"]

    audit = make_audit(tmp_path / "cut")
    connector = erp()
    first = Dies(4, **script())
    with pytest.raises(Killed):
        episode(first, connector, audit).start(audit.steps("t-1"))
    second = Scripted(**first.scripts)
    result = episode(second, connector, audit).start(audit.steps("t-1"))
    assert result.outcome == "answered", result.reason
    assert prompts(first) + prompts(second) == prompts(reference)
    assert [call.tool for call, _ in connector.calls] == ["get_invoice", "schedule_payment"]
    assert [s.details.get("policy") for s in audit.steps("t-1")].count("resume") == 1


def test_the_replayed_observation_keeps_the_services_key_order(tmp_path: Path) -> None:
    """The observation replayed to the planner is the recorded text, not re-sorted JSON."""
    audit = make_audit(tmp_path)
    first = Dies(3, **script())  # dies asking the second plan, after the first observation
    with pytest.raises(Killed):
        episode(first, erp(), audit).run()
    second = Scripted(**first.scripts)
    episode(second, erp(), audit).recover(audit.steps("t-1"))
    planner = next(r.prompt for r in second.requests if r.role == "planner")
    assert '{"status": "open", "id": "INV-1", "amount": 5}' in planner


def test_a_resume_is_recorded_with_the_number_of_steps_replayed(tmp_path: Path) -> None:
    """The resume is a policy step on the chain saying how many steps were replayed."""
    audit = make_audit(tmp_path)
    first = Dies(3, **script())
    with pytest.raises(Killed):
        episode(first, erp(), audit).run()
    recorded = audit.steps("t-1")
    episode(Scripted(**first.scripts), erp(), audit).recover(recorded)
    resume = next(s for s in audit.steps("t-1") if s.details.get("policy") == "resume")
    assert resume.index == recorded[-1].index + 1
    assert resume.details["replayed"] == len(recorded)
    assert f"{len(recorded)} recorded steps replayed" in resume.details["reasons"][0]


def test_a_call_committed_before_its_observation_was_recorded_is_not_made_again(
    tmp_path: Path,
) -> None:
    """Killed between the connector's answer and its observation step: the committed
    result is replayed and the connector is not called again."""
    audit = make_audit(tmp_path)

    class DiesOnObservation:
        def __getattr__(self, name: str) -> Any:
            return getattr(audit, name)

        def append_step(self, **row: Any) -> Any:
            if row["kind"] == "tool":
                raise Killed("after the tool call was committed")
            return audit.append_step(**row)

    connector = erp()
    first = Scripted(**script())
    with pytest.raises(Killed):
        episode(first, connector, DiesOnObservation()).run()
    assert len(audit.tool_calls("t-1")) == 1
    result = episode(Scripted(**first.scripts), connector, audit).recover(audit.steps("t-1"))
    assert result.outcome == "answered", result.reason
    assert [call.tool for call, _ in connector.calls] == ["get_invoice", "schedule_payment"]
    replayed = [s for s in audit.steps("t-1") if s.details.get("policy") == "idempotency"]
    assert len(replayed) == 1 and replayed[0].details["tool"] == "get_invoice"


def test_a_replayed_call_unlike_the_committed_one_stops_the_task_for_a_person(
    tmp_path: Path,
) -> None:
    """A committed credit note is never handed to a get_invoice replayed under its key,
    and no new call is made: the task ends held with both calls named."""
    audit = make_audit(tmp_path)
    audit.append_task(task_id="t-1", department="finance", query=ENV.query, requested_by="alice")
    audit.append_step(
        task_id="t-1", index=1, kind="planner", output=PLANS[0], details={"next": "caller"}
    )
    audit.append_step(
        task_id="t-1",
        index=2,
        kind="caller",
        output=CALLS[0],
        details={"tool": "get_invoice", "arguments": {"invoice_id": "INV-1"}},
    )
    audit.append_tool_call(
        task_id="t-1",
        step=2,
        idempotency_key="t-1:2",
        tool="schedule_payment",
        effect="write",
        request={"invoice_id": "INV-1", "amount": 5},
        response={"payment": "PAY-1"},
        ok=True,
    )
    connector = erp()
    model = Scripted(**script())
    result = episode(model, connector, audit).recover(audit.steps("t-1"))

    assert result.outcome == "held" and result.answer == ""
    assert "get_invoice" in result.reason and "schedule_payment" in result.reason
    assert connector.calls == [] and model.requests == []
    assert len(audit.tool_calls("t-1")) == 1
    denied = [s for s in audit.steps("t-1") if s.details.get("policy") == "replay"]
    assert len(denied) == 1 and denied[0].details["allowed"] is False
    assert denied[0].details["committed_tool"] == "schedule_payment"
    assert "PAY-1" not in result.reason
    assert audit.outcome("t-1")["outcome"] == "held"
    assert audit.verify().ok


def test_a_plan_recorded_without_its_call_goes_on_with_the_caller(tmp_path: Path) -> None:
    """Killed after a plan: the plan is not asked again, the caller writes its call."""
    audit = make_audit(tmp_path)
    first = Dies(2, **script())  # the planner said "caller", the caller never answered
    with pytest.raises(Killed):
        episode(first, erp(), audit).run()
    second = Scripted(**first.scripts)
    episode(second, erp(), audit).recover(audit.steps("t-1"))
    assert second.requests[0].role == "caller"
    assert "Fetch it." in second.requests[0].prompt
    assert len([s for s in audit.steps("t-1") if s.kind == "planner"]) == 3


def test_rebuild_says_where_the_episode_stopped() -> None:
    """The rebuilt history leaves out refused messages and ends where the steps end."""

    class Row:
        def __init__(self, index: int, kind: str, output: str = "", **details: Any) -> None:
            self.index, self.kind, self.output, self.details = index, kind, output, details

    rows = [
        Row(1, "rejected", "bad message"),
        Row(1, "planner", "p", next="caller"),
        Row(2, "caller", "c", tool="get_invoice", arguments={}),
        Row(3, "policy", "denied", policy="repeat", allowed=False),
    ]
    state = rebuild(rows)
    assert state.turns == [
        {"from": "assistant", "value": "p"},
        {"from": "caller", "value": "c"},
    ]
    assert (state.stopped, state.last.index, state.last_index) == ("called", 2, 3)
    assert (state.planner_steps, state.repeats, len(state.steps)) == (1, 1, 3)
    assert rebuild([]).stopped == "start"


def test_the_same_call_matches_its_commit() -> None:
    """Same tool, same arguments (in any key order, a tuple as a list): no mismatch."""
    assert (
        call_mismatch(
            "t:2",
            ("pay", {"a": [1, 2], "b": 1.0}),
            ("pay", {"b": 1, "a": (1, 2)}),
        )
        is None
    )


@pytest.mark.parametrize(
    "replayed",
    [("get_invoice", {"invoice_id": "INV-1"}), ("pay", {"invoice_id": "INV-2"})],
)
def test_another_tool_or_other_arguments_do_not_match(replayed: tuple[str, Any]) -> None:
    """A different tool or different arguments is a mismatch naming both calls."""
    why = call_mismatch("t:2", ("pay", {"invoice_id": "INV-1"}), replayed)
    assert why is not None
    assert f"replayed call {replayed[0]}" in why and "committed under key t:2: pay" in why
    assert '"INV-1"' in why


def test_an_outage_is_audited_and_raised_and_the_retry_makes_the_call(tmp_path: Path) -> None:
    """A system down (retries spent) is a denied 'connector' step, nothing is committed and
    the error reaches the task (to retry it); the retry's resume makes the call."""
    from connectors import ConnectorUnavailable

    audit = make_audit(tmp_path)
    up = erp()

    def down(call: ToolCall, key: str) -> ToolResult:
        raise ConnectorUnavailable("erp: cannot reach http://127.0.0.1:1 for get_invoice")

    first = Scripted(**script())
    with pytest.raises(ConnectorUnavailable):
        episode(first, FunctionConnector("erp", [GET_INVOICE, PAY], down), audit).run()
    [outage] = [s for s in audit.steps("t-1") if s.details.get("policy") == "connector"]
    assert outage.details["allowed"] is False and outage.details["retryable"] is True
    assert "cannot reach" in outage.details["reasons"][0]
    assert audit.tool_calls("t-1") == []

    second = Scripted(**first.scripts)
    result = episode(second, up, audit).recover(audit.steps("t-1"))
    assert result.outcome == "answered", result.reason
    assert [call.tool for call, _ in up.calls] == ["get_invoice", "schedule_payment"]
    assert not any("cannot reach" in r.prompt for r in second.requests)


def test_a_resume_after_approval_cut_off_goes_on_by_replay(tmp_path: Path) -> None:
    """Killed after the approved payment was made: the redelivered resume is recognised,
    replays the payment's committed result and ends answered with one payment."""
    from tests.unit.test_approvals import PAY as PAY_OVER_LIMIT
    from tests.unit.test_approvals import guard as approval_guard
    from worker.agent.replay import cut_off_after_approval
    from worker.gates.calls import approved_key, decide

    audit = make_audit(tmp_path)
    audit.append_task(task_id="t-1", department="finance", query=ENV.query, requested_by="a")
    connector = erp()

    def held(model: Any) -> Episode:
        return Episode(
            ENV, model=model, toolbox=Toolbox([connector]), guard=approval_guard(), audit=audit
        )

    first = Scripted(planner=["Pay it.\n Next: caller."], caller=[PAY_OVER_LIMIT])
    assert held(first).run().outcome == "awaiting_approval"
    assert not cut_off_after_approval(audit.steps("t-1"), "t-1:2")  # not approved yet
    decide(audit, "t-1", verdict="approved", by="carol", reason="ok", enqueue=lambda t, k: None)
    assert not cut_off_after_approval(audit.steps("t-1"), "t-1:2")  # approved, not begun
    dying = Dies(1, planner=["Paid.\n Next: conclusion."], summarizer=["INV-1 is paid."])
    with pytest.raises(Killed):
        held(dying).resume(audit.steps("t-1"), "t-1:2")

    steps = audit.steps("t-1")
    assert approved_key(steps, "t-1:2")[0] is False  # a plain resume would skip it
    assert cut_off_after_approval(steps, "t-1:2")
    result = held(Scripted(**dying.scripts)).resume(steps, "t-1:2")
    assert result.outcome == "answered", result.reason
    assert [call.tool for call, _ in connector.calls] == ["schedule_payment"]
    assert not cut_off_after_approval(audit.steps("t-1"), "t-1:2")  # it has ended
    assert audit.verify().ok

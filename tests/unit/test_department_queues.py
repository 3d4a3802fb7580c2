"""Per-department queues: routing, the queues a worker takes, pause and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.audit import AuditLog, ensure_schema
from worker.celery_app import RESUME_TASK_NAME, TASK_NAME, create_app, route_options
from worker.rollout import queues as dq
from worker.rollout import store_for
from worker.settings import Settings


def routed(app: Any, name: str, args: Any, options: dict[str, Any] | None = None) -> Any:
    return app.amqp.router.route(dict(options or {}), name, args, {})["queue"]


@pytest.fixture
def on(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, department_queues=True)


def test_one_queue_for_every_task_by_default(tmp_path: Path) -> None:
    """Department queues off (the demo's default): every task and resume uses the one queue."""
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings)
    assert [q.name for q in app.conf.task_queues] == ["umiq.tasks"]
    assert routed(app, TASK_NAME, ({"department": "hr"},)).name == "umiq.tasks"
    assert routed(app, RESUME_TASK_NAME, ("t-1", "t-1:2")).name == "umiq.tasks"
    assert dq.worker_queues(settings, None) is None


def test_a_task_goes_to_its_departments_queue(on: Settings) -> None:
    """With department queues on, a task is routed by its envelope's department."""
    app = create_app(on)
    assert routed(app, TASK_NAME, ({"department": "hr"},)).name == "umiq.tasks.hr"
    assert routed(app, TASK_NAME, ({"department": "finance"},)).name == "umiq.tasks.finance"
    assert routed(app, TASK_NAME, ({"department": None},)).name == "umiq.tasks"


def test_a_resume_goes_to_the_tasks_department_queue(on: Settings) -> None:
    """The resume of an approved call, sent with its department, takes that queue."""
    app = create_app(on)
    options = route_options(on, "finance")
    assert routed(app, RESUME_TASK_NAME, ("t-1", "t-1:2"), options).name == "umiq.tasks.finance"


def test_department_queues_are_quorum_queues_like_the_one_queue(on: Settings) -> None:
    """Every department's queue carries the work queue's quorum and dead-letter arguments."""
    queues = {q.name: q for q in create_app(on).conf.task_queues}
    assert set(queues) == {"umiq.tasks", "umiq.tasks.finance", "umiq.tasks.hr"}
    one = queues["umiq.tasks"].queue_arguments
    assert one["x-queue-type"] == "quorum" and one["x-delivery-limit"] == on.max_redeliveries + 2
    for name in ("umiq.tasks.finance", "umiq.tasks.hr"):
        assert queues[name].queue_arguments == one
        assert queues[name].durable and queues[name].routing_key == name


def test_a_worker_takes_its_departments_queues_and_leaves_paused_ones(on: Settings) -> None:
    """`--departments finance,hr` with hr paused: both queues known, hr's left alone."""
    plan = dq.worker_queues(on, ["finance", "hr"], paused=["hr"])
    assert plan is not None
    assert plan.queues == ["umiq.tasks.finance", "umiq.tasks.hr"]
    assert plan.paused == ["umiq.tasks.hr"]
    every = dq.worker_queues(on, None)
    assert every is not None and every.queues == [
        "umiq.tasks", "umiq.tasks.finance", "umiq.tasks.hr"]  # fmt: skip


class FakeControl:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def broadcast(self, command: str, arguments: dict[str, Any], **_: Any) -> list[Any]:
        self.sent.append((command, arguments))
        return [{"w1@host": {"ok": "paused"}}]


class FakeApp:
    def __init__(self) -> None:
        self.control = FakeControl()


def test_pause_is_an_audited_change_told_to_the_workers(on: Settings, tmp_path: Path) -> None:
    """Pausing records who and why in the rollout history and tells the workers the queue."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    audit = AuditLog.from_url(url)
    store, app = store_for(audit, on), FakeApp()
    live, replies = dq.pause(store, app, on, "hr", by="ops", reason="month end")
    assert live is not None and live.settings.paused
    assert app.control.sent == [(dq.PAUSE_COMMAND, {"queue": "umiq.tasks.hr"})]
    assert replies == [{"w1@host": {"ok": "paused"}}]
    change = store.history("hr")[-1]
    assert change.changed_by == "ops" and change.reason == "month end"
    assert change.after["paused"] is True
    assert store.live("finance").settings.paused is False
    dq.pause(store, app, on, "hr", by="ops", reason="", paused=False)
    assert app.control.sent[-1] == (dq.RESUME_COMMAND, {"queue": "umiq.tasks.hr"})
    assert store.live("hr").settings.paused is False
    audit.close()


class FakeTaskConsumer:
    def __init__(self, queues: set[str]) -> None:
        self.queues = queues

    def consuming_from(self, queue: str) -> bool:
        return queue in self.queues


class FakeConsumer:
    def __init__(self, queues: set[str]) -> None:
        self.task_consumer = FakeTaskConsumer(queues)
        self.calls: list[tuple[str, str]] = []

    def call_soon(self, fn: Any, queue: str) -> None:
        self.calls.append((fn.__name__, queue))

    def cancel_task_queue(self, queue: str) -> None: ...

    def add_task_queue(self, queue: str) -> None: ...


class State:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer


def test_workers_stop_only_queues_they_take_and_resume_only_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker pauses a queue it takes from, and takes back only a queue it serves."""
    monkeypatch.setattr(dq, "_served", {"umiq.tasks.finance"})
    finance = FakeConsumer({"umiq.tasks.finance"})
    dq.umiq_pause_queue(State(finance), "umiq.tasks.hr")
    assert finance.calls == []
    dq.umiq_pause_queue(State(finance), "umiq.tasks.finance")
    assert finance.calls == [("cancel_task_queue", "umiq.tasks.finance")]
    stopped = FakeConsumer(set())
    dq.umiq_resume_queue(State(stopped), "umiq.tasks.hr")
    dq.umiq_resume_queue(State(stopped), "umiq.tasks.finance")
    assert stopped.calls == [("add_task_queue", "umiq.tasks.finance")]

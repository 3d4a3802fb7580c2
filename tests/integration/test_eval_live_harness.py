"""``run_live``'s harness end to end with the expert as the role models (no real model):
a real ``umiq worker`` subprocess, the Acme services, the warm-up, a stuck task's worker
replaced on fresh queues, ``live.json``, and each score recorded as the checker's verdict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.acme.replay import targets_of
from tests.support import live_replay
from worker.audit import AuditLog
from worker.evaluation.live import (
    FORMAT_VERSION,
    Hooks,
    LiveConfig,
    LiveTask,
    run_live,
    write_split_trajectories,
)
from worker.evaluation.modelsets import ModelSet
from worker.rollout.verdict import verdict_of
from worker.settings import get_settings
from worker.world import Instance

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 15


class Recorder(Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def status(self, text: str) -> None:
        self.events.append(("status", text))

    def tasks(self, total: int) -> None:
        self.events.append(("tasks", total))

    def task_started(self, index: int, instance: Instance) -> None:
        self.events.append(("started", index))

    def task_done(self, task: LiveTask) -> None:
        self.events.append(("done", task.uid))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("UMIQ_BROKER_URL", "UMIQ_DATABASE_URL", "UMIQ_WORLD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_run_live_scores_replaces_a_stuck_worker_and_writes_live_json(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task 1 replays the expert and passes, task 2 outlives its timeout (an error, the
    worker replaced), task 3 has no targets and fails on the fresh worker."""
    gold = tmp_path / "gold.json"
    count = write_split_trajectories(
        gold, split="test", seed=0, per_family=1, limit=3, work_dir=tmp_path
    )
    assert count == 3
    trajectories = json.loads(gold.read_text())
    targets = {f"{i:03d}": targets_of(t) for i, t in enumerate(trajectories[:2], 1)}
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps(targets))
    monkeypatch.setenv(live_replay.REPLAY_ENV, str(replay))
    monkeypatch.setenv(live_replay.SLOW_ENV, "002")
    monkeypatch.setenv(live_replay.SLOW_S_ENV, str(TIMEOUT_S + 30))
    model_set = ModelSet(
        name="expert", env={"UMIQ_ROLE_MODEL": "tests.support.live_replay:factory"}, spec="expert"
    )
    hooks = Recorder()
    config = LiveConfig(
        out=tmp_path / "live",
        model_set=model_set,
        limit=3,
        per_family=1,
        timeout=TIMEOUT_S,
        ready_timeout=180,
    )

    result = run_live(config, hooks)
    record = json.loads(result.write(config.out).read_text())

    assert record["format"] == "umiq.eval.live" and record["version"] == FORMAT_VERSION
    first, stuck, failed = record["tasks"]
    # round-robin over the families: three tasks, three families
    assert len({t["family"] for t in record["tasks"]}) == 3
    assert first["passed"] and first["outcome"] == "answered" and first["cause"] is None
    assert first["models"] == ["expert"]
    assert not stuck["passed"] and stuck["outcome"] is None
    assert stuck["reason"] == f"no result within {TIMEOUT_S}s" and stuck["cause"] == "error"
    assert not failed["passed"] and failed["cause"] == "error"
    assert all(t["reset_verified"] for t in record["tasks"])
    assert [t["task_id"] for t in record["tasks"]] == [
        f"eval-{record['run']['run_id']}-{i:03d}" for i in (1, 2, 3)
    ]
    summary = record["summary"]
    assert summary["tasks"] == 3 and summary["passed"] == 1 and summary["causes"]["error"] == 2
    run = record["run"]
    assert run["worker_warmup_s"] is not None and run["models_seen"] == ["expert"]
    assert run["settings"]["timeout_s"] == TIMEOUT_S
    statuses = [text for kind, text in hooks.events if kind == "status"]
    # the stuck task's worker is killed and a fresh one started for the task after it
    assert statuses.count("starting the worker…") == 2
    assert [e for e in hooks.events if e[0] in ("tasks", "started")] == [
        ("tasks", 3),
        ("started", 1),
        ("started", 2),
        ("started", 3),
    ]
    assert Path(run["settings"]["worker_log"]).is_file()

    # each scored task carries the checker's verdict on its chain; the stuck one, none
    audit = AuditLog.from_url(run["settings"]["database"])
    try:
        given = {
            t["task_id"]: [v for s in audit.steps(t["task_id"]) if (v := verdict_of(s.details))]
            for t in record["tasks"]
        }
        assert [given[t["task_id"]] for t in record["tasks"]] == [
            [("checker", True)], [], [("checker", False)]]  # fmt: skip
        checked = [s for s in audit.steps(first["task_id"]) if verdict_of(s.details)]
        assert checked[0].details["by"] == "acme checker"
        assert audit.verify().ok
    finally:
        audit.close()
